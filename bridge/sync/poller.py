"""One school's poll: lease, due check, complete scan of each feed asked for, diff, atomic commit.

A feed is a (school, resource) pair (bridge/catalogue.py); a school's watched resources are those
`BRIDGE_RESOURCES` selects (debtors and learners by default) among the six of the catalogue (debtors,
learners, balances, promises, notes, transactions). The scheduler asks for one feed at a time; without a
resource, `poll` takes each watched one in turn.

    token = lease.acquire(school)            # one replica at a time; renewed while the poll runs
    for each feed asked for:
        due?  (last start by any replica + interval - tolerance has passed, or the poll was asked for)
        scan every page -> diff against the snapshot -> commit snapshot + events -> publish them
    release the lease

Each replica has a job for every active school, so "due" is decided from the poll status in Redis that
every replica shares, by bridge/sync/due.py's rule (or the poll plan's, `planned_due`, while it binds): a
poll records the time its feed became due (its job's fire time), so a feed that waited in the queue (d6
budget short) is not pushed back an interval.

A scan that fails part way raises before anything is diffed: the snapshot and the event log stay as they
were. A complete scan in which one id appears twice (the list moved under the cursor, or d6 repeated a row)
is not trusted at once (docs/guarantees.md): nothing is diffed, a digest of the scan is kept
(`snap:<resource>:dup`), the poll counts as `duplicates` and is recorded like a failed one (its `last_error`
names the ids), and the feed is polled again at its next turn; when that scan is the same scan, it is
diffed, the last row of an id winning.

Most feeds are scanned raw (docs/development.md#the-diff-fast-path): their pages keep each record's bytes,
and the diff decodes only the records whose bytes the snapshot does not know (sync/diff.py
`plan_raw_diff`). A feed whose records are not one row, one record, identified by its own content
(transactions: family groups flattened, occurrence numbers paired with the snapshot) is scanned decoded,
as before (`raw_scan`).

A 401 "Client has not authorised access" hands the school to `on_denied` (the watcher revokes it once); the
first scan of a denied school that reads again hands it to `on_restored` before anything is
committed, so `integration.authorised` precedes the changes made while access was denied.

A commit that takes a feed's new baseline (no `baseline:<r>` before it: a newly active school's first
poll, the first after a purge, every feed after a store reset) hands the feed to `on_baseline` once it
is committed and its events published: the bridge resyncs it to the subscriptions created with
`"initial": "snapshot"` (docs/api.md#automatic-snapshots). The commit is fenced by the lease and the
snapshot version, so of several replicas only the one whose commit took the baseline calls it. The same
commit marks the baseline as not yet handed on (`handon:<r>` in the school's meta), and the mark goes once
it is: one a replica leaves behind (killed in between, or Redis unreachable then) is handed on again by
the upkeep of any replica (app.py).

A lease that cannot be released (Redis frozen or unreachable when the poll ends) is released in the
background as soon as Redis answers again, so the school is not locked out for the rest of the TTL.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, Final

import msgspec
import structlog

from bridge import metrics
from bridge.catalogue import BY_NAME, Resource
from bridge.d6.client import D6Client
from bridge.d6.pagination import Page
from bridge.errors import D6Error, D6MalformedResponse, D6NotAuthorised, LeaseLost, SnapshotConflict
from bridge.events.envelope import Event
from bridge.events.outbox import Outbox
from bridge.loops import cancelled
from bridge.settings import Settings
from bridge.sync.diff import (
    RAW_TRUST_SECONDS,
    DiffPlan,
    DiffResult,
    Record,
    finish_diff,
    plan_diff,
    plan_raw_diff,
    plan_sighted,
    sight_raw,
)
from bridge.sync.due import is_due
from bridge.sync.events import record_events
from bridge.sync.lease import Lease
from bridge.sync.snapshot import SnapshotStore
from bridge.sync.status import FeedStatus, PollStatusStore

log = structlog.get_logger(__name__)

LEASE_SECONDS: Final = 60.0
RENEW_EVERY_SECONDS: Final = 20.0
UNSETTLED_MIN_SECONDS: Final = 86_400.0
"""How long the digest of an untrusted scan waits for the next scan at least (else four intervals)."""
SHOWN_IDS: Final = 20
"""Duplicated ids named in a log line and in `last_error` (the count says how many in all)."""


class ScanUntrusted(Exception):
    """A complete scan with a duplicate id that the scan before did not match: nothing is diffed."""

    def __init__(self, duplicated: tuple[str, ...]) -> None:
        self.duplicated = duplicated
        shown = ", ".join(duplicated[:SHOWN_IDS]) + (", ..." if len(duplicated) > SHOWN_IDS else "")
        super().__init__(
            f"{len(duplicated)} id(s) appear twice in one scan: {shown}; nothing diffed until the next scan "
            "agrees"
        )


class SchoolPoller:
    def __init__(
        self,
        settings: Settings,
        d6: D6Client,
        snapshots: SnapshotStore,
        lease: Lease,
        status: PollStatusStore,
        outbox: Outbox,
        *,
        replica_id: str,
        on_denied: Callable[[int], Awaitable[object]] | None = None,
        on_restored: Callable[[int], Awaitable[object]] | None = None,
        on_baseline: Callable[[int, str], Awaitable[object]] | None = None,
        recent_reset: Callable[[], bool] | None = None,
        lease_seconds: float = LEASE_SECONDS,
        planned_due: Callable[[str, FeedStatus, float], bool | None] | None = None,
    ) -> None:
        self.settings = settings
        self.d6 = d6
        self.snapshots = snapshots
        self.lease = lease
        self.status = status
        self.outbox = outbox
        self.replica_id = replica_id
        self.on_denied = on_denied
        self.on_restored = on_restored
        self.on_baseline = on_baseline
        """Told (school, resource name) after a commit that took the feed's new baseline."""
        self.recent_reset = recent_reset
        """True shortly after a store reset: first scans stay silent, even with EMIT_INITIAL_SNAPSHOT."""
        self.lease_seconds = lease_seconds
        self.planned_due = planned_due
        """The poll planner's due check (`Planner.due`); when it answers None, the rule below applies."""
        self._releasing: set[asyncio.Task[None]] = set()
        self.resources = settings.resources

    async def poll(
        self, school_id: int, force: bool = False, *, resource: str | None = None, due_at: float | None = None
    ) -> str:
        """Poll one feed of a school (or, without `resource`, each watched feed in turn) if it is due (or
        `force`); returns the outcome, also counted in the metrics. `due_at` is when the feed's job marked
        it due (default: now). Without `resource` the outcome is the first that was not "ok"."""
        names = self.resources if resource is None else (resource,)
        token = await self.lease.acquire(school_id, self.replica_id, self.lease_seconds)
        if token is None:
            return self._count("busy")  # another replica polls this school right now
        outcomes: list[str] = []
        try:
            async with self._renewing(school_id, token) as lost:
                for name in names:
                    if not force and not await self._due(school_id, name):
                        outcomes.append(self._count("skipped"))
                        continue
                    await self.status.started(school_id, name, due_at=due_at)
                    outcome = self._count(await self._poll(school_id, BY_NAME[name], token, lost))
                    outcomes.append(outcome)
                    if outcome in ("denied", "lost_lease"):
                        break
        finally:
            await self._release(school_id, token)
        return next((o for o in outcomes if o != "ok"), "ok") if resource is None else outcomes[0]

    async def _release(self, school_id: int, token: int) -> None:
        try:
            await self.lease.release(school_id, token)
        except Exception as error:
            log.warning(
                "lease release failed; retrying in the background", school_id=school_id, error=str(error)
            )
            task = asyncio.create_task(
                self._release_later(school_id, token), name=f"lease-release-{school_id}"
            )
            self._releasing.add(task)
            task.add_done_callback(self._releasing.discard)

    async def _release_later(self, school_id: int, token: int) -> None:
        """Retry the release until Redis answers or the lease would have expired anyway."""
        give_up = time.monotonic() + self.lease_seconds
        delay = 0.1
        while time.monotonic() < give_up:
            await asyncio.sleep(delay)
            try:
                await self.lease.release(school_id, token)
            except Exception:  # still unreachable: try again shortly
                delay = min(1.0, delay * 2)
                continue
            log.info("lease released after Redis answered again", school_id=school_id)
            return

    async def aclose(self) -> None:
        """Stop the background lease releases (at shutdown)."""
        await cancelled(*self._releasing)

    async def _due(self, school_id: int, resource: str) -> bool:
        feed = await self.status.feed(school_id, resource)
        planned = self.planned_due(resource, feed, time.time()) if self.planned_due is not None else None
        if planned is not None:
            return planned
        return is_due(self.settings, resource, feed, time.time(), planned=False)

    async def _poll(self, school_id: int, resource: Resource, token: int, lost: asyncio.Event) -> str:
        started = time.perf_counter()
        bound = log.bind(school_id=school_id, resource=resource.name)
        try:
            denied = (
                self.on_restored is not None and (await self.snapshots.flags(school_id)).denied is not None
            )
            scanned, count = await self._scan(school_id, resource)
            if lost.is_set():
                raise LeaseLost(f"school {school_id}: lease lost during the scan")
            if denied and self.on_restored is not None:
                await self.on_restored(school_id)  # before the changes: `authorised` comes first
            emitted, baselined = await self._commit(school_id, resource, scanned, token)
        except ScanUntrusted as untrusted:
            bound.warning(
                "scan not trusted: an id appears twice; nothing diffed, polled again",
                duplicated=list(untrusted.duplicated[:SHOWN_IDS]),
                count=len(untrusted.duplicated),
            )
            await self.status.failed(school_id, resource.name, f"{type(untrusted).__name__}: {untrusted}")
            return "duplicates"
        except D6NotAuthorised as error:
            bound.warning("school denies access to its data", error=str(error))
            await self.status.failed(school_id, resource.name, f"access denied: {error}")
            if self.on_denied is not None:
                await self.on_denied(school_id)
            return "denied"
        except D6Error as error:
            if isinstance(error, D6MalformedResponse):
                metrics.D6_BAD_ANSWERS.labels(endpoint=error.endpoint or "unknown").inc()
            bound.warning("poll failed; nothing diffed", error=str(error), error_type=type(error).__name__)
            await self.status.failed(school_id, resource.name, f"{type(error).__name__}: {error}")
            return "failed"
        except (LeaseLost, SnapshotConflict) as error:
            bound.warning("poll lost its lease; another replica takes over", error=str(error))
            return "lost_lease"
        pages = len(scanned)
        since = await self.status.succeeded(school_id, resource.name, count, pages, changes=emitted)
        if since is not None and emitted:
            metrics.observe_detection_lag(resource.prefix, since, emitted)
        if emitted:
            await self.outbox.publish(school_id)
        if baselined:
            await self.hand_on(school_id, resource)
        seconds = time.perf_counter() - started
        metrics.POLL_DURATION.labels(resource=resource.prefix).observe(seconds)
        bound.info("feed polled", seconds=round(seconds, 3), events=emitted, records=count, pages=pages)
        return "ok"

    async def hand_on(self, school_id: int, resource: Resource) -> None:
        """Hand a committed new baseline to `on_baseline`, then clear its mark (set by the commit). The poll
        succeeded whatever this answers: a failure is logged and leaves the mark, which the serve process'
        upkeep hands on again later (app.py)."""
        try:
            if self.on_baseline is not None:
                await self.on_baseline(school_id, resource.name)
            await self.snapshots.handed_on(school_id, resource.prefix)
        except Exception as error:
            log.warning(
                "new baseline not passed on to automatic snapshots yet",
                school_id=school_id,
                resource=resource.name,
                error=f"{type(error).__name__}: {error}",
            )

    async def _scan(self, school_id: int, resource: Resource) -> tuple[list[Page], int]:
        """Every page (a raw one, or its records prepared) and the number of records, or an exception:
        never a partial list."""
        scanned: list[Page] = []
        raw = raw_scan(resource)
        pages: AsyncIterator[Page] = self.d6.scan_endpoint(
            resource.endpoint, school_id, raw=raw, **resource.query(self.settings)
        )
        prepare = resource.prepare
        async for page in pages:
            if prepare is not None:
                page.records = prepare(page.records)
            scanned.append(page)
        count = sum(len(page.rows or ()) if raw else len(page.records) for page in scanned)
        metrics.RECORDS_SCANNED.labels(resource=resource.prefix).inc(count)
        return scanned, count

    async def _plan(self, school_id: int, resource: Resource, pages: list[Page]) -> DiffPlan:
        """Load the snapshot and plan the diff of the scan against it."""
        prefix = resource.prefix
        if raw_scan(resource):
            return await plan_raw_scan(
                self.snapshots, school_id, prefix, pages, resource.key_function(), resource.compare
            )
        previous = await self.snapshots.load(school_id, prefix)
        keys = None
        if resource.scan_keys is not None:  # identity depends on the scan: paired with the snapshot
            keyer = resource.scan_keys([page.records for page in pages])
            wanted = keyer.to_read(previous.hashes)
            twins = await self.snapshots.records(school_id, prefix, wanted) if wanted else {}
            keys = keyer.keys(previous.hashes, twins)
        records = [record for page in pages for record in page.records]
        return plan_diff(previous, records, resource.key_function(), resource.compare, keys=keys)

    async def _commit(
        self, school_id: int, resource: Resource, pages: list[Page], token: int
    ) -> tuple[int, bool]:
        """Diff and commit; answers how many events were emitted and whether it took a new baseline."""
        prefix = resource.prefix
        plan = await self._plan(school_id, resource, pages)
        previous = plan.previous
        if plan.duplicated:  # kept (its TTL renewed) while scans repeat: the next must agree with this one
            interval = self.settings.feed_interval(resource.name)
            ttl = max(UNSETTLED_MIN_SECONDS, 4 * interval)
            await self.snapshots.unsettle(school_id, prefix, plan.scan_digest, ttl)
            if not plan.trusted:
                raise ScanUntrusted(plan.duplicated)
            log.warning(
                "scan with an id twice diffed: the scan before agreed",
                school_id=school_id,
                resource=prefix,
                duplicated=list(plan.duplicated[:SHOWN_IDS]),
                count=len(plan.duplicated),
            )
        elif previous.unsettled is not None:  # a clean scan: the next suspicious one starts afresh
            await self.snapshots.unsettle(school_id, prefix, None, 0)
        result = finish_diff(plan, await self.snapshots.old_records(school_id, prefix, plan))
        if resource.aged_out is not None and result.removed:
            result = _without_aged_out(result, resource, self.settings)
        if result.held_back:
            metrics.MASS_REMOVALS_HELD.labels(resource=prefix).inc()
            log.warning(
                "mass removal held back until the next scan agrees",
                school_id=school_id,
                resource=prefix,
                held=result.held_back,
                had=previous.count,
            )
        emit_created = previous.baseline or (
            self.settings.emit_initial_snapshot and not (self.recent_reset and self.recent_reset())
        )
        events = record_events(result, school_id=school_id, resource=prefix, emit_created=emit_created)
        if prefix in ORIGIN_RESOURCES and events:
            events = with_origins(events, await self.snapshots.origins(school_id))
        committed = await self.snapshots.commit(school_id, prefix, result, events, token=token)
        for event in committed.events:
            metrics.EVENTS_EMITTED.labels(type=event.type).inc()
        return len(committed.events), not previous.baseline

    def _count(self, outcome: str) -> str:
        metrics.POLLS.labels(resource="school", outcome=outcome).inc()
        return outcome

    @contextlib.asynccontextmanager
    async def _renewing(self, school_id: int, token: int) -> AsyncIterator[asyncio.Event]:
        """Renew the lease in the background; the event is set if it was lost."""
        lost = asyncio.Event()

        async def renew() -> None:
            while True:
                await asyncio.sleep(min(RENEW_EVERY_SECONDS, self.lease_seconds / 3))
                try:
                    still = await self.lease.renew(school_id, token, self.lease_seconds)
                except Exception as error:
                    log.warning("lease renewal failed", school_id=school_id, error=str(error))
                    continue
                if not still:
                    lost.set()
                    return

        task = asyncio.create_task(renew(), name=f"lease-renew-{school_id}")
        try:
            yield lost
        finally:
            await cancelled(task)


