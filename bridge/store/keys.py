"""Every Redis key the bridge uses, and every hash field name that more than one module (or a Lua script)
spells, is built here and only here.

The rule: a module that touches Redis asks `Keys` for key names and imports field names from this module;
it never formats a key or spells a shared field itself. The value layouts stay with their owners (records:
store/records.py, events: events/envelope.py, deliveries: delivery/models.py). A hash whose fields are one
struct's fields, written field by field, is spelled by that struct's module: the poll status
(sync/status.py) and the subscription record (`Subscription`, delivery/models.py; the one field a script
reads, `failing_since`, is `SUBSCRIPTION_FAILING_SINCE` here). Stream entry fields are not covered yet:
they are listed in the layout below and spelled where entries are written and read.

Keys a school owns carry the school in a hash tag (`d6b:{s:1000}:learners`) so that all of one school's
data lands on one Redis Cluster slot and a Lua script may touch it atomically; likewise everything one
subscription owns carries `{sub:<id>}`. Global structures live in a few named slots: `{events}` (the event
listing and the delivery hand-off, written together by one script), `{schools}` (the set of known
schools), `{feeds}` (wake-ups of pull readers), `{integrations}` (deployment-wide integration facts),
`{subs}` (the subscription index) and `{d6}` (the request budget).

Layout (prefix `d6b`, school 1000, resource `learner`, subscription `sub_1`):

    d6b:{s:1000}:meta                 hash: seq, published, ver:<r>, baseline:<r>, count:<r>, polled:<r>,
                                      raws:<r>, bodies, and the flags denied, revoked, purged (times);
                                      fields: META_*
    d6b:{s:1000}:snap:learner:hash    hash: record id -> 16-byte BLAKE2b digest of the canonical record,
                                      then (a record of a raw scan) `x` and its 8-byte raw digest, then
                                      the record's sequence in ASCII decimal (the last event that
                                      told its state; no suffix = 0: docs/events.md#per-record-sequence)
    d6b:{s:1000}:snap:learner:rec     hash: record id -> last known normalised record (msgpack)
    d6b:{s:1000}:snap:learner:raws    string: "<verified>\n", then the raw digest of each record a raw
                                      scan stored with one (8 bytes each, little-endian), as last written
                                      whole; `raws+` and `raws-`: the digests commits added and removed
                                      since; valid while meta's raws:<r> equals ver:<r> (sync/snapshot.py)
    d6b:{s:1000}:snap:learner:hold    string: held-back removal id set (msgpack list), absent when none
    d6b:{s:1000}:snap:learner:dup     string: digest of the last scan not trusted (an id in it twice; the
                                      next must agree, sync/diff.py), with a TTL; absent after a clean one
    d6b:{s:1000}:events               stream: entry id "<sequence>-0", fields id, type: no body, so nothing
                                      personal (a stream keeps a deleted entry's bytes until its whole node
                                      goes). Written before the `bodies` hash, entries also hold `body` (the
                                      envelope), and an erased one was deleted (the last one replaced by
                                      "<sequence>-1"); an erasure rewrites such a stream first (`bodies` in
                                      meta says it was)
    d6b:{s:1000}:bodies               hash: sequence -> the event's envelope, as signed and sent; an erasure
                                      overwrites it (gone from memory at once, from the files at their next
                                      save or rewrite); retention deletes it with the stream entry
    d6b:{s:1000}:erased               hash: sequence -> the erased envelope of that event (which events an
                                      erasure reached: `bodies` holds the same bytes)
    d6b:{s:1000}:lease:poll           string: fencing token of the current holder (with a TTL)
    d6b:{s:1000}:lease:poll:owner     string: who holds it (diagnostics only)
    d6b:{s:1000}:fence                counter: fencing tokens, monotonic per school across lease names
    d6b:{s:1000}:poll                 hash: poll status (its fields are bridge/sync/status.py's)
    d6b:{s:1000}:commands             hash: command id -> msgpack `Command` (bridge/commands/models.py)
    d6b:{s:1000}:commands:queue       list: the school's commands not yet finished, in order (head first)
    d6b:{s:1000}:commands:origin      hash: "note:<id>" / "promise:<id>" -> JSON {command_id, idempotency_key,
                                      at}: what a command changed, for the `origin` of the change's event
                                      (kept 24 h)
    d6b:{commands}:due                zset: school id -> when its head command may be tried
    d6b:{commands}:all                zset: "<school>:<command id>" by creation time (the listing)
    d6b:{commands}:key:<digest>       string: an Idempotency-Key's command ("<school>:<id>:<body digest>"),
                                      for 24 h; the key itself is kept only as its SHA-256 digest
    d6b:{schools}:known               set: every school id that ever committed
    d6b:{events}:loc                  hash: event id -> "<school_id>:<sequence>:<type>"
    d6b:{events}:idx                  zset (all scores 0, ordered by member = ULID event id = time)
    d6b:{events}:idx:t:<type>         the same, per event type
    d6b:{events}:idx:s:<school>       the same, per school
    d6b:{events}:idx:s:<school>:t:<type>
    d6b:{events}:deliveries           stream: the hand-off to delivery workers (id, school_id, sequence,
                                      type; no body: the hand-off reads it from the school's `bodies`)
    d6b:{events}:handoff              string: last delivery-stream entry id handed to the dispatcher
    d6b:{events}:handoff:lock         string: which replica runs the hand-off now (with a TTL)
    d6b:{integrations}:baseline       string: set once the first integrations poll was recorded
    d6b:{integrations}:lease          string: which replica polls the integrations list this interval
    d6b:{integrations}:active         set: school ids with an activated integration (what gets polled)
    d6b:{integrations}:polled         string: time of the last successful integrations poll
    d6b:{integrations}:hold           string: pair ids a suspicious list would remove (msgpack list)
    d6b:{store}:marker                string: the store's identity; its loss is a store reset (JSON)
    d6b:{feeds}:notices               stream: pull subscriptions with new feed entries (field s), webhooks
                                      queued by the hand-off process (field p), capped
    d6b:{d6}:budget                   string: the d6 request budget's next arrival time (µs, Redis clock)
    d6b:{subs}:index                  set: every subscription id
    d6b:{subs}:version                counter: bumped on every subscription change (caches reload on it)
    d6b:{subs}:erasing                hash: "<school>:<resource>:<record>" -> JSON erasure journal entry
                                      (its event ids; dispatchers send none of them); bumps the version
    d6b:{subs}:resyncing              set: ids of subscriptions that may have a resync under way (added
                                      after a resync is stored; an id leaves once its `resyncs:active`
                                      is found empty)
    d6b:{sub:sub_1}:record            hash: the subscription, one JSON value per `Subscription` field
    d6b:{sub:sub_1}:deliveries        hash: delivery id -> msgpack `Delivery` (pending or dead, with its body)
    d6b:{sub:sub_1}:due               zset: delivery id -> when it may be attempted (leased: when lease ends)
    d6b:{sub:sub_1}:leases            hash: delivery id -> token of the worker that holds it
    d6b:{sub:sub_1}:lane:1000         list: the ordered lane of one school; only its head is ever in `due`
    d6b:{sub:sub_1}:lanes             set: school ids that have (or had) a lane
    d6b:{sub:sub_1}:fanned            zset: event ids queued here (fan-out idempotency, retention), by time
    d6b:{sub:sub_1}:traces            hash: event id -> msgpack `DeliveryTrace` of its latest delivery here
    d6b:{sub:sub_1}:dead              zset: dead-lettered delivery ids by the time they died
    d6b:{sub:sub_1}:attempts          zset: the attempt log (msgpack `Attempt`) by attempt time
    d6b:{sub:sub_1}:tokens            hash: token id -> JSON `StoredToken` (the SHA-256 digest of the token
                                      and when it was made; never the token): its subscription tokens
                                      (delivery/tokens.py)
    d6b:{sub:sub_1}:feed              stream (pull subscriptions): one entry per queued delivery, fields d
                                      (delivery id) and e (event id), in queuing order; trimmed up to the
                                      committed position and by retention (delivery/feed.py)
    d6b:{sub:sub_1}:feed:at           hash: committed (the last entry read and committed), floor (entries
                                      at or before it are gone: a cursor behind it is expired)
    d6b:{sub:sub_1}:resyncs           hash: resync id -> JSON `Resync`; "<id>:<n>" -> JSON progress of its
                                      n-th feed; "<id>:lo" -> its first feed not done (delivery/resync.py)
    d6b:{sub:sub_1}:resyncs:active    zset: ids of the resyncs under way, by creation time
    d6b:{sub:sub_1}:resyncs:unconfirmed  zset: snapshot event ids of unordered resyncs not yet confirmed
                                      delivered or dead, scored by their feed's number
    d6b:{sub:sub_1}:resyncs:counter   counter: resync lease tokens and feed numbers
    d6b:{sub:sub_1}:resync:<id>:lease string: the token of the replica running that resync (with a TTL),
                                      and `:owner` who it is
"""

