"""Every Redis key the bridge uses is built here, and only here.

Keys a school owns carry the school in a hash tag (`d6b:{s:1000}:learners`) so that all of one school's
data lands on one Redis Cluster slot and a Lua script may touch it atomically. Global structures live in a
few named slots: `{events}` (the event listing and the delivery hand-off, written together by one script),
`{schools}` (the set of known schools) and `{integrations}` (deployment-wide integration facts).

Layout (prefix `d6b`, school 1000, resource `learner`):

    d6b:{s:1000}:meta                 hash: seq, published, ver:<r>, baseline:<r>, count:<r>, polled:<r>,
                                      and the flags denied, revoked, purged (times; sync/snapshot.py)
    d6b:{s:1000}:snap:learner:hash    hash: record id -> 16-byte BLAKE2b digest of the canonical record
    d6b:{s:1000}:snap:learner:rec     hash: record id -> last known normalised record (msgpack)
    d6b:{s:1000}:snap:learner:hold    string: held-back removal id set (msgpack list), absent when none
    d6b:{s:1000}:events               stream: entry id "<sequence>-0", fields id, type, body (the envelope)
    d6b:{s:1000}:lease:poll           string: fencing token of the current holder (with a TTL)
    d6b:{s:1000}:lease:poll:owner     string: who holds it (diagnostics only)
    d6b:{s:1000}:fence                counter: fencing tokens, monotonic per school across lease names
    d6b:{s:1000}:poll                 hash: poll status (bridge/sync/status.py)
    d6b:{schools}:known               set: every school id that ever committed
    d6b:{events}:loc                  hash: event id -> "<school_id>:<sequence>:<type>"
    d6b:{events}:idx                  zset (all scores 0, ordered by member = ULID event id = time)
    d6b:{events}:idx:t:<type>         the same, per event type
    d6b:{events}:idx:s:<school>       the same, per school
    d6b:{events}:idx:s:<school>:t:<type>
    d6b:{events}:deliveries           stream: the hand-off to delivery workers (id, school_id, ...)
    d6b:{events}:handoff              string: last delivery-stream entry id handed to the dispatcher
    d6b:{events}:handoff:lock         string: which replica runs the hand-off now (with a TTL)
    d6b:{integrations}:baseline       string: set once the first integrations poll was recorded
    d6b:{integrations}:lease          string: which replica polls the integrations list this interval
    d6b:{integrations}:active         set: school ids with an activated integration (what gets polled)
    d6b:{integrations}:polled         string: time of the last successful integrations poll
    d6b:{integrations}:hold           string: pair ids a suspicious list would remove (msgpack list)
    d6b:{store}:marker                string: the store's identity; its loss is a store reset (JSON)
"""

from __future__ import annotations

import msgspec


class Keys(msgspec.Struct, frozen=True):
    """Key names under one prefix (`BRIDGE_REDIS_PREFIX`)."""

    prefix: str = "d6b"

    def d6_budget(self) -> str:
        """Token bucket shared by every process that talks to d6 with these credentials."""
        return f"{self.prefix}:{{d6}}:budget"

    def school(self, school_id: int, suffix: str) -> str:
        return f"{self.prefix}:{{s:{school_id}}}:{suffix}"

    # --- one school's slot -------------------------------------------------------------------------

    def school_meta(self, school_id: int) -> str:
        """Sequence counter, publish watermark and per-resource snapshot facts, in one hash."""
        return self.school(school_id, "meta")

    def snapshot_hashes(self, school_id: int, resource: str) -> str:
        return self.school(school_id, f"snap:{resource}:hash")

    def snapshot_records(self, school_id: int, resource: str) -> str:
        return self.school(school_id, f"snap:{resource}:rec")

    def snapshot_hold(self, school_id: int, resource: str) -> str:
        return self.school(school_id, f"snap:{resource}:hold")

    def school_events(self, school_id: int) -> str:
        """The school's durable event log; the stream entry id is the event's sequence."""
        return self.school(school_id, "events")

    def lease(self, school_id: int, name: str = "poll") -> str:
        return self.school(school_id, f"lease:{name}")

    def lease_owner(self, school_id: int, name: str = "poll") -> str:
        return self.school(school_id, f"lease:{name}:owner")

    def fence(self, school_id: int) -> str:
        return self.school(school_id, "fence")

    def poll_status(self, school_id: int) -> str:
        return self.school(school_id, "poll")

    # --- global slots --------------------------------------------------------------------------------

    def known_schools(self) -> str:
        return f"{self.prefix}:{{schools}}:known"

    def event_locations(self) -> str:
        return f"{self.prefix}:{{events}}:loc"

    def event_index(self, *, type: str | None = None, school_id: int | None = None) -> str:
        """The listing index matching a filter; every variant lives in the `{events}` slot."""
        base = f"{self.prefix}:{{events}}:idx"
        if school_id is not None:
            base += f":s:{school_id}"
        if type is not None:
            base += f":t:{type}"
        return base

    def delivery_stream(self) -> str:
        """Published events for the delivery workers; in `{events}` so publishing is one script."""
        return f"{self.prefix}:{{events}}:deliveries"

    def integrations_baseline(self) -> str:
        return f"{self.prefix}:{{integrations}}:baseline"

    def integrations_lease(self) -> str:
        return f"{self.prefix}:{{integrations}}:lease"

    def integrations_active(self) -> str:
        return f"{self.prefix}:{{integrations}}:active"

    def integrations_polled(self) -> str:
        return f"{self.prefix}:{{integrations}}:polled"

    def integrations_hold(self) -> str:
        return f"{self.prefix}:{{integrations}}:hold"

    def store_marker(self) -> str:
        return f"{self.prefix}:{{store}}:marker"

    def handoff_cursor(self) -> str:
        return f"{self.prefix}:{{events}}:handoff"

    def handoff_lock(self) -> str:
        return f"{self.prefix}:{{events}}:handoff:lock"
