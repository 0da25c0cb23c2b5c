"""Erasing one record's personal data on request (`POST /v1/erasure`, docs/personal-data.md#erase-a-record).

A record's data is kept in four places, in two kinds of Redis slot: the school's event bodies and its
snapshot (`{s:N}`), and each subscription's queue, dead letters and attempt log (`{sub:<id>}`). (The
delivery hand-off stream, `{events}`, names events without their bodies; one written before that may
still carry them.) No one script can span them on Redis Cluster, so an erasure is a few steps, each
atomic in its slot, in this order:

0. the journal (`Keys.erasures`, in `{subs}`) records the request and the record's event ids, and bumps
   the subscriptions version: from then on every dispatcher reloads it (a sending worker's copy is at most
   50 ms old: worker.py `_fresh`) and neither queues nor sends any of those events, nor a resync's snapshot
   of the record (it drops a claimed one and records it as erased), whatever happens next;
1. the school's slot (sync/snapshot.py `erase`): every event of the record keeps its id, type,
   sequence, timestamps and place in the indexes, but `data` (and `changes`) become
   `{"erased": true}`, overwriting the one stored body; the snapshot keeps the record's digest only.
   Nothing upstream can bring the data back after this step: replays and the hand-off read the erased
   envelopes, and a poll sees the record unchanged (or, if d6 changed it, an erased record, which
   sync/diff.py leaves alone);
2. the hand-off stream: entries of those events not yet fanned out will fan out nothing (the hand-off
   reads the erased envelope and skips it); one written before the `bodies` hash, with a body, is
   deleted;
3. each subscription that had any of those events queued: its deliveries of them (pending or dead) are
   dropped with their bodies and recorded as erased (event delivery state `erased`, a line in its attempt
   log), and the subscriber's answers to them in the attempt log are blanked;
   Snapshot deliveries of the record (`<prefix>.snapshot`, sent by a resync: delivery/resync.py) are in
   no event log, so each subscription's deliveries are scanned for them (HSCAN, in batches: erasures are
   rare) and those found are dropped the same way;
4. the journal entry is marked done; it stays a few minutes (a fan-out that read an event just before
   step 0 is still caught by the dispatchers), then `resume` removes it.

A fan-out that read an event before step 0 may queue it at any time after (a process stalled for longer
than the journal's guard; a disabled subscription would keep the body until it is enabled). The hand-off
closes that race itself: after it queues a batch it reads the events' erased state again
(`EventLog.erased_among`) and drops what an erasure reached meanwhile (`drop_deliveries`). Either the
erasure's step 3 finds the delivery queued, or the hand-off's read comes after step 1 and finds the event
erased: each side writes before it reads the other's slot. A crash in between leaves the hand-off entry
unconsumed, so the next holder fans it out again (a no-op) and checks again.

A process that dies part-way leaves the entry unfinished: `resume` (every maintenance pass, any replica)
runs the erasure again after a minute. Every step is idempotent, so running one twice, or a second
request for the same record, erases nothing more and answers zero counts. An attempt already on the wire
when the request comes cannot be called back.
"""

from __future__ import annotations

import time
from typing import Any, Final

import msgspec
import redis.asyncio as aioredis
import structlog

from bridge import catalogue, metrics
from bridge.delivery.models import DeliveryError, ErasureEntry, decode_attempt, encode_attempt
from bridge.delivery.queue import DeliveryHead, DeliveryQueue
from bridge.delivery.store import SubscriptionStore
from bridge.errors import InvalidRequest, StoreError
from bridge.events.log import EventLog, erased_body
from bridge.events.outbox import Outbox
from bridge.store.codec import as_bytes, as_text
from bridge.store.keys import Keys
from bridge.sync.snapshot import SnapshotStore

log = structlog.get_logger(__name__)

RESUME_AFTER_SECONDS: Final = 60.0
"""An unfinished journal entry this old is taken to be a dead process's: `resume` finishes it."""
KEEP_DONE_SECONDS: Final = 600.0
"""How long a finished entry keeps dispatchers from sending its events (a fan-out that raced it)."""
ATTEMPTS: Final = 5
_STREAM_PAGE: Final = 1000
_SCAN_BATCH: Final = 500


class _Stored(DeliveryHead, kw_only=True):
    """The parts of a stored `Delivery` that say whose record its body tells: its head and its body."""

    body: bytes


class _Subject(msgspec.Struct):
    resource_id: str


_stored = msgspec.msgpack.Decoder(_Stored)
_subject = msgspec.json.Decoder(_Subject)


class UnknownRecord(DeliveryError):
    """Neither the snapshot nor the event log knows the record."""

    def __init__(self, school_id: int, resource: str, record_id: str) -> None:
        self.school_id, self.resource, self.record_id = school_id, resource, record_id
        super().__init__(
            f"school {school_id} has no {resource} {record_id!r}: neither its snapshot nor its event log "
            "(within the retention) knows it"
        )