from __future__ import annotations

from typing import Final

import msgspec

# --- fields of a school's `meta` hash (read and written by sync/snapshot.py, events/, store/scripts.py) ---

META_SEQ: Final = "seq"
"""The school's last event sequence (the last entry of its event stream)."""
META_PUBLISHED: Final = "published"
"""The publish watermark: every event up to this sequence is in the `{events}` slot."""
META_BODIES: Final = "bodies"
"""Set ("1") once the school's event stream holds no envelope (every one is in its `bodies` hash): a stream
that started empty, or one an erasure rewrote (store/scripts.py EVENTS_UNBODY)."""
# The school flags (times; `SchoolFlags` in sync/snapshot.py says what each one means), in its order.
META_DENIED: Final = "denied"
META_REVOKED: Final = "revoked"
META_PURGED: Final = "purged"
SCHOOL_FLAGS: Final = (META_DENIED, META_REVOKED, META_PURGED)
# Per-resource fields, "<prefix><resource>": snapshot version, baseline taken ("1"), record count, last poll.
META_VERSION: Final = "ver:"
META_BASELINE: Final = "baseline:"
META_COUNT: Final = "count:"
META_POLLED: Final = "polled:"
META_RAWS: Final = "raws:"
"""The version at which the feed's raw digests as one set (`snapshot_raws`) were last kept up to date."""
META_HANDON: Final = "handon:"
"""Set (to the commit's time) by the commit that takes a feed's new baseline, removed once that baseline is
handed on to automatic snapshots: one left behind (a replica killed in between) is handed on again later."""