async def plan_raw_scan(
    snapshots: SnapshotStore,
    school_id: int,
    prefix: str,
    pages: list[Page],
    id_of: str | Callable[[Record], str],
    compare: Callable[[Record], Record] | None = None,
    *,
    now: float | None = None,
) -> DiffPlan:
    """A raw scan planned against the snapshot's raw digests as one set and the values of the records it
    decoded, or, when that cannot be (sync/diff.py), against every stored value; every record decoded when
    the feed's were last all decoded `RAW_TRUST_SECONDS` ago."""
    now = time.time() if now is None else now
    previous = await snapshots.known_raws(school_id, prefix)
    if previous is not None and previous.known is not None and now - previous.verified < RAW_TRUST_SECONDS:
        sighting = sight_raw(previous.known, pages, id_of)
        if sighting is not None:
            stored, old = await snapshots.stored_values(school_id, prefix, list(sighting.records))
            plan = plan_sighted(previous, sighting, stored, compare, old=old)
            if plan is not None:
                return plan
    previous = await snapshots.load(school_id, prefix)
    trust = now - previous.verified < RAW_TRUST_SECONDS
    return plan_raw_diff(previous, pages, id_of, compare, trust_bytes=trust)


def raw_scan(resource: Resource) -> bool:
    """Whether a feed is scanned raw: each row is one record, identified by its own content (its id
    field, or a function of it), so the same bytes are the same record, unchanged."""
    return resource.prepare is None and resource.keys is None and resource.scan_keys is None


