"""The integrations watcher: which schools authorised us, which are active, and auto-activation.

Every `BRIDGE_INTEGRATIONS_POLL_SECONDS` each replica runs `tick()`. One replica a interval wins the
`{integrations}` lease (a plain SET NX with the interval as TTL, never released early), reads the client
integrations list from d6 and commits each school's pairs as the snapshot resource "integration": new pairs
are `integration.authorised`, a flip of `activated_by_integrator` is `.activated` / `.deactivated`, a pair
that disappeared is `.revoked`. With `BRIDGE_AUTO_ACTIVATE` it then activates every pair that is not yet
active and reads the list once more, so the `integration.activated` events describe what d6 now says,
never what we hoped it would say. The set of active schools goes to Redis; every replica (winner or not)
reads it back and schedules its polling jobs from it.

The very first list of a deployment is a silent baseline (unless `BRIDGE_EMIT_INITIAL_SNAPSHOT`);
activations that follow it are still emitted.

Integration state is guarded against d6's bad days (docs/guarantees.md, its hold-back
and access-denied sections):
- a list that would remove more than half of at least 20 known pairs, or comes back empty while pairs are
  known, is held: nothing changes until the next poll agrees (`_held`);
- a school whose data calls answer 401 "Client has not authorised access" while it is still listed is
  *denied*: `integration.revoked` once, a `denied` flag in its meta (atomically with the events), out of
  the active set; the winner of each integrations interval asks for one poll of it, and the first poll
  that reads its data again calls `restore`: `integration.authorised` once, back in the active set, and
  the poll diffs against the snapshot the school had;
- a school revoked or denied for `BRIDGE_REVOKED_PURGE_DAYS` has its record snapshots purged, so a later
  re-authorisation starts a fresh silent baseline; the days count from the first loss of authorisation (a
  denied school that then leaves the list is `revoked` since its denial);
- every tick checks the store marker (store/marker.py), so a Redis that lost its data is noticed; under
  `BRIDGE_EMIT_INITIAL_SNAPSHOT` a new store's first list waits until its marker is confirmed.
"""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from collections.abc import Callable, Iterable
from typing import Any

import msgspec
import redis.asyncio as aioredis
import structlog

from bridge import metrics
from bridge.catalogue import INTEGRATION, RESOURCES
from bridge.d6.client import D6Client
from bridge.errors import D6Error, LeaseLost, SnapshotConflict
from bridge.events.envelope import Event, new_event
from bridge.events.outbox import Outbox
from bridge.settings import Settings
from bridge.store.codec import as_bytes, as_text
from bridge.store.keys import META_DENIED, META_PURGED, META_REVOKED, Keys
from bridge.store.marker import StoreMarker
from bridge.sync.diff import DiffResult, Record, finish_diff, is_mass_removal, plan_diff
from bridge.sync.events import integration_events, integration_id, is_active
from bridge.sync.snapshot import SnapshotStore

log = structlog.get_logger(__name__)

RESOURCE = INTEGRATION
CONCURRENCY = 32
CONFIRM_INTERVALS = 1.5
"""How long a new store's marker stays unconfirmed, in integrations intervals (`_awaiting_older_replicas`)."""
_PACK_IDS = msgspec.msgpack.Encoder()
_UNPACK_IDS = msgspec.msgpack.Decoder(list[str])