def meta_version(resource: str) -> str:
    return META_VERSION + resource


def meta_raws(resource: str) -> str:
    return META_RAWS + resource


def meta_baseline(resource: str) -> str:
    return META_BASELINE + resource


def meta_handon(resource: str) -> str:
    return META_HANDON + resource


def meta_count(resource: str) -> str:
    return META_COUNT + resource


def meta_polled(resource: str) -> str:
    return META_POLLED + resource


# --- fields of a subscription's `record` hash -------------------------------------------------------------

SUBSCRIPTION_FAILING_SINCE: Final = "failing_since"
"""The `Subscription` field the delivery scripts keep (JSON: a time or null)."""


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

    def resync_ids(self, school_id: int, resource: str, resync_id: str) -> str:
        """List: the ids of the feed's records when a resync of it began, in the state API's order; the
        resync reads them a chunk at a time (sync/snapshot.py `freeze_ids`) and deletes it when done."""
        return self.school(school_id, f"resync:{resync_id}:{resource}")

    def snapshot_raws(self, school_id: int, resource: str) -> tuple[str, str, str]:
        """Strings: the raw digests of the feed's records as one set (sync/snapshot.py `known_raws`), as
        last written whole, then those added and those removed since."""
        base = self.school(school_id, f"snap:{resource}:raws")
        return base, f"{base}+", f"{base}-"

    def snapshot_hold(self, school_id: int, resource: str) -> str:
        return self.school(school_id, f"snap:{resource}:hold")

    def snapshot_dup(self, school_id: int, resource: str) -> str:
        """String: the digest of the last scan with a duplicate id, which the next scan must match."""
        return self.school(school_id, f"snap:{resource}:dup")

    def school_events(self, school_id: int) -> str:
        """The school's durable event log; the stream entry id is the event's sequence."""
        return self.school(school_id, "events")

    def school_bodies(self, school_id: int) -> str:
        """Hash: sequence -> the event's envelope (the stream holds its id and type only)."""
        return self.school(school_id, "bodies")

    def school_events_rewrite(self, school_id: int) -> str:
        """Stream: where an erasure builds the school's event stream anew, for a moment (one script)."""
        return self.school(school_id, "events:rewrite")

    def school_erased(self, school_id: int) -> str:
        """Hash: sequence -> the envelope of an erased event (`bodies` holds the same)."""
        return self.school(school_id, "erased")

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

    # --- the subscriptions' global slot `{subs}` (index, version, erasure journal) ---------------------

    def subscription_index(self) -> str:
        """Set of every subscription id."""
        return f"{self.prefix}:{{subs}}:index"

    def subscriptions_version(self) -> str:
        """Counter bumped on every subscription change, so processes know when to reload their cache."""
        return f"{self.prefix}:{{subs}}:version"

    def erasures(self) -> str:
        """Hash: the erasure journal; in `{subs}` so that writing it and bumping the version is one MULTI."""
        return f"{self.prefix}:{{subs}}:erasing"

    def resyncing(self) -> str:
        """Set of the subscriptions that may have a resync under way (delivery/resync.py): the resync loop
        reads this, not every subscription's `resyncs_active`."""
        return f"{self.prefix}:{{subs}}:resyncing"

    # --- one subscription's slot (the delivery queue, bridge/delivery/queue.py) ------------------------

    def _sub(self, subscription_id: str, suffix: str) -> str:
        return f"{self.prefix}:{{sub:{subscription_id}}}:{suffix}"

    def subscription(self, subscription_id: str) -> str:
        """Hash: the subscription's fields, each JSON-encoded."""
        return self._sub(subscription_id, "record")

    def deliveries(self, subscription_id: str) -> str:
        """Hash: delivery id -> msgpack `Delivery` (pending and dead-lettered ones, body included)."""
        return self._sub(subscription_id, "deliveries")

    def due(self, subscription_id: str) -> str:
        """Sorted set: delivery id -> when it may be attempted (or, while leased, when the lease ends)."""
        return self._sub(subscription_id, "due")

    def leases(self, subscription_id: str) -> str:
        """Hash: delivery id -> token of the worker that holds it."""
        return self._sub(subscription_id, "leases")

    def lane(self, subscription_id: str, school_id: int) -> str:
        """List: the ordered lane of one school; only its head is ever in `due`."""
        return self._sub(subscription_id, f"lane:{school_id}")

    def lanes(self, subscription_id: str) -> str:
        """Set: school ids that have (or had) a lane, so a deletion finds every lane key."""
        return self._sub(subscription_id, "lanes")

    def fanned(self, subscription_id: str) -> str:
        """Sorted set: event ids queued here (fan-out idempotency, retention), by event time."""
        return self._sub(subscription_id, "fanned")

    def traces(self, subscription_id: str) -> str:
        """Hash: event id -> msgpack `DeliveryTrace` of its latest delivery here (`GET /v1/events/{id}`)."""
        return self._sub(subscription_id, "traces")

    def dead(self, subscription_id: str) -> str:
        """Sorted set: dead-lettered delivery ids by the time they died."""
        return self._sub(subscription_id, "dead")

    def attempts(self, subscription_id: str) -> str:
        """Sorted set: the attempt log (msgpack `Attempt`, delivery/models.py) by attempt time."""
        return self._sub(subscription_id, "attempts")

    def commands(self, school_id: int) -> str:
        return f"{self.prefix}:{{s:{school_id}}}:commands"

    def command_queue(self, school_id: int) -> str:
        return f"{self.prefix}:{{s:{school_id}}}:commands:queue"

    def command_origins(self, school_id: int) -> str:
        return f"{self.prefix}:{{s:{school_id}}}:commands:origin"

    def commands_due(self) -> str:
        return f"{self.prefix}:{{commands}}:due"

    def commands_index(self) -> str:
        return f"{self.prefix}:{{commands}}:all"

    def command_key(self, digest: str) -> str:
        return f"{self.prefix}:{{commands}}:key:{digest}"

    def feed(self, subscription_id: str) -> str:
        return self._sub(subscription_id, "feed")

    def feed_at(self, subscription_id: str) -> str:
        return self._sub(subscription_id, "feed:at")

    def feed_notices(self) -> str:
        """Stream: which pull subscriptions got new entries (field s, their ids comma-joined), and whether
        webhooks were queued by the hand-off process (field p), so every replica wakes its waiting readers
        and its worker with one blocking read (delivery/feed.py); capped."""
        return f"{self.prefix}:{{feeds}}:notices"

    def tokens(self, subscription_id: str) -> str:
        """Hash: token id -> the digest of one of its subscription tokens (delivery/tokens.py). A token names
        its subscription, so finding it is one read in this slot: there is no global token index."""
        return self._sub(subscription_id, "tokens")

    def resyncs(self, subscription_id: str) -> str:
        """Hash: the subscription's resyncs and each feed's progress (delivery/resync.py)."""
        return self._sub(subscription_id, "resyncs")

    def resyncs_active(self, subscription_id: str) -> str:
        """Sorted set: the ids of the resyncs under way, by creation time."""
        return self._sub(subscription_id, "resyncs:active")

    def resyncs_unconfirmed(self, subscription_id: str) -> str:
        """Sorted set: snapshot event ids of unordered resyncs not yet delivered or dead, by feed number."""
        return self._sub(subscription_id, "resyncs:unconfirmed")

    def resyncs_counter(self, subscription_id: str) -> str:
        """Counter: resync lease tokens and feed numbers."""
        return self._sub(subscription_id, "resyncs:counter")

    def resync_lease(self, subscription_id: str, resync_id: str) -> str:
        return self._sub(subscription_id, f"resync:{resync_id}:lease")

    def resync_lease_owner(self, subscription_id: str, resync_id: str) -> str:
        return self._sub(subscription_id, f"resync:{resync_id}:lease:owner")

    def subscription_key_pattern(self) -> str:
        """SCAN pattern matching every key of every subscription (the orphan sweep, delivery/store.py)."""
        return _glob_escape(f"{self.prefix}:{{sub:") + "*"

    def subscription_of(self, key: str) -> str | None:
        """The subscription id in one of its keys, None for any other key."""
        head = f"{self.prefix}:{{sub:"
        subscription_id, tagged, _ = key.removeprefix(head).partition("}:")
        return subscription_id if key.startswith(head) and tagged else None

    def all_of(self, subscription_id: str) -> list[str]:
        """Every fixed key of a subscription (lanes come from `lanes`)."""
        return [
            self.subscription(subscription_id),
            self.deliveries(subscription_id),
            self.due(subscription_id),
            self.leases(subscription_id),
            self.lanes(subscription_id),
            self.fanned(subscription_id),
            self.traces(subscription_id),
            self.dead(subscription_id),
            self.attempts(subscription_id),
            self.tokens(subscription_id),
            self.feed(subscription_id),
            self.feed_at(subscription_id),
            self.resyncs(subscription_id),
            self.resyncs_active(subscription_id),
            self.resyncs_unconfirmed(subscription_id),
            self.resyncs_counter(subscription_id),
        ]


def _glob_escape(text: str) -> str:
    """`text` matched literally by a Redis glob (SCAN MATCH)."""
    return "".join("\\" + c if c in "*?[]\\" else c for c in text)