def _without_aged_out(result: DiffResult, resource: Resource, settings: Settings) -> DiffResult:
    """Removals of records that left a windowed scan by growing old are dropped from the snapshot silently:
    only a record that vanished from inside the window is `removed`."""
    assert resource.aged_out is not None
    kept = [change for change in result.removed if not resource.aged_out(change.record, settings)]
    if len(kept) == len(result.removed):
        return result
    return msgspec.structs.replace(result, removed=kept)


ORIGIN_RESOURCES: Final = ("note", "promise")
"""The resources write-back commands change (docs/commands.md)."""


ORIGIN_TYPES: Final = {
    "create_note": frozenset({"note.created", "promise.created"}),
    "update_note": frozenset({"note.updated", "promise.created"}),
    "delete_note": frozenset({"note.updated", "note.removed"}),
    "delete_promise": frozenset({"promise.updated", "promise.removed"}),
}
"""The events that can tell what a command of each kind changed: only these carry its `origin`. The school's
own later changes to the same note or promise (a payment recorded against a promise made with a note) are
not the command's, and carry none."""


def with_origins(events: list[Event], origins: dict[str, dict[str, Any]]) -> list[Event]:
    """Each event of a change a write-back command made, with its `origin`: a note's by its id, a promise's
    by its own id (deleted through a command) or its note's (made with the note); only events of the types
    the command's kind makes (`ORIGIN_TYPES`; an entry stored before kinds were kept: any)."""
    if not origins:
        return events
    marked = []
    for event in events:
        origin = origins.get(f"{event.resource}:{event.resource_id}")
        if origin is None and event.resource == "promise" and event.data.get("note_id") is not None:
            origin = origins.get(f"note:{event.data['note_id']}")
        if origin is not None:
            kind = origin.get("kind")
            if kind is not None and event.type not in ORIGIN_TYPES.get(kind, ()):
                origin = None
            else:
                origin = {k: origin.get(k) for k in ("command_id", "idempotency_key")}
        marked.append(event if origin is None else msgspec.structs.replace(event, origin=origin))
    return marked
