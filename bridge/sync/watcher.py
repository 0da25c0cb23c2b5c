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
"""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from collections.abc import Callable, Iterable
from typing import Any

import redis.asyncio as aioredis
import structlog

from bridge import metrics
from bridge.d6.client import D6Client
from bridge.errors import D6Error, LeaseLost, SnapshotConflict
from bridge.events.build import ACTIVATED_FIELD, integration_events, integration_id
from bridge.events.outbox import Outbox
from bridge.settings import Settings
from bridge.store.codec import as_text
from bridge.store.keys import Keys
from bridge.sync.diff import Record, finish_diff, plan_diff
from bridge.sync.snapshot import SnapshotStore

log = structlog.get_logger(__name__)

RESOURCE = "integration"
CONCURRENCY = 32


def is_active(record: Record) -> bool:
    value = record.get(ACTIVATED_FIELD)
    return isinstance(value, str) and value.strip().lower() == "yes"


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
    ) -> None:
        self.settings = settings
        self.redis = redis
        self.keys = keys
        self.d6 = d6
        self.snapshots = snapshots
        self.outbox = outbox
        self.replica_id = replica_id
        self.on_active = on_active
        self._lock = asyncio.Lock()  # the watcher and a revocation from a poll never commit at once here

    # -- the job ------------------------------------------------------------------------------------

    async def tick(self) -> None:
        """The scheduled job: poll d6 if this replica won the interval, then apply the active set."""
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
                await self._commit_all(records)
                pending = [r for r in records if not is_active(r)] if self.settings.auto_activate else []
                if pending and await self._activate(pending):
                    await self._commit_all(await self._read())
                await self.redis.set(self.keys.integrations_polled(), repr(time.time()))
        except D6Error as error:
            metrics.POLLS.labels(resource=RESOURCE, outcome="failed").inc()
            log.warning("integrations poll failed", error=str(error), error_type=type(error).__name__)
            return False
        metrics.POLLS.labels(resource=RESOURCE, outcome="ok").inc()
        metrics.POLL_DURATION.labels(resource=RESOURCE).observe(time.perf_counter() - started)
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

    # -- committing -----------------------------------------------------------------------------------

    async def _commit_all(self, records: list[Record]) -> None:
        by_school: dict[int, list[Record]] = defaultdict(list)
        for record in records:
            integration_id(record)  # raises D6MalformedResponse on a pair without ids: nothing is diffed
            by_school[int(record["school_id"])].append(record)
        known = set(await self.snapshots.known_schools())
        emit = self.settings.emit_initial_snapshot or await self.snapshots.integrations_baselined()
        semaphore = asyncio.Semaphore(CONCURRENCY)

        async def one(school_id: int) -> None:
            async with semaphore:
                await self._commit_school(school_id, by_school.get(school_id, []), emit_created=emit)

        await asyncio.gather(*(one(s) for s in sorted(known | set(by_school))))
        await self.snapshots.mark_integrations_baselined()
        active = {s for s, pairs in by_school.items() if any(is_active(p) for p in pairs)}
        await self._store_active(active)

    async def _commit_school(self, school_id: int, records: list[Record], *, emit_created: bool) -> int:
        """Diff and commit one school's pairs; returns how many events it emitted."""
        for attempt in range(3):
            previous = await self.snapshots.load(school_id, RESOURCE)
            if not records and not previous.hashes:
                return 0  # a school that never had an integration (it only has learner data)
            plan = plan_diff(previous, records, integration_id)
            if not (plan.created or plan.changed or plan.missing) and previous.version:
                return 0
            result = finish_diff(plan, await self.snapshots.records(school_id, RESOURCE, plan.need_old))
            events = integration_events(result, school_id=school_id, emit_created=emit_created)
            try:
                committed = await self.snapshots.commit(school_id, RESOURCE, result, events, token=None)
            except (SnapshotConflict, LeaseLost):
                log.info("integration commit raced, diffing again", school_id=school_id, attempt=attempt)
                continue
            for event in committed.events:
                metrics.EVENTS_EMITTED.labels(type=event.type).inc()
                log.info("integration changed", school_id=school_id, type=event.type, pair=event.resource_id)
            if committed.events:
                await self.outbox.publish(school_id)
            return len(committed.events)
        log.warning("integration commit kept racing; next poll will catch up", school_id=school_id)
        return 0

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

    async def revoke(self, school_id: int) -> int:
        """d6 answered 401 "Client has not authorised access" for this school: all its pairs are revoked."""
        async with self._lock:
            emitted = await self._commit_school(school_id, [], emit_created=True)
            await self.redis.srem(self.keys.integrations_active(), str(school_id))
        active = await self.active_schools()
        if self.on_active is not None:
            self.on_active(active)
        return emitted

    async def integrations(self, school_id: int) -> list[dict[str, Any]]:
        """The school's pairs as last seen, for `/v1/schools`."""
        records = await self.snapshots.all_records(school_id, RESOURCE)
        return [records[key] for key in sorted(records)]