class ErasureResult(msgspec.Struct, kw_only=True):
    """What one erasure removed (all zero and false when the record was erased before)."""

    school_id: int
    resource: str
    record_id: str
    events: int
    """Events of the record in the log whose `data` and `changes` became `{"erased": true}`."""
    deliveries: int
    """Pending deliveries of those events dropped (never sent), in every subscription."""
    dead_letters: int
    """Dead letters of those events dropped."""
    handoff: int
    """Hand-off entries of those events still waiting: they reach no subscription now."""
    snapshot: bool
    """Whether the snapshot's copy of the record was removed now (its digest stays)."""


class Eraser:
    def __init__(
        self,
        redis: aioredis.Redis,
        keys: Keys,
        *,
        snapshots: SnapshotStore,
        events: EventLog,
        outbox: Outbox,
        subscriptions: SubscriptionStore,
    ) -> None:
        self.redis = redis
        self.keys = keys
        self.snapshots = snapshots
        self.events = events
        self.outbox = outbox
        self.subscriptions = subscriptions
        self.queue = DeliveryQueue(redis, keys, subscriptions.scripts)

    async def erase(self, school_id: int, resource: str, record_id: str) -> ErasureResult:
        """Erase one record (see the module docstring); UnknownRecord when nothing knows it."""
        prefix = _prefix(resource)
        if school_id <= 0:
            raise InvalidRequest("school_id", "must be a positive school id")
        if not record_id or len(record_id) > 200:
            raise InvalidRequest("record_id", "must be the record's id (the events' resource_id)")
        key = f"{school_id}:{prefix}:{record_id}"
        started = time.time()
        outcome = None
        for _ in range(ATTEMPTS):
            await self.outbox.publish(school_id)  # the erasure needs every event of the school published
            seq, live, erased_before = await self.events.events_of_record(school_id, prefix, record_id)
            known = live or erased_before or await self.snapshots.has_record(school_id, prefix, record_id)
            if not known:
                raise UnknownRecord(school_id, prefix, record_id)
            event_ids = [event_id for _seq, event_id, _body in live] + erased_before
            entry = ErasureEntry(
                school_id=school_id,
                resource=prefix,
                record_id=record_id,
                event_ids=event_ids,
                started_at=started,
            )
            await self.subscriptions.journal(key, entry)
            outcome = await self.snapshots.erase(
                school_id,
                prefix,
                record_id,
                seq=seq,
                events=[(sequence, event_id, erased_body(body)) for sequence, event_id, body in live],
            )
            if outcome is not None:
                break
        if outcome is None:
            raise StoreError(
                f"school {school_id} kept changing while its {prefix} {record_id!r} was erased; try again"
            )
        handoff = await self._drop_from_handoff({event_id for _seq, event_id, _body in live})
        deliveries, dead = await drop_deliveries(
            self.redis, self.keys, self.queue, self.subscriptions, set(event_ids)
        )
        snapshot_pending, snapshot_dead = await drop_snapshot_deliveries(
            self.redis, self.keys, self.queue, self.subscriptions, school_id, prefix, record_id
        )
        deliveries, dead = deliveries + snapshot_pending, dead + snapshot_dead
        await self.subscriptions.journal(key, msgspec.structs.replace(entry, done_at=time.time()))
        result = ErasureResult(
            school_id=school_id,
            resource=prefix,
            record_id=record_id,
            events=outcome.events,
            deliveries=deliveries,
            dead_letters=dead,
            handoff=handoff,
            snapshot=outcome.body_removed,
        )
        metrics.ERASURES.labels(resource=prefix).inc()
        log.info(  # ids and counts: never a value of the record
            "record erased",
            **msgspec.structs.asdict(result),
            digest_kept=outcome.digest,
            seconds=round(time.time() - started, 3),
        )
        return result

    async def resume(self, *, now: float | None = None) -> int:
        """Finish the erasures a dead process left half done, and forget finished ones after a while;
        returns how many were finished here."""
        now = time.time() if now is None else now
        finished = 0
        for entry in await self.subscriptions.erasures():
            key = f"{entry.school_id}:{entry.resource}:{entry.record_id}"
            if entry.done_at is not None:
                if entry.done_at < now - KEEP_DONE_SECONDS:
                    await self.subscriptions.journal(key, None)
                continue
            if entry.started_at > now - RESUME_AFTER_SECONDS:
                continue  # probably still running
            try:
                await self.erase(entry.school_id, entry.resource, entry.record_id)
            except UnknownRecord:
                await self.subscriptions.journal(key, None)
                continue
            log.warning("unfinished erasure finished", school_id=entry.school_id, resource=entry.resource)
            finished += 1
        return finished

    async def _drop_from_handoff(self, event_ids: set[str]) -> int:
        """How many hand-off entries of these events wait after the cursor (they fan out nothing now);
        those written with a body, before the `bodies` hash, are deleted (one XDEL, in the `{events}`
        slot)."""
        if not event_ids:
            return 0
        stream = self.keys.delivery_stream()
        raw = await self.redis.get(self.keys.handoff_cursor())
        start = "(" + as_text(raw) if raw is not None else "-"
        waiting = 0
        doomed: list[Any] = []
        while True:
            entries = await self.redis.xrange(stream, min=start, max="+", count=_STREAM_PAGE) or []
            for entry_id, fields in entries:
                if fields and as_text(fields[b"id"]) in event_ids:
                    waiting += 1
                    if b"body" in fields:
                        doomed.append(entry_id)
            if len(entries) < _STREAM_PAGE:
                break
            start = "(" + as_text(entries[-1][0])
        if doomed:
            await self.redis.xdel(stream, *doomed)
        return waiting


