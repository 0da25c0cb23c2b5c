"""Resync: a subscription sent the current state of its feeds (docs/consumers.md#resync).

`POST /v1/subscriptions/{id}/resync` (and, for `"initial": "snapshot"` subscriptions, the automatic
triggers) call `start`: the resync is stored in the subscription's slot and the call returns at once. Each
(school, resource) feed then gets, in that school's lane of the subscription (after every change event
already queued there): `resync.started`, one `<prefix>.snapshot` per record the snapshot holds, and
`resync.completed`. These events are deliveries only: they are not in the event log and take no number
of the school's change sequence. A `*.snapshot` carries its record's sequence (docs/consumers.md rule 1);
the markers carry the feed's `as_of_sequence`, `resource: "resync"` and the resync id as `resource_id`.

`step` (any replica, from its background loop) does a bounded amount of the work of each resync it can
lease (a short lease per resync, so two replicas never run one at once). It finds them through an index
of the subscriptions with a resync under way (`Keys.resyncing`), so an idle step is one read whatever the
number of subscriptions, and every `SCAN_SECONDS` through every subscription (a resync whose process died
before indexing it). Then:

- a feed's record ids are written to a list in the school's slot when it starts (`SnapshotStore.freeze_ids`,
  in the state API's order, read with `as_of_sequence` in the same step), then its records are read `chunk`
  ids at a time (`read_records` with those ids: one sort per feed, not one per chunk). A record removed
  since is left out; one added since is told by its `created` event. The list goes when the feed is done;
  one that expired under a resync paused for longer than the retention is written again and the feed
  starts over (records sent twice, none missed);
- a subscription never holds more than `max_pending` undelivered deliveries because of a resync (its
  pending ones are counted before each chunk): memory stays bounded whatever the feed's size, and change
  events queued meanwhile keep flowing beside it;
- a chunk's deliveries, the feed's progress and (unordered subscriptions) the ids still to confirm are
  written in one MULTI, so a crash re-queues nothing on a single Redis (on Redis Cluster, where scripts do
  not go in a MULTI, at most one chunk: harmless under the consumer's sequence rule, as any redelivery is).
- An unordered subscription gets `resync.started` alone first, then the snapshots once it was delivered
  (or dead-lettered), and `resync.completed` only when every snapshot event of the feed was delivered or
  dead-lettered: its event ids are kept in a set in the subscription's slot until their traces say so.
- For an ordered subscription the lane keeps the order; the traces of its snapshot events are not kept
  (they are in no event log that `GET /v1/events/{id}` could answer for: keeping them would cost memory
  per record until the retention).

Erasure (docs/personal-data.md#erase-a-record): an erased record goes out as `{"erased": true}`. A chunk
read before an erasure and queued after it is caught here: after queuing, Redis is asked which of the
chunk's records lost their bodies since (`SnapshotStore.erased_among`, no record read again), and their
deliveries are dropped (recorded as erased); the erasure itself drops the snapshot deliveries it finds
queued (delivery/erasure.py). Each side writes before it reads the other's slot, so one of them sees the
other.

The markers' bodies never depend on the subscription's options, so they are queued as never to be cut
again (`projected_at` infinite: the worker neither re-projects nor re-filters them).
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import secrets
import time
from collections.abc import Callable, Sequence
from typing import Any, Final, Literal

import msgspec
import structlog
from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster
from redis.exceptions import RedisError, WatchError

from bridge.catalogue import BY_NAME, BY_PREFIX, snapshot_type
from bridge.delivery.feed import Notices
from bridge.delivery.models import DeliveryTrace, OutgoingEvent, Subscription, type_matches
from bridge.delivery.projection import Envelope, project, shape_of
from bridge.delivery.queue import DeliveryHead, DeliveryQueue
from bridge.delivery.store import SubscriptionStore
from bridge.errors import InvalidRequest
from bridge.events.envelope import format_timestamp
from bridge.events.ids import new_event_id, ulid
from bridge.events.log import ERASED
from bridge.loops import Background, poll
from bridge.settings import Settings
from bridge.store.codec import as_bytes, as_int, as_text
from bridge.store.keys import Keys
from bridge.store.scripts import Scripts
from bridge.sync.snapshot import RecordRow, SnapshotStore

log = structlog.get_logger(__name__)

CHUNK: Final = 50
"""Records read and queued at once for one feed: their deliveries and the feed's progress are one MULTI,
which Redis runs as one block, built in one go by the process running the loop, which also hands live
events off (bench/RESULTS.md section 10: live events' p99 beside a resync is 18 to 23 ms with 50, 27 ms
with 200, at the same rate)."""
MAX_PENDING: Final = 2000
"""The most undelivered deliveries a subscription may hold before a resync queues its next chunk."""
WINDOW: Final = 8
"""Feeds of one resync under way at once (for an ordered subscription: lanes sending side by side)."""
STEP_BUDGET: Final = 5000
"""About the most deliveries one `step` queues, over every resync."""
LEASE_SECONDS: Final = 30.0
IDLE_SECONDS: Final = 0.25
SCAN_SECONDS: Final = 60.0
"""How often `step` looks at every subscription's resyncs rather than those `Keys.resyncing` names: a
resync stored by a process that died before indexing it (or before the index existed) still runs."""
KEEP_FINISHED: Final = 20
"""Finished resyncs a subscription keeps listed (`Keys.resyncs`)."""
MARKER: Final = "resync"
"""The envelope `resource` of `resync.started` and `resync.completed`."""
NEVER_CUT: Final = math.inf

Phase = Literal["start", "starting", "running", "draining", "done"]
_json = msgspec.json.Encoder()
_trace = msgspec.msgpack.Decoder(DeliveryTrace)
_head = msgspec.msgpack.Decoder(DeliveryHead)


class Feed(msgspec.Struct, array_like=True, frozen=True):
    school_id: int
    resource: str
    """The event prefix (`debtor`): the snapshot's name."""


