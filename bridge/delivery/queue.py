"""The durable delivery queue of each subscription, in Redis, moved only by Lua scripts.

Per subscription (all keys share the `{sub:<id>}` hash tag, so each script touches one slot):
`deliveries` holds every undelivered or dead delivery with its body; `due` holds what may be
attempted and when; `traces` names, per event, its latest delivery and keeps how it ended once it
succeeded (the record itself is then removed), so an event's delivery state stays answerable until
retention forgets the event. An ordered subscription keeps one list per school (its lane) and only the lane's
head is ever in `due`, so one school's events go out one at a time, in order; an unordered one puts
every delivery in `due` directly.

Claiming moves a delivery's `due` score to the end of its lease and records the claimer's token. A
worker that dies simply never completes: the score passes, the delivery is due again, and another
worker (or the same one after restart) claims it. Completion only counts when the token still
matches, so a worker whose lease ran out can't disturb the one that took over.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any, Literal, NamedTuple

import msgspec
from redis.asyncio import Redis
from redis.asyncio.client import Pipeline

from bridge.catalogue import RESYNC_EVENT_TYPES, is_snapshot_type
from bridge.delivery.ids import new_delivery_id
from bridge.delivery.models import (
    Attempt,
    Delivery,
    DeliveryTrace,
    OutgoingEvent,
    Subscription,
    TraceOutcome,
    decode_attempt,
    encode_attempt,
)
from bridge.store.codec import as_bytes, packed
from bridge.store.keys import Keys
from bridge.store.scripts import Scripts

Outcome = Literal["ok", "retry", "dead", "hold"]
MAX_ATTEMPT_LOG = 10_000
TRIM_BATCH = 1000
RETRY_CHUNK = 500  # dead letters read (with their bodies) at once when they are retried
DROPPED: dict[TraceOutcome, str] = {
    "erased": "erased on request",
    "expired": "removed by retention",
    "skipped": "not sent: the subscription, changed since, no longer wants it",
}
"""The attempt log's `error` for a delivery dropped unsent (`drop`)."""

_msgpack = msgspec.msgpack.Encoder()
_json = msgspec.json.Encoder()
_delivery = msgspec.msgpack.Decoder(Delivery)
_trace = msgspec.msgpack.Decoder(DeliveryTrace)


class DeliveryHead(msgspec.Struct, kw_only=True):
    """The part of a stored `Delivery` that says whose it is (decoding it skips the body)."""

    id: str
    event_id: str
    event_type: str
    school_id: int
    event_timestamp: float
    attempts: int = 0
    state: str = "pending"
    created_at: float = 0.0


_head = msgspec.msgpack.Decoder(DeliveryHead)
_MAX_ATTEMPT_LOG = str(MAX_ATTEMPT_LOG)


class Claim(msgspec.Struct, frozen=True):
    """A claim made while completing (`complete_batch`): the lease and token a lane's next head gets, or, for
    an unordered subscription, up to `limit` of its due deliveries (due by `now`)."""

    lease_until: float
    token: str
    limit: int = 0
    now: float = 0.0


class Completed(NamedTuple):
    """What one `complete_batch` did."""

    results: list[tuple[bool, float | None]]
    """Per completion: its lease still held, the subscription failing since."""
    claimed: list[Delivery]
    """Lanes' next heads claimed as the `Claim` says."""
    made_due: bool
    """Whether a lane's next head was made due for any claim instead (no claim asked, or the subscription
    disabled or changed): a worker looks for it at once."""


class Completion(msgspec.Struct, kw_only=True, frozen=True):
    """One finished attempt to record: the delivery as it now stands, and where it goes next."""

    subscription: Subscription
    delivery: Delivery
    token: str
    outcome: Outcome
    now: float
    next_at: float
    attempt: Attempt