async def drop_deliveries(
    redis: aioredis.Redis,
    keys: Keys,
    queue: DeliveryQueue,
    subscriptions: SubscriptionStore,
    event_ids: set[str],
) -> tuple[int, int]:
    """Drop every stored delivery of these events, in each subscription that had one queued, and blank the
    subscribers' answers to them; returns (pending dropped, dead letters dropped). Step 3 of an erasure,
    and what the hand-off does for an event an erasure reached while it was queuing it."""
    if not event_ids:
        return 0, 0
    ids = sorted(event_ids)
    every = await subscriptions.list_all()
    async with redis.pipeline(transaction=False) as pipe:
        for subscription in every:
            pipe.zmscore(keys.fanned(subscription.id), ids)
        replies = await pipe.execute()
    pending = dead = 0
    now = time.time()
    for subscription, scores in zip(every, replies, strict=True):
        if not any(score is not None for score in scores or ()):
            continue
        for head in await queue.heads(subscription.id):
            if head.event_id not in event_ids:
                continue
            if await queue.drop(subscription.id, head, now=now, outcome="erased", leased_too=True):
                if head.state == "dead":
                    dead += 1
                else:
                    pending += 1
        await _blank_answers(redis, keys, subscription.id, event_ids)
    return pending, dead


async def drop_snapshot_deliveries(
    redis: aioredis.Redis,
    keys: Keys,
    queue: DeliveryQueue,
    subscriptions: SubscriptionStore,
    school_id: int,
    prefix: str,
    record_id: str,
) -> tuple[int, int]:
    """Drop every stored `<prefix>.snapshot` delivery (pending or dead) of one record, in every subscription,
    recorded as erased; returns (pending dropped, dead letters dropped). Each deliveries hash is scanned in
    batches (HSCAN), so memory stays bounded however many deliveries wait."""
    event_type = catalogue.snapshot_type(prefix)
    pending = dead = 0
    now = time.time()
    for subscription in await subscriptions.list_all():
        cursor: Any = 0
        chunk: Any
        while True:
            cursor, chunk = await redis.hscan(keys.deliveries(subscription.id), cursor, count=_SCAN_BATCH)
            for raw in chunk.values():
                stored = _stored.decode(as_bytes(raw))
                if stored.event_type != event_type or stored.school_id != school_id:
                    continue
                if _subject.decode(stored.body).resource_id != record_id:
                    continue
                if await queue.drop(subscription.id, stored, now=now, outcome="erased", leased_too=True):
                    if stored.state == "dead":
                        dead += 1
                    else:
                        pending += 1
            if not cursor:
                break
    return pending, dead


async def _blank_answers(
    redis: aioredis.Redis, keys: Keys, subscription_id: str, event_ids: set[str]
) -> None:
    """The subscriber's answers to these events in the attempt log (it may have echoed what it got)."""
    key = keys.attempts(subscription_id)
    rows: Any = await redis.zrange(key, 0, -1, withscores=True)
    changed = []
    for member, score in rows:
        attempt = decode_attempt(as_bytes(member))
        if attempt.event_id in event_ids and attempt.response_body:
            blank = encode_attempt(msgspec.structs.replace(attempt, response_body=""))
            changed.append((member, blank, score))
    if not changed:
        return
    async with redis.pipeline(transaction=True) as pipe:
        pipe.zrem(key, *[member for member, _new, _score in changed])
        pipe.zadd(key, {new: score for _member, new, score in changed})
        await pipe.execute()


def _prefix(resource: str) -> str:
    """The event `resource` (`debtor`) of a catalogue resource, by either of its names."""
    if resource == catalogue.INTEGRATION:
        raise InvalidRequest(
            "resource", "integrations are the school's own record, not a person's: they cannot be erased"
        )
    try:
        return catalogue.resource(resource).prefix
    except ValueError:
        known = ", ".join(r.prefix for r in catalogue.RESOURCES)
        raise InvalidRequest("resource", f"unknown resource {resource!r}: one of {known}") from None