class IntegrationsWatcher:
    def __init__(
        self,
        settings: Settings,
        redis: aioredis.Redis,
        keys: Keys,
        d6: D6Client,
        snapshots: SnapshotStore,
        outbox: Outbox,
        *,
        replica_id: str,
        on_active: Callable[[set[int]], None] | None = None,
        on_denied: Callable[[set[int]], None] | None = None,
        marker: StoreMarker | None = None,
    ) -> None:
        self.settings = settings
        self.redis = redis
        self.keys = keys
        self.d6 = d6
        self.snapshots = snapshots
        self.outbox = outbox
        self.replica_id = replica_id
        self.on_active = on_active
        self.on_denied = on_denied
        """Called by the interval's winner with the denied schools to retry (one poll each)."""
        self.marker = marker
        self._said_waiting = False
        self._lock = asyncio.Lock()  # the watcher and a revocation from a poll never commit at once here

    # -- the job ------------------------------------------------------------------------------------

    async def tick(self) -> None:
        """The scheduled job: poll d6 if this replica won the interval, then apply the active set."""
        if self.marker is not None:
            await self.marker.check()
            if self._awaiting_older_replicas():
                await self._apply_active()
                return
        ttl_ms = max(1000, int(self.settings.integrations_poll_seconds * 1000) - 500)
        won = await self.redis.set(self.keys.integrations_lease(), self.replica_id, nx=True, px=ttl_ms)
        if won:
            await self.poll()
        active = await self.active_schools()
        if self.on_active is not None:
            self.on_active(active)

    async def poll(self) -> bool:
        """Read the integrations list, commit what changed, auto-activate; True when it all succeeded."""
        started = time.perf_counter()
        try:
            async with self._lock:
                records = await self._read()
                if await self._held(records):
                    metrics.POLLS.labels(resource=RESOURCE, outcome="held").inc()
                    return False
                denied = await self._commit_all(records)
                pending = [r for r in records if not is_active(r)] if self.settings.auto_activate else []
                if pending and await self._activate(pending):
                    again = await self._read()
                    if not await self._held(again):
                        denied = await self._commit_all(again)
                await self.redis.set(self.keys.integrations_polled(), repr(time.time()))
                await self._purge_revoked()
        except D6Error as error:
            metrics.POLLS.labels(resource=RESOURCE, outcome="failed").inc()
            log.warning("integrations poll failed", error=str(error), error_type=type(error).__name__)
            return False
        metrics.POLLS.labels(resource=RESOURCE, outcome="ok").inc()
        metrics.POLL_DURATION.labels(resource=RESOURCE).observe(time.perf_counter() - started)
        if denied and self.on_denied is not None:
            self.on_denied(denied)
        return True

    # -- reading --------------------------------------------------------------------------------------

    async def _read(self) -> list[Record]:
        """The whole list (a failed or partial scan raises, so nothing is diffed from it)."""
        records = [r for page in [p async for p in self.d6.scan_client_integrations()] for r in page.records]
        metrics.RECORDS_SCANNED.labels(resource=RESOURCE).inc(len(records))
        wanted = self.settings.api_type_ids
        return [r for r in records if wanted is None or r.get("api_type_id") in wanted]

    async def active_schools(self) -> set[int]:
        return {int(as_text(m)) for m in await self.redis.smembers(self.keys.integrations_active())}

    async def last_success(self) -> float | None:
        raw = await self.redis.get(self.keys.integrations_polled())
        return None if raw is None else float(as_text(raw))

    async def _held(self, records: list[Record]) -> bool:
        """The integrations-list hold-back (docs/guarantees.md): True when this list must change nothing yet.

        Suspicious: it comes back empty while pairs are known, or lacks more than half of at least 20 known
        pairs. The first such list is held (its missing pairs stored as a marker); the next poll agrees when
        it again lacks every held pair, and is then applied. A normal list clears the marker.
        """
        known = await self.snapshots.pair_ids(await self.snapshots.known_schools())
        listed = {integration_id(r) for r in records}  # raises on a pair without ids: nothing is diffed
        gone = known - listed
        suspicious = bool(gone) and (not listed or is_mass_removal(len(gone), len(known)))
        key = self.keys.integrations_hold()
        raw = await self.redis.get(key)
        if not suspicious:
            if raw is not None:
                await self.redis.delete(key)
            return False
        held = frozenset(_UNPACK_IDS.decode(as_bytes(raw))) if raw else None
        if held is not None and held <= gone:
            await self.redis.delete(key)
            log.warning("integrations list confirmed by a second poll; applying it", gone=len(gone))
            return False
        await self.redis.set(key, _PACK_IDS.encode(sorted(gone)))
        metrics.INTEGRATIONS_HELD.inc()
        log.warning(
            "integrations list held back until the next poll agrees",
            known=len(known),
            listed=len(listed),
            gone=len(gone),
        )
        return True

    # -- committing -----------------------------------------------------------------------------------

    async def _commit_all(self, records: list[Record]) -> set[int]:
        """Commit every school's pairs and store the active set; returns the denied schools to retry."""
        by_school: dict[int, list[Record]] = defaultdict(list)
        for record in records:
            integration_id(record)  # raises D6MalformedResponse on a pair without ids: nothing is diffed
            by_school[int(record["school_id"])].append(record)
        known = set(await self.snapshots.known_schools())
        lost = self._after_reset()  # a known school without an integration snapshot lost it in the reset
        emit = await self.snapshots.integrations_baselined() or (
            self.settings.emit_initial_snapshot and not lost
        )
        semaphore = asyncio.Semaphore(CONCURRENCY)
        # A listed school's `denied` flag is cleared only by its pairs leaving the list, so it can be read
        # before the commits.
        listed = sorted(s for s, pairs in by_school.items() if any(is_active(p) for p in pairs))
        flags = await self.snapshots.flags_of(listed)
        denied = {s for s in listed if flags[s].denied is not None}

        async def one(school_id: int) -> None:
            async with semaphore:
                await self._commit_school(
                    school_id,
                    by_school.get(school_id, []),
                    emit_created=emit,
                    lost=lost and school_id in known,
                )

        # The active set first: when anyone sees `integration.activated`, the school is already polled.
        # (Its first poll is a silent baseline; with BRIDGE_EMIT_INITIAL_SNAPSHOT its `*.created` may take
        # sequences before the activation's.)
        await self._store_active(set(listed) - denied)
        await asyncio.gather(*(one(s) for s in sorted(known | set(by_school))))
        await self.snapshots.mark_integrations_baselined()
        return denied

    async def _commit_school(
        self, school_id: int, records: list[Record], *, emit_created: bool, lost: bool = False
    ) -> int:
        """Diff and commit one school's pairs; returns how many events it emitted. `lost`: shortly after a
        store reset, the school was known, so a missing integration snapshot is one the reset took."""
        for attempt in range(3):
            previous = await self.snapshots.load(school_id, RESOURCE)
            if not records and not previous.hashes:
                return 0  # a school that never had an integration (it only has learner data)
            plan = plan_diff(previous, records, integration_id)
            if not (plan.created or plan.changed or plan.missing) and previous.version:
                return 0
            flags = await self.snapshots.flags(school_id)  # read after the version: a race conflicts
            result = finish_diff(plan, await self.snapshots.records(school_id, RESOURCE, plan.need_old))
            # A school whose integration snapshot the reset took (where the list's own baseline survived)
            # takes a silent baseline, as its feeds do; a school authorised since is still told.
            silent = lost and not previous.version
            events = integration_events(result, school_id=school_id, emit_created=emit_created and not silent)
            remaining = len(previous.hashes) + len(result.created) - len(result.deletes)
            changed_flags: dict[str, float | None] = {}
            if flags.denied is not None:
                # The denial already said `revoked`; a pair that now leaves the list is not revoked twice.
                events = [e for e in events if e.type != "integration.revoked"]
                if remaining == 0:
                    changed_flags[META_DENIED] = None
            if remaining == 0 and (flags.revoked is None or flags.denied is not None):
                # The purge clock counts from the first loss of authorisation: a denied school that now
                # leaves the list has been without it since its denial (docs/guarantees.md, revoked schools).
                since = [t for t in (flags.revoked, flags.denied) if t is not None]
                changed_flags[META_REVOKED] = min(since, default=time.time())
            elif remaining > 0 and flags.revoked is not None:
                changed_flags.update({META_REVOKED: None, META_PURGED: None})
            try:
                committed = await self.snapshots.commit(
                    school_id, RESOURCE, result, events, token=None, flags=changed_flags
                )
            except (SnapshotConflict, LeaseLost):
                log.info("integration commit raced, diffing again", school_id=school_id, attempt=attempt)
                continue
            self._emitted(school_id, committed.events)
            if committed.events:
                await self.outbox.publish(school_id)
            return len(committed.events)
        log.warning("integration commit kept racing; next poll will catch up", school_id=school_id)
        return 0

    def _emitted(self, school_id: int, events: list[Event]) -> None:
        for event in events:
            metrics.EVENTS_EMITTED.labels(type=event.type).inc()
            log.info("integration changed", school_id=school_id, type=event.type, pair=event.resource_id)

    def _after_reset(self) -> bool:
        return self.marker is not None and self.marker.recent_reset()

    def _awaiting_older_replicas(self) -> bool:
        """Under BRIDGE_EMIT_INITIAL_SNAPSHOT, a store whose marker is new and records no reset may still be
        found reset by an older replica (one checks before every integrations tick and school poll): the
        first list, and with it every first poll, waits `CONFIRM_INTERVALS` integrations intervals (+1 s)
        from the marker's creation, so that such a reset is not told as a flood (store/marker.py)."""
        if self.marker is None or not self.settings.emit_initial_snapshot:
            return False
        window = CONFIRM_INTERVALS * self.settings.integrations_poll_seconds + 1.0
        waiting = self.marker.unconfirmed(window)
        if waiting and not self._said_waiting:
            log.info("new store: waiting for older replicas before the initial snapshot", seconds=window)
        self._said_waiting = waiting
        return waiting

    async def _store_active(self, active: Iterable[int]) -> None:
        key = self.keys.integrations_active()
        members = [str(s) for s in sorted(active)]
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.delete(key)
            if members:
                pipe.sadd(key, *members)
            await pipe.execute()

    # -- auto-activation and revocation ---------------------------------------------------------------

    async def _activate(self, pending: list[Record]) -> int:
        """Activate each pending pair; a failure is logged and tried again next interval."""
        done = 0
        for record in pending:
            school_id, api_type_id = int(record["school_id"]), int(record["api_type_id"])
            try:
                await self.d6.change_integration_state(school_id, api_type_id, True)
            except D6Error as error:
                metrics.ACTIVATIONS.labels(outcome="failed").inc()
                log.warning(
                    "auto-activation failed", school_id=school_id, api_type_id=api_type_id, error=str(error)
                )
                continue
            metrics.ACTIVATIONS.labels(outcome="ok").inc()
            log.info("school activated", school_id=school_id, api_type_id=api_type_id)
            done += 1
        return done

    async def deny(self, school_id: int) -> int:
        """d6 answered 401 "Client has not authorised access" to a data call of a listed school:
        `integration.revoked` for each of its pairs, once; it leaves the active set until `restore`."""
        async with self._lock:
            emitted = await self._set_access(school_id, denied=True)
            await self.redis.srem(self.keys.integrations_active(), str(school_id))
        await self._apply_active()
        return emitted

    async def restore(self, school_id: int) -> int:
        """A denied school's data calls succeed again: `integration.authorised` for each pair, once."""
        async with self._lock:
            emitted = await self._set_access(school_id, denied=False)
            pairs = await self.snapshots.all_records(school_id, RESOURCE)
            if any(is_active(p) for p in pairs.values()):
                await self.redis.sadd(self.keys.integrations_active(), str(school_id))
        await self._apply_active()
        return emitted

    async def _set_access(self, school_id: int, *, denied: bool) -> int:
        """Flip the school's `denied` flag and emit the matching event for each pair, in one commit."""
        kind = "integration.revoked" if denied else "integration.authorised"
        for attempt in range(3):
            previous = await self.snapshots.load(school_id, RESOURCE)
            flags = await self.snapshots.flags(school_id)  # read after the version: a race conflicts
            if not previous.hashes or (flags.denied is not None) == denied:
                return 0
            pairs = await self.snapshots.records(school_id, RESOURCE, sorted(previous.hashes))
            now = time.time()
            events = [
                new_event(
                    kind, school_id=school_id, resource=RESOURCE, resource_id=pid, data=pairs[pid], now=now
                )
                for pid in sorted(pairs)
            ]
            unchanged = DiffResult(
                created=[],
                updated=[],
                removed=[],
                held_back=0,
                hold=previous.hold,
                upserts=[],
                deletes=[],
                version=previous.version,
            )
            changed_flags: dict[str, float | None] = {META_DENIED: now if denied else None}
            if not denied:
                changed_flags[META_PURGED] = None
            try:
                committed = await self.snapshots.commit(
                    school_id, RESOURCE, unchanged, events, token=None, flags=changed_flags
                )
            except (SnapshotConflict, LeaseLost):
                log.info("access change raced, trying again", school_id=school_id, attempt=attempt)
                continue
            log.warning(
                "school denies access to its data; revoked until it reads again"
                if denied
                else "school reads again; authorised",
                school_id=school_id,
            )
            self._emitted(school_id, committed.events)
            if committed.events:
                await self.outbox.publish(school_id)
            return len(committed.events)
        return 0

    async def _apply_active(self) -> None:
        active = await self.active_schools()
        if self.on_active is not None:
            self.on_active(active)

    async def _purge_revoked(self) -> None:
        """Delete the record snapshots of schools revoked or denied longer than BRIDGE_REVOKED_PURGE_DAYS."""
        now = time.time()
        cutoff = now - self.settings.revoked_purge_days * 86400
        schools = await self.snapshots.known_schools()
        for school_id, flags in (await self.snapshots.flags_of(schools)).items():
            since = min((t for t in (flags.denied, flags.revoked) if t is not None), default=None)
            if since is None or flags.purged is not None or since > cutoff:
                continue
            if await self.snapshots.purge(school_id, cutoff, [r.prefix for r in RESOURCES]):
                metrics.SNAPSHOTS_PURGED.inc()
                log.info(
                    "snapshots of a school without authorisation purged",
                    school_id=school_id,
                    days=round((now - since) / 86400, 2),
                )

    async def integrations(self, school_id: int) -> list[dict[str, Any]]:
        """The school's pairs as last seen, for `/v1/schools`."""
        records = await self.snapshots.all_records(school_id, RESOURCE)
        return [records[key] for key in sorted(records)]