class Resync(msgspec.Struct, kw_only=True):
    id: str
    subscription_id: str
    feeds: list[Feed]
    created_at: float
    first_number: int = 0
    """Feed n's number is `first_number + n` (unique in the subscription: `Keys.resyncs_unconfirmed`)."""
    state: Literal["running", "done", "ended"] = "running"
    done_at: float | None = None


class Progress(msgspec.Struct, kw_only=True):
    """Where one feed of a resync stands; saved with each chunk."""

    phase: Phase = "start"
    offset: int = 0
    """How many ids of the feed's frozen id list (`Keys.resync_ids`) have been read."""
    as_of_sequence: int = 0
    count: int = 0
    """Records the snapshot held when the feed's resync began (`resync.started`)."""
    sent: int = 0
    """Snapshot events queued (`resync.completed`'s count)."""


_resync = msgspec.json.Decoder(Resync)
_progress = msgspec.json.Decoder(Progress)


class Resyncs:
    def __init__(
        self,
        redis: Redis,
        keys: Keys,
        snapshots: SnapshotStore,
        queue: DeliveryQueue,
        subscriptions: SubscriptionStore,
        settings: Settings,
        *,
        on_queued: Callable[[], None],
        notices: Notices | None = None,
        chunk: int = CHUNK,
        max_pending: int = MAX_PENDING,
        scan_seconds: float = SCAN_SECONDS,
    ) -> None:
        self.redis = redis
        self.keys = keys
        self.snapshots = snapshots
        self.queue = queue
        self.subscriptions = subscriptions
        self.settings = settings
        self.chunk = chunk
        self.max_pending = max_pending
        self.scan_seconds = scan_seconds
        self._on_queued = on_queued
        self._notices = notices
        self._scripts: Scripts = subscriptions.scripts
        self._owner = secrets.token_hex(8)
        self._loop = Background("resyncs", self._run)
        self._scanned = -math.inf  # the first step looks at every subscription

    # -- starting one ---------------------------------------------------------------------------------

    async def start(
        self,
        subscription: Subscription,
        school_ids: Sequence[int] | None = None,
        resources: Sequence[str] | None = None,
    ) -> tuple[str, int]:
        """Store a resync of these feeds (default: the subscription's whole scope) and return (its id, how
        many feeds) at once. A feed already under way in a running resync of the subscription is not
        streamed twice; when every one asked is, the answer is that resync's."""
        feeds = await self._feeds(subscription, school_ids, resources)
        for _ in range(5):
            try:
                return await self._store(subscription.id, feeds)
            except WatchError:
                continue
        return await self._store(subscription.id, feeds, watch=False)

    async def _feeds(
        self, subscription: Subscription, school_ids: Sequence[int] | None, resources: Sequence[str] | None
    ) -> list[Feed]:
        """The feeds asked, in school then catalogue order; InvalidRequest naming what cannot be."""
        wanted = [
            BY_NAME[name].prefix
            for name in self.settings.resources
            if snapshot_type_matches(subscription.event_types, BY_NAME[name].prefix)
        ]
        if not wanted:
            raise InvalidRequest(
                "event_types",
                "the subscription's event_types match no snapshot event type (debtor.snapshot, ...): "
                "it would receive nothing; add one (or its family, e.g. debtor.*) first",
            )
        if resources is not None:
            chosen = {self._resource(name, wanted) for name in resources}
            if not chosen:
                raise InvalidRequest("resources", "give at least one resource, or leave it out")
            wanted = [prefix for prefix in wanted if prefix in chosen]
        scope = subscription.school_ids
        if school_ids is None:
            schools = sorted(scope) if scope is not None else await self.snapshots.known_schools()
        else:
            if not school_ids:
                raise InvalidRequest("school_ids", "give at least one school, or leave it out")
            known = None if scope is not None else set(await self.snapshots.known_schools())
            for school in school_ids:
                if scope is not None and school not in scope:
                    raise InvalidRequest(
                        "school_ids",
                        f"school {school} is outside the subscription's school_ids",
                        school_id=school,
                    )
                if known is not None and school not in known:
                    raise InvalidRequest(
                        "school_ids",
                        f"school {school} is not known to this bridge (see GET /v1/schools)",
                        school_id=school,
                    )
            schools = list(dict.fromkeys(school_ids))
        return [Feed(school_id=school, resource=prefix) for school in schools for prefix in wanted]

    def _resource(self, name: str, wanted: list[str]) -> str:
        entry = BY_NAME.get(name) or BY_PREFIX.get(name)
        if entry is None:
            raise InvalidRequest(
                "resources", f"names something that is not a resource; one of {', '.join(BY_NAME)}"
            )
        if entry.name not in self.settings.resources:
            watched = ", ".join(self.settings.resources)
            raise InvalidRequest(
                "resources", f"{entry.name!r} is not watched by this bridge (BRIDGE_RESOURCES: {watched})"
            )
        if entry.prefix not in wanted:
            raise InvalidRequest(
                "resources",
                f"the subscription's event_types do not match {entry.prefix}.snapshot: a resync of "
                f"{entry.name!r} would send it nothing",
            )
        return entry.prefix

    async def _store(self, sid: str, feeds: list[Feed], *, watch: bool = True) -> tuple[str, int]:
        """Write the resync unless every feed is under way already (WatchError: another start raced)."""
        active, hashed = self.keys.resyncs_active(sid), self.keys.resyncs(sid)
        watch = watch and not isinstance(self.redis, RedisCluster)
        async with self.redis.pipeline(transaction=True) as pipe:
            if watch:
                await pipe.watch(active)
            reader: Any = pipe if watch else self.redis
            running: dict[Feed, str] = {}
            for rid in [as_text(r) for r in await reader.zrange(active, 0, -1)]:
                resync, progress = await self._load(rid, sid, reader)
                for feed, state in zip(resync.feeds if resync else (), progress, strict=True):
                    if state.phase != "done":
                        running.setdefault(feed, rid)
            fresh = [feed for feed in feeds if feed not in running]
            if feeds and not fresh:
                first = running[feeds[0]]
                found, _ = await self._load(first, sid, reader)
                return first, len(found.feeds) if found else len(feeds)
            number = int(await self.redis.incrby(self.keys.resyncs_counter(sid), len(fresh) + 1))
            now = time.time()
            resync = Resync(
                id=f"rsy_{ulid(now)}",
                subscription_id=sid,
                feeds=fresh,
                created_at=now,
                first_number=number - len(fresh),
            )
            pipe.multi()  # type: ignore[no-untyped-call]
            pipe.hset(hashed, resync.id, _json.encode(resync))
            pipe.zadd(active, {resync.id: now})
            await pipe.execute()
        # After the resync is stored: a loop that finds the subscription idle and drops it from the index
        # meanwhile looks again once it has (`_forget`), or this adds it back.
        await self.redis.sadd(self.keys.resyncing(), sid)
        log.info("resync started", subscription=sid, resync_id=resync.id, feeds=len(fresh))
        return resync.id, len(fresh)

    async def _load(self, rid: str, sid: str, reader: Any = None) -> tuple[Resync | None, list[Progress]]:
        """A resync and every feed's progress (a feed not begun: `Progress()`)."""
        reader = reader if reader is not None else self.redis
        raw = await reader.hget(self.keys.resyncs(sid), rid)
        if raw is None:
            return None, []
        resync = _resync.decode(as_bytes(raw))
        if not resync.feeds:
            return resync, []
        stored: list[Any] = await reader.hmget(
            self.keys.resyncs(sid), [_feed_field(rid, i) for i in range(len(resync.feeds))]
        )
        return resync, [Progress() if r is None else _progress.decode(as_bytes(r)) for r in stored]

    async def of_subscription(self, subscription_id: str) -> list[tuple[Resync, list[Progress]]]:
        """The subscription's resyncs, newest first (those under way and the last few finished)."""
        raw = await self.redis.hkeys(self.keys.resyncs(subscription_id))
        ids = sorted((as_text(k) for k in raw if b":" not in as_bytes(k)), reverse=True)
        found = []
        for rid in ids:
            resync, progress = await self._load(rid, subscription_id)
            if resync is not None:
                found.append((resync, progress))
        return found

    # -- the background loop --------------------------------------------------------------------------

    @property
    def running(self) -> bool:
        return self._loop.running

    def start_loop(self) -> None:
        self._loop.start()

    async def stop_loop(self) -> None:
        await self._loop.stop()

    async def _run(self) -> None:
        await poll(
            self.step,
            self._idle,
            failed="resync step failed; retrying",
            crashed="resync step crashed; retrying",
            running=self._loop.go_on,
        )

    async def _idle(self, queued: int | None) -> None:
        await asyncio.sleep(0 if queued else IDLE_SECONDS)

    # -- the work -------------------------------------------------------------------------------------

    async def step(self) -> int:
        """A bounded amount of the pending work of every resync this process can lease; how many
        deliveries it queued.

        It looks at the subscriptions `Keys.resyncing` names (an idle step is one read, however many
        subscriptions there are), and every `scan_seconds` at all of them."""
        subscriptions = {s.id: s for s in (await self.subscriptions.current()).subscriptions}
        scan = time.monotonic() - self._scanned >= self.scan_seconds
        if scan:
            self._scanned = time.monotonic()
            sids = list(subscriptions)
        else:
            sids = sorted(as_text(m) for m in await self.redis.smembers(self.keys.resyncing()))
        if not sids:
            return 0
        async with self.redis.pipeline(transaction=False) as pipe:
            for sid in sids:
                pipe.zrange(self.keys.resyncs_active(sid), 0, -1)
            replies: list[Any] = await pipe.execute()
        queued, idle, found = 0, [], []
        for sid, ids in zip(sids, replies, strict=True):
            if not ids:
                idle.append(sid)
                continue
            found.append(sid)
            subscription = subscriptions.get(sid)
            if subscription is None:  # made a moment ago (this cache has not seen it yet), or deleted
                continue
            for rid in (as_text(r) for r in ids):
                if queued < STEP_BUDGET:
                    queued += await self._leased(subscription, rid)
        if scan and found:
            await self.redis.sadd(self.keys.resyncing(), *found)
        elif idle and not scan:
            await self._forget(idle)
        if queued:
            self._on_queued()
            if self._notices is not None:  # told to every replica's worker where no worker is beside it
                await self._notices.publish([], pushed=True)
        return queued

    async def _forget(self, sids: list[str]) -> None:
        """Drop subscriptions with no resync under way from the index, then look again: one whose resync
        was stored meanwhile goes back in (its `start` adds it after storing: one of the two sees the
        other)."""
        index = self.keys.resyncing()
        await self.redis.srem(index, *sids)
        async with self.redis.pipeline(transaction=False) as pipe:
            for sid in sids:
                pipe.zcard(self.keys.resyncs_active(sid))
            counts: list[Any] = await pipe.execute()
        back = [sid for sid, count in zip(sids, counts, strict=True) if count]
        if back:
            await self.redis.sadd(index, *back)

    async def _leased(self, subscription: Subscription, rid: str) -> int:
        sid = subscription.id
        pair = [self.keys.resync_lease(sid, rid), self.keys.resync_lease_owner(sid, rid)]
        ms = str(int(LEASE_SECONDS * 1000))
        token = await self._scripts.lease_acquire(
            keys=[*pair, self.keys.resyncs_counter(sid)], args=[self._owner, ms]
        )
        if token is None:
            return 0
        try:
            return await self._advance(subscription, rid)
        finally:
            with contextlib.suppress(RedisError, OSError):
                await self._scripts.lease_release(keys=pair, args=[str(as_int(token))])

    async def _advance(self, subscription: Subscription, rid: str) -> int:
        """Each feed of the window (the first `WINDOW` not done) by at most one chunk."""
        sid = subscription.id
        hashed = self.keys.resyncs(sid)
        raw, lo_raw = await self.redis.hmget(hashed, [rid, _lo_field(rid)])
        if raw is None:
            await self.redis.zrem(self.keys.resyncs_active(sid), rid)
            return 0
        resync = _resync.decode(as_bytes(raw))
        lo = as_int(lo_raw)
        window = list(range(lo, min(lo + WINDOW, len(resync.feeds))))
        stored: list[Any] = (
            await self.redis.hmget(hashed, [_feed_field(rid, i) for i in window]) if window else []
        )
        progress = {
            i: Progress() if r is None else _progress.decode(as_bytes(r))
            for i, r in zip(window, stored, strict=True)
        }
        pending = max(0, (await self.subscriptions.counts(sid))[0])  # undelivered, dead letters aside
        queued = 0
        for index in window:
            feed, state = resync.feeds[index], progress[index]
            if state.phase == "done":
                continue
            if not subscription.matches(snapshot_type(feed.resource), feed.school_id):
                state = progress[index] = msgspec.structs.replace(state, phase="done")
                await self.redis.hset(hashed, _feed_field(rid, index), _json.encode(state))
                continue  # the subscription changed since: it no longer takes this feed
            result = await self._feed(subscription, resync, index, state, self.max_pending - pending)
            if result is None:  # the subscription is gone
                await self._end(sid, resync, "ended")
                return queued
            queued, pending = queued + result[0], pending + result[0]
            progress[index] = result[1]
        while lo < len(resync.feeds) and lo in progress and progress[lo].phase == "done":
            lo += 1
        await self.redis.hset(hashed, _lo_field(rid), str(lo))
        if lo >= len(resync.feeds):
            await self._end(sid, resync, "done")
        return queued

    async def _feed(
        self, subscription: Subscription, resync: Resync, index: int, state: Progress, room: int
    ) -> tuple[int, Progress] | None:
        """Move one feed on by at most one chunk: (deliveries queued, its progress now); None when the
        subscription is gone."""
        feed, number = resync.feeds[index], resync.first_number + index
        ordered = subscription.ordered
        if state.phase in ("starting", "draining"):
            if await self._unconfirmed(subscription.id, number):
                return 0, state
            if state.phase == "draining":
                completed = self._marker(resync, feed, "resync.completed", state)
                done = msgspec.structs.replace(state, phase="done")
                return await self._queue(subscription, resync, index, done, [], after=[completed])
            state = msgspec.structs.replace(state, phase="running")
        limit = min(self.chunk, room - 2)
        if limit <= 0 or limit < min(self.chunk, self.max_pending - 2):
            # Wait for room for a whole chunk: a page read costs the feed's id list (read_records), so
            # reading a few records at a time as deliveries trickle out would cost that again and again.
            return 0, state
        before: list[OutgoingEvent] = []
        listed = self.keys.resync_ids(feed.school_id, feed.resource, resync.id)
        if state.phase == "start":
            seq, count = await self.snapshots.freeze_ids(feed.school_id, feed.resource, listed, self._ids_ttl)
            state = msgspec.structs.replace(state, as_of_sequence=seq, count=count)
            before = [self._marker(resync, feed, "resync.started", state)]
            if not ordered:  # the snapshots follow once resync.started was delivered (or dead)
                starting = msgspec.structs.replace(state, phase="starting")
                return await self._queue(subscription, resync, index, starting, [], before=before)
        ids = [] if state.offset >= state.count else await self._ids(listed, state.offset, limit)
        if ids is None:  # the list expired under a resync paused that long: from its start again
            _, count = await self.snapshots.freeze_ids(feed.school_id, feed.resource, listed, self._ids_ttl)
            state = msgspec.structs.replace(state, offset=0, count=count)
            ids = await self._ids(listed, 0, limit) or []
        rows = (await self.snapshots.read_records(feed.school_id, feed.resource, ids=ids)).rows if ids else []
        snapshots = self._snapshots(subscription, feed, rows)
        moved = msgspec.structs.replace(
            state, phase="running", offset=state.offset + len(ids), sent=state.sent + len(snapshots)
        )
        finish: list[OutgoingEvent] = []
        if moved.offset < moved.count:
            pass
        elif ordered:  # the lane keeps the order: resync.completed goes right after the last chunk
            moved = msgspec.structs.replace(moved, phase="done")
            finish = [self._marker(resync, feed, "resync.completed", moved)]
        else:
            moved = msgspec.structs.replace(moved, phase="draining")
        result = await self._queue(subscription, resync, index, moved, snapshots, before=before, after=finish)
        if result is not None and moved.phase != "running":
            await self.redis.delete(listed)
        if result is not None and snapshots:
            await self._recheck_erased(subscription.id, feed, rows, snapshots)
        return result

    async def _ids(self, listed: str, offset: int, limit: int) -> list[str] | None:
        """The next `limit` ids of the feed's frozen list, asked for only while `offset` is short of the
        list's length; None when the list is gone (it expired): then nothing is there."""
        raw: list[Any] = await self.redis.lrange(listed, offset, offset + limit - 1)
        return [as_text(i) for i in raw] or None

    @property
    def _ids_ttl(self) -> float:
        """A frozen id list outlives the resync's deliveries: as long as events are kept, a day at least."""
        return max(86400.0, self.settings.event_retention_days * 86400)

    def _snapshots(
        self, subscription: Subscription, feed: Feed, rows: list[RecordRow]
    ) -> list[OutgoingEvent]:
        """One `<prefix>.snapshot` per row, cut by the subscription's options as a change event's body is
        (an erased record: `{"erased": true}` as it is)."""
        shape = shape_of(subscription)
        event_type = snapshot_type(feed.resource)
        events = []
        for row in rows:
            now = time.time()
            event_id = new_event_id(now)
            envelope = Envelope(
                id=event_id,
                type=event_type,
                timestamp=format_timestamp(now),
                school_id=feed.school_id,
                sequence=row.sequence,
                resource=feed.resource,
                resource_id=row.resource_id,
                data=dict(ERASED) if row.data is None else row.data,
            )
            body = None if shape is None or row.data is None else project(envelope, shape, may_skip=False)
            body = body or _json.encode(envelope)
            events.append(OutgoingEvent.of(event_id, feed.school_id, event_type, row.sequence, body))
        return events

    def _marker(self, resync: Resync, feed: Feed, event_type: str, state: Progress) -> OutgoingEvent:
        now = time.time()
        event_id = new_event_id(now)
        data: dict[str, Any] = {"resync_id": resync.id, "resource": BY_PREFIX[feed.resource].name}
        if event_type == "resync.started":
            data |= {"as_of_sequence": state.as_of_sequence, "count": state.count}
        else:
            data["count"] = state.sent
        envelope = Envelope(
            id=event_id,
            type=event_type,
            timestamp=format_timestamp(now),
            school_id=feed.school_id,
            sequence=state.as_of_sequence,
            resource=MARKER,
            resource_id=resync.id,
            data=data,
        )
        body = _json.encode(envelope)
        return OutgoingEvent.of(event_id, feed.school_id, event_type, state.as_of_sequence, body)

    async def _queue(
        self,
        subscription: Subscription,
        resync: Resync,
        index: int,
        progress: Progress,
        snapshots: list[OutgoingEvent],
        *,
        before: Sequence[OutgoingEvent] = (),
        after: Sequence[OutgoingEvent] = (),
    ) -> tuple[int, Progress] | None:
        """Queue `before`, the snapshots and `after` in that order, with the feed's progress, in one MULTI
        (on Redis Cluster: the queuing first, then the rest). None when the subscription is gone."""
        sid, rid = subscription.id, resync.id
        now = time.time()
        fixed = msgspec.structs.replace(subscription, updated_at=NEVER_CUT)  # markers are never cut again
        batches = [(fixed, list(before)), (subscription, snapshots), (fixed, list(after))]
        batches = [(s, events) for s, events in batches if events]
        event_ids = [e.event_id for _, events in batches for e in events]
        # An unordered subscription confirms these through their traces (`_unconfirmed`) before it goes on;
        # every other trace is dropped at once.
        confirm = [] if subscription.ordered else [e.event_id for e in (*before, *snapshots)]
        confirmed = set(confirm)
        forget = [event_id for event_id in event_ids if event_id not in confirmed]
        cluster = isinstance(self.redis, RedisCluster)
        replies: list[Any] = []
        if cluster:
            for s, events in batches:
                replies.append(await self.queue.enqueue(self.redis, s, events, now=now, once=False))
        async with self.redis.pipeline(transaction=True) as pipe:
            if not cluster:
                for s, events in batches:
                    await self.queue.enqueue(pipe, s, events, now=now, once=False)
            if event_ids:
                pipe.zrem(self.keys.fanned(sid), *event_ids)
            if forget:
                pipe.hdel(self.keys.traces(sid), *forget)
            if confirm:
                number = resync.first_number + index
                pipe.zadd(self.keys.resyncs_unconfirmed(sid), dict.fromkeys(confirm, number))
            pipe.hset(self.keys.resyncs(sid), _feed_field(rid, index), _json.encode(progress))
            written = await pipe.execute()
        if not cluster:
            replies = written[: len(batches)]
        if subscription.pulled and self._notices is not None:
            await self._notices.publish([sid])
        if batches and not any(int(n) for reply in replies for n in reply):
            return None
        return len(event_ids), progress

    async def _unconfirmed(self, sid: str, number: int) -> int:
        """How many of the feed's queued events are neither delivered nor dead-lettered yet; the confirmed
        ones are forgotten (set member, trace)."""
        key = self.keys.resyncs_unconfirmed(sid)
        raw: list[Any] = await self.redis.zrangebyscore(key, number, number, start=0, num=1000)
        ids = [as_text(m) for m in raw]
        if not ids:
            return 0
        traces: list[Any] = await self.redis.hmget(self.keys.traces(sid), ids)
        waiting: dict[str, str] = {}
        for event_id, trace_raw in zip(ids, traces, strict=True):
            trace = None if trace_raw is None else _trace.decode(as_bytes(trace_raw))
            if trace is not None and trace.delivered_at is None and trace.outcome is None:
                waiting[event_id] = trace.delivery_id
        dead: set[str] = set()
        if waiting:
            stored: list[Any] = await self.redis.hmget(self.keys.deliveries(sid), list(waiting.values()))
            dead = {
                event_id
                for event_id, record in zip(waiting, stored, strict=True)
                if record is None or _head.decode(as_bytes(record)).state == "dead"
            }
        confirmed = [event_id for event_id in ids if event_id not in waiting or event_id in dead]
        if confirmed:
            async with self.redis.pipeline(transaction=True) as pipe:
                pipe.zrem(key, *confirmed)
                pipe.hdel(self.keys.traces(sid), *confirmed)
                await pipe.execute()
        return int(await self.redis.zcount(key, number, number))

    async def _recheck_erased(
        self, sid: str, feed: Feed, rows: list[RecordRow], snapshots: list[OutgoingEvent]
    ) -> None:
        """Drop the snapshot deliveries of records an erasure reached after they were read (see above)."""
        read = {row.resource_id: e for row, e in zip(rows, snapshots, strict=True) if row.data is not None}
        if not read:
            return
        now_erased = await self.snapshots.erased_among(feed.school_id, feed.resource, list(read))
        erased = {read[rid].event_id for rid in now_erased}
        if not erased:
            return
        dropped = 0
        for head in await self.queue.heads(sid):  # rare: an erasure raced this chunk
            if head.event_id in erased:
                dropped += await self.queue.drop(
                    sid, head, now=time.time(), outcome="erased", leased_too=True
                )
        log.info("snapshot deliveries of records erased meanwhile dropped", subscription=sid, count=dropped)

    async def _end(self, sid: str, resync: Resync, state: Literal["done", "ended"]) -> None:
        """Mark the resync finished, and forget the oldest finished ones (`KEEP_FINISHED` stay listed)."""
        ended = msgspec.structs.replace(resync, state=state, done_at=time.time())
        hashed = self.keys.resyncs(sid)
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hset(hashed, resync.id, _json.encode(ended))
            pipe.zrem(self.keys.resyncs_active(sid), resync.id)
            if resync.feeds:
                first, last = resync.first_number, resync.first_number + len(resync.feeds) - 1
                pipe.zremrangebyscore(self.keys.resyncs_unconfirmed(sid), first, last)
            await pipe.execute()
        async with self.redis.pipeline(transaction=False) as pipe:  # each in its school's slot
            for feed in resync.feeds:
                pipe.delete(self.keys.resync_ids(feed.school_id, feed.resource, resync.id))
            await pipe.execute()
        log.info("resync finished", subscription=sid, resync_id=resync.id, state=state)
        listed = sorted(as_text(k) for k in await self.redis.hkeys(hashed) if b":" not in as_bytes(k))
        active = {as_text(r) for r in await self.redis.zrange(self.keys.resyncs_active(sid), 0, -1)}
        finished = [rid for rid in listed if rid not in active]
        for rid in finished[: max(0, len(finished) - KEEP_FINISHED)]:
            old, _ = await self._load(rid, sid)
            fields = [
                rid,
                _lo_field(rid),
                *(_feed_field(rid, i) for i in range(len(old.feeds) if old else 0)),
            ]
            await self.redis.hdel(hashed, *fields)


def _feed_field(resync_id: str, index: int) -> str:
    return f"{resync_id}:{index}"


def _lo_field(resync_id: str) -> str:
    return f"{resync_id}:lo"


def snapshot_type_matches(patterns: list[str] | None, prefix: str) -> bool:
    """Whether a subscription's `event_types` take `<prefix>.snapshot`."""
    return type_matches(patterns, snapshot_type(prefix))