class DeliveryQueue:
    """Moves deliveries with the `delivery_*` scripts of store/scripts.py."""

    def __init__(self, redis: Redis, keys: Keys, scripts: Scripts) -> None:
        self.redis = redis
        self.keys = keys
        self._scripts = scripts

    async def enqueue(
        self,
        client: Pipeline | Redis,
        subscription: Subscription,
        events: Sequence[OutgoingEvent],
        *,
        now: float,
        once: bool = True,
        replay: bool = False,
    ) -> Any:
        """Queue `events` for `subscription` in one script call on `client` (a pipeline, or a client: then
        the answer is per event 1 if it was queued, 0 if `once` found it queued already or the subscription
        is gone)."""
        sid = subscription.id
        keys = [
            self.keys.fanned(sid),
            self.keys.deliveries(sid),
            self.keys.due(sid),
            self.keys.lanes(sid),
            self.keys.traces(sid),
            self.keys.subscription(sid),  # a subscription deleted meanwhile gets nothing queued
        ]
        if subscription.pulled:
            keys.append(self.keys.feed(sid))
        lanes: dict[int, str] = {}
        items: list[bytes] = []
        for event in events:
            school = event.school_id
            lane = self._lane(keys, lanes, sid, school) if _laned(subscription) else "0"
            delivery = Delivery(
                id=new_delivery_id(),
                subscription_id=sid,
                event_id=event.event_id,
                event_type=event.event_type,
                school_id=school,
                sequence=event.sequence,
                event_timestamp=event.timestamp,
                body=event.body,
                created_at=now,
                projected_at=subscription.updated_at,  # the body was cut by this version of the subscription
                replay=replay,
            )
            items.append(
                packed(
                    event.event_id,
                    repr(event.timestamp),
                    delivery.id,
                    _msgpack.encode(delivery),
                    str(school),
                    queued_trace(delivery.id),
                    lane,
                )
            )
        args: list[str | bytes] = [
            _flag(_laned(subscription)),
            repr(now),
            _flag(once),
            b"".join(items),
            _flag(subscription.pulled),
        ]
        return await self._scripts.delivery_enqueue(keys=keys, args=args, client=client)

    def _lane(self, keys: list[str], lanes: dict[int, str], subscription_id: str, school_id: int) -> str:
        """Where a script finds the school's lane: its key's index after the script's own keys, appended
        to `keys` the first time the batch names the school."""
        index = lanes.get(school_id)
        if index is None:
            index = lanes[school_id] = str(len(lanes) + 1)
            keys.append(self.keys.lane(subscription_id, school_id))
        return index

    async def skip(
        self,
        pipe: Pipeline | Redis,
        subscription: Subscription,
        event: OutgoingEvent,
        *,
        now: float,
        outcome: TraceOutcome = "skipped",
        once: bool = True,
    ) -> Any:
        """Record on `pipe` that `event` is not sent to `subscription` (its trace says why); like `enqueue`,
        with `once` a second call is a no-op."""
        sid = subscription.id
        trace = _msgpack.encode(DeliveryTrace(delivery_id="", outcome=outcome, at=now))
        return await self._scripts.delivery_skip(
            keys=[self.keys.fanned(sid), self.keys.traces(sid), self.keys.subscription(sid)],
            args=[event.event_id, repr(event.timestamp), trace, _flag(once)],
            client=pipe,
        )

    async def drop(
        self,
        subscription_id: str,
        delivery: DeliveryHead | Delivery,
        *,
        now: float,
        outcome: TraceOutcome,
        leased_too: bool,
    ) -> bool:
        """Drop one delivery (pending or dead) with its body, for an erasure or retention; the event's trace
        and the attempt log record `outcome`. False when it was gone already (or leased, unless
        `leased_too`)."""
        sid = subscription_id
        attempt = Attempt(
            at=now,
            delivery_id=delivery.id,
            event_id=delivery.event_id,
            event_type=delivery.event_type,
            school_id=delivery.school_id,
            attempt=delivery.attempts,
            outcome=outcome,
            error=DROPPED[outcome],
            duration_ms=0.0,
        )
        trace = DeliveryTrace(delivery_id=delivery.id, attempts=delivery.attempts, outcome=outcome, at=now)
        done = await self._scripts.delivery_drop(
            keys=[
                self.keys.deliveries(sid),
                self.keys.due(sid),
                self.keys.leases(sid),
                self.keys.dead(sid),
                self.keys.lane(sid, delivery.school_id),
                self.keys.traces(sid),
                self.keys.attempts(sid),
            ],
            args=[
                delivery.id,
                delivery.event_id,
                repr(now),
                queued_trace(delivery.id),
                _msgpack.encode(trace),
                encode_attempt(attempt),
                _flag(leased_too),
            ],
        )
        return bool(done)

    async def heads(self, subscription_id: str, *, batch: int = 500) -> list[DeliveryHead]:
        """Every stored delivery (pending and dead) of a subscription, bodies left aside: a full HSCAN,
        for erasures (rare), not for the delivery path."""
        found: list[DeliveryHead] = []
        cursor: Any = 0
        chunk: Any
        while True:
            cursor, chunk = await self.redis.hscan(self.keys.deliveries(subscription_id), cursor, count=batch)
            found.extend(_head.decode(as_bytes(raw)) for raw in chunk.values())
            if not cursor:
                return found

    async def claim(
        self, subscription_id: str, *, now: float, lease_until: float, token: str, limit: int
    ) -> list[Delivery]:
        records = await self._scripts.delivery_claim(
            keys=[
                self.keys.due(subscription_id),
                self.keys.leases(subscription_id),
                self.keys.deliveries(subscription_id),
            ],
            args=[repr(now), repr(lease_until), token, str(limit)],
        )
        return [_delivery.decode(r) for r in records]

    async def complete(
        self,
        subscription: Subscription,
        delivery: Delivery,
        *,
        token: str,
        outcome: Outcome,
        now: float,
        next_at: float,
        attempt: Attempt,
        log_cutoff: float,
    ) -> tuple[bool, float | None]:
        """Record one attempt and move the delivery on; returns (lease still held, failing since)."""
        done = Completion(
            subscription=subscription,
            delivery=delivery,
            token=token,
            outcome=outcome,
            now=now,
            next_at=next_at,
            attempt=attempt,
        )
        completed = await self.complete_batch(subscription.id, [done], log_cutoff=log_cutoff)
        return completed.results[0]

    async def complete_batch(
        self, subscription_id: str, batch: list[Completion], *, log_cutoff: float, claim: Claim | None = None
    ) -> Completed:
        """Record finished attempts of one subscription in one script call, in the order given; returns
        per attempt (lease still held, the subscription failing since), what `claim` claimed, and whether
        a lane's next head was made due instead.

        With a `claim`, each lane a delivery leaves has its next head claimed in the same call (an unordered
        subscription: up to `claim.limit` of its due deliveries, as `claim` does), as `claim` says, while the
        subscription is enabled and its `updated_at` is the batch's: the next delivery goes out without a
        round of claims first."""
        sid = subscription_id
        keys = [
            self.keys.due(sid),
            self.keys.leases(sid),
            self.keys.deliveries(sid),
            self.keys.attempts(sid),
            self.keys.dead(sid),
            self.keys.subscription(sid),
            self.keys.traces(sid),
        ]
        ordered = bool(batch) and batch[0].subscription.ordered  # fixed at a subscription's creation
        lanes: dict[int, str] = {}
        items: list[bytes] = []
        for done in batch:
            delivery = done.delivery
            lane = self._lane(keys, lanes, sid, delivery.school_id) if ordered else "0"
            delivered = DeliveryTrace(
                delivery_id=delivery.id,
                delivered_at=done.now,
                attempts=delivery.attempts,
                status=delivery.last_status,
            )
            items.append(
                packed(
                    delivery.id,
                    done.token,
                    done.outcome,
                    repr(done.now),
                    repr(done.next_at),
                    b"" if done.outcome == "ok" else _msgpack.encode(delivery),  # a success drops it
                    encode_attempt(done.attempt),
                    delivery.event_id,
                    queued_trace(delivery.id),
                    _msgpack.encode(delivered),
                    lane,
                )
            )
        args: list[str | bytes] = [repr(log_cutoff), _MAX_ATTEMPT_LOG, b"".join(items), _flag(ordered)]
        if claim is None:
            args += ["", "", "", "0", ""]
        else:
            updated_at = _json.encode(batch[0].subscription.updated_at)
            args += [repr(claim.lease_until), claim.token, updated_at, str(claim.limit), repr(claim.now)]
        results, claimed, made_due = await self._scripts.delivery_complete(keys=keys, args=args)
        return Completed([_held(r) for r in results], [_delivery.decode(r) for r in claimed], made_due == 1)

    async def release(self, subscription_id: str, delivery_id: str, *, token: str, now: float) -> None:
        await self._scripts.delivery_release(
            keys=[self.keys.due(subscription_id), self.keys.leases(subscription_id)],
            args=[delivery_id, token, repr(now)],
        )

    async def get(self, subscription_id: str, delivery_ids: list[str]) -> list[Delivery | None]:
        if not delivery_ids:
            return []
        raw: Any = await self.redis.hmget(self.keys.deliveries(subscription_id), delivery_ids)
        return [None if r is None else _delivery.decode(r) for r in raw]

    async def dead_letters(
        self, subscription_id: str, *, before: float | None, limit: int
    ) -> list[tuple[float, Delivery]]:
        """Newest first: (time of death, delivery)."""
        top: Any = f"({before!r}" if before is not None else "+inf"
        rows: Any = await self.redis.zrevrangebyscore(
            self.keys.dead(subscription_id), top, "-inf", start=0, num=limit, withscores=True
        )
        if not rows:
            return []
        ids = [r[0].decode() for r in rows]
        records = await self.get(subscription_id, ids)
        return [(float(score), d) for (_, score), d in zip(rows, records, strict=True) if d is not None]

    async def dead_ids(self, subscription_id: str, *, until: float, start: int, count: int) -> list[str]:
        """Up to `count` dead letters that died at `until` or before, oldest death first, from the `start`-th
        on (a page: retrying dead letters takes them out of the list)."""
        members: Any = await self.redis.zrangebyscore(
            self.keys.dead(subscription_id), "-inf", repr(until), start=start, num=count
        )
        return [m.decode() for m in members]

    async def dead_in_order(self, subscription_id: str, delivery_ids: list[str]) -> list[str]:
        """Those of `delivery_ids` that are dead letters here, oldest death first."""
        if not delivery_ids:
            return []
        scores: Any = await self.redis.zmscore(self.keys.dead(subscription_id), delivery_ids)
        found = [(float(s), d) for d, s in zip(delivery_ids, scores, strict=True) if s is not None]
        return [d for _, d in sorted(found)]

    async def latest(self, subscription_id: str, event_ids: list[str]) -> list[str]:
        """The latest delivery of each of `event_ids` that is still stored (queued or dead), in that order;
        events delivered, never queued or not sent are left out."""
        if not event_ids:
            return []
        raw: Any = await self.redis.hmget(self.keys.traces(subscription_id), event_ids)
        traces = (_trace.decode(r) for r in raw if r is not None)
        return [t.delivery_id for t in traces if t.delivered_at is None and t.outcome is None]

    async def retry_dead(
        self, subscription: Subscription, delivery_ids: list[str], *, now: float
    ) -> list[str]:
        """Queue dead letters again with a fresh retry budget, in the order given; returns the ids that were
        requeued. Records are read `RETRY_CHUNK` at a time. Each keeps its body and when that was cut
        (`projected_at`): the worker cuts it again if the subscription changed since."""
        requeued: list[str] = []
        for start in range(0, len(delivery_ids), RETRY_CHUNK):
            chunk = delivery_ids[start : start + RETRY_CHUNK]
            requeued += await self._retry_dead(subscription, chunk, now=now)
        return requeued

    async def _retry_dead(
        self, subscription: Subscription, delivery_ids: list[str], *, now: float
    ) -> list[str]:
        sid = subscription.id
        requeued: list[str] = []
        for delivery in await self.get(sid, delivery_ids):
            if delivery is None or delivery.state != "dead":
                continue
            fresh = msgspec.structs.replace(
                delivery,
                attempts=0,
                state="pending",
                dead_at=None,
                created_at=now,
                replay=True,
                projected_at=delivery.shaped_at,
            )
            done = await self._scripts.delivery_retry_dead(
                keys=[
                    self.keys.dead(sid),
                    self.keys.deliveries(sid),
                    self.keys.due(sid),
                    self.keys.lane(sid, delivery.school_id),
                    self.keys.lanes(sid),
                    self.keys.traces(sid),
                ],
                args=[
                    delivery.id,
                    _msgpack.encode(fresh),
                    repr(now),
                    _flag(subscription.ordered),
                    str(delivery.school_id),
                    delivery.event_id,
                    queued_trace(delivery.id),
                ],
            )
            if done:
                requeued.append(delivery.id)
        return requeued

    async def attempts(self, subscription_id: str, *, before: float | None, limit: int) -> list[Attempt]:
        """The attempt log, newest first, strictly older than `before`."""
        top: Any = f"({before!r}" if before is not None else "+inf"
        rows: Any = await self.redis.zrevrangebyscore(
            self.keys.attempts(subscription_id), top, "-inf", 0, limit
        )
        return [decode_attempt(as_bytes(r)) for r in rows]

    async def log_attempt(self, subscription_id: str, attempt: Attempt) -> None:
        """Add one line to the attempt log outside a delivery (a test send): one ZADD."""
        await self.redis.zadd(self.keys.attempts(subscription_id), {encode_attempt(attempt): attempt.at})

    async def event_traces(
        self, subscription_ids: Sequence[str], event_id: str
    ) -> list[DeliveryTrace | None]:
        """Per subscription, the trace of `event_id` (its latest delivery), None where it has none: one
        pipelined round trip of one HGET per subscription."""
        async with self.redis.pipeline(transaction=False) as pipe:
            for sid in subscription_ids:
                pipe.hget(self.keys.traces(sid), event_id)
            raw: list[Any] = await pipe.execute()
        return [None if r is None else _trace.decode(r) for r in raw]

    async def standing(
        self, deliveries: Sequence[tuple[str, str]]
    ) -> list[tuple[bytes | None, float | None, bool]]:
        """Per (subscription id, delivery id) still queued: its stored record, when it is due and whether it
        is leased now: one pipelined round trip of three cheap reads each."""
        if not deliveries:
            return []
        async with self.redis.pipeline(transaction=False) as pipe:
            for sid, delivery_id in deliveries:
                pipe.hget(self.keys.deliveries(sid), delivery_id)
                pipe.zscore(self.keys.due(sid), delivery_id)
                pipe.hexists(self.keys.leases(sid), delivery_id)
            rows: list[Any] = await pipe.execute()
        return [
            (record, due, bool(leased))
            for record, due, leased in zip(rows[::3], rows[1::3], rows[2::3], strict=True)
        ]

    async def trim(self, subscription_id: str, *, cutoff: float, batch: int = TRIM_BATCH) -> int:
        """Forget attempts, events and dead letters older than `cutoff`, in batches; returns how many
        events and dead letters went. A delivery of an event older than `cutoff` that is still waiting
        (a disabled subscription's, say) goes too, with its body: its trace says `expired`."""
        sid = subscription_id
        await self._expire_waiting(sid, cutoff=cutoff, batch=batch)
        await self._trim_feed(sid, cutoff=cutoff)
        keys = [
            self.keys.attempts(sid),
            self.keys.fanned(sid),
            self.keys.dead(sid),
            self.keys.deliveries(sid),
            self.keys.traces(sid),
        ]
        removed = 0
        while True:
            events, dead = (
                int(n) for n in await self._scripts.delivery_trim(keys=keys, args=[repr(cutoff), str(batch)])
            )
            removed += events + dead
            if events < batch and dead < batch:
                return removed

    async def expire_unlogged(self, subscription_id: str, *, cutoff: float, batch: int = TRIM_BATCH) -> int:
        """Drop the resync deliveries (`*.snapshot`, `resync.*`) queued before `cutoff` and still stored, with
        their bodies; returns how many. They are in no event log and keep no trace while queued (resync.py),
        so `trim` cannot find them by their events: a full scan of the subscription's deliveries finds them
        (the worker runs it hourly, as it sweeps). Retention holds for them as for every body."""
        if not await self.redis.hlen(self.keys.deliveries(subscription_id)):
            return 0
        now, expired = time.time(), 0
        for head in await self.heads(subscription_id, batch=batch):
            if not (head.created_at <= cutoff and _unlogged(head.event_type)):
                continue
            if await self.drop(subscription_id, head, now=now, outcome="expired", leased_too=False):
                expired += 1
        return expired

    async def _trim_feed(self, subscription_id: str, *, cutoff: float) -> None:
        """A pull subscription's feed loses its entries queued before `cutoff` (their deliveries went in
        `_expire_waiting`); its `floor` then says so, and a cursor behind it is expired (delivery/feed.py)."""
        first_kept = int(cutoff * 1000)
        if await self.redis.xtrim(
            self.keys.feed(subscription_id), minid=f"{first_kept}-0", approximate=False
        ):
            await self.redis.hset(
                self.keys.feed_at(subscription_id), "floor", f"{first_kept - 1}-{2**64 - 1}"
            )

    async def _expire_waiting(self, subscription_id: str, *, cutoff: float, batch: int) -> int:
        """Drop the deliveries still stored for events older than `cutoff` (found through their traces)."""
        sid = subscription_id
        expired = 0
        start = 0
        now = time.time()
        while True:
            old: Any = await self.redis.zrangebyscore(
                self.keys.fanned(sid), "-inf", cutoff, start=start, num=batch
            )
            if not old:
                return expired
            traces: Any = await self.redis.hmget(self.keys.traces(sid), old)
            ids = [
                trace.delivery_id
                for trace in (_trace.decode(raw) for raw in traces if raw is not None)
                if trace.delivered_at is None and trace.outcome is None
            ]
            for delivery in await self.get(sid, ids):
                if delivery is None or delivery.event_timestamp > cutoff:
                    continue
                if await self.drop(sid, delivery, now=now, outcome="expired", leased_too=False):
                    expired += 1
            if len(old) < batch:
                return expired
            start += batch


def _unlogged(event_type: str) -> bool:
    """A resync's event type: a record's `*.snapshot` or a `resync.*` marker (delivered, never logged)."""
    return is_snapshot_type(event_type) or event_type in RESYNC_EVENT_TYPES


def queued_trace(delivery_id: str) -> bytes:
    """The trace of a delivery that has not succeeded yet (its record tells the rest)."""
    return _msgpack.encode(DeliveryTrace(delivery_id=delivery_id))


def _held(result: Any) -> tuple[bool, float | None]:
    if result == -1:
        return False, None
    text = result.decode() if isinstance(result, bytes) else str(result)
    return True, float(text) if text else None


def _laned(subscription: Subscription) -> bool:
    """Whether its deliveries wait in per-school lanes: an ordered webhook subscription's (a pull
    subscription's feed is one list in queuing order, which keeps each school's order by itself)."""
    return subscription.ordered and not subscription.pulled


def _flag(value: bool) -> str:
    return "1" if value else "0"
