"""The dispatcher: takes events in (`fan_out`), and delivers them with retries in every process.

Every serve process runs one. Its loop claims due deliveries of enabled subscriptions from Redis
(see `queue.py` for lanes and leases) while it has free slots (`BRIDGE_DELIVERY_CONCURRENCY`), runs
each attempt as a task, and records the outcome. It wakes when an attempt finishes or an event is
fanned out here, and otherwise polls every `poll_interval` seconds (one cheap script per enabled
subscription per tick), so other processes' fan-outs and expiring retries are picked up quickly.

It can be stopped and started again (its HTTP session is made again on first use). Every
attempt moves the delivery metrics of `bridge.metrics`.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import secrets
import time
from collections.abc import Sequence
from typing import Any

import msgspec
import structlog
from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster
from redis.exceptions import RedisError

from bridge import metrics
from bridge.delivery.completer import Completer
from bridge.delivery.models import (
    Attempt,
    AttemptResult,
    Delivery,
    EventSource,
    OutgoingEvent,
    Subscription,
    TraceOutcome,
    encode_attempt,
)
from bridge.delivery.policy import next_delay
from bridge.delivery.projection import Envelope, Shape, decode, project, shape_of
from bridge.delivery.queue import Completion, DeliveryQueue, Outcome
from bridge.delivery.sender import Sender
from bridge.delivery.store import SubscriptionStore
from bridge.events.log import ERASED
from bridge.settings import Settings
from bridge.store.keys import Keys

log = structlog.get_logger(__name__)

GONE_REASON = "the endpoint answered 410 Gone"
LEASE_MARGIN_SECONDS = 5.0  # the attempt is bounded by the timeout; this covers recording its outcome
MAINTENANCE_SECONDS = 60.0
SWEEP_SECONDS = 3600.0  # the orphan sweep SCANs the whole keyspace: at start, then hourly
WAKE_DEBOUNCE_SECONDS = 0.001
ENQUEUE_BATCH = 1000  # events of one subscription in one script call (Lua's unpack stays far from its limit)
Skipped = tuple[Subscription, OutgoingEvent, TraceOutcome]
"""An event not queued for a subscription, and why (`skipped` or `erased`)."""


class Dispatcher:
    def __init__(
        self,
        redis: Redis,
        settings: Settings,
        store: SubscriptionStore,
        *,
        events: EventSource | None = None,
        keys: Keys | None = None,
        lease_seconds: float | None = None,
        poll_interval: float = 0.2,
        rng: random.Random | None = None,
    ) -> None:
        self.redis = redis
        self.settings = settings
        self.store = store
        self.events = events  # the event log, for replays and redeliveries
        self.keys = keys or store.keys
        self.queue = DeliveryQueue(redis, self.keys, store.scripts)
        self.completer = Completer(self.queue, lambda: time.time() - settings.event_retention_days * 86400)
        self.sender = Sender(
            store.guard, timeout=settings.delivery_timeout_seconds, concurrency=settings.delivery_concurrency
        )
        # A lease must outlive the longest attempt (bounded by the timeout), or work would be doubled.
        self.lease_seconds = lease_seconds or settings.delivery_timeout_seconds + LEASE_MARGIN_SECONDS
        self.poll_interval = poll_interval
        self._rng = rng or random.Random()
        self._tag = secrets.token_hex(6)
        self._counter = 0
        self._inflight: dict[asyncio.Task[None], tuple[str, str, str]] = {}
        self._sending: set[asyncio.Task[None]] = set()  # the attempts of `_inflight` not yet answered
        self._wake = asyncio.Event()
        self._loop_task: asyncio.Task[None] | None = None
        self._stopping = False
        self._next_maintenance = 0.0
        self._next_sweep = 0.0
        self._round_robin = 0
        # Taken once: looking a metric's labels up on every attempt adds up.
        self._delivered_ok = metrics.DELIVERIES.labels(outcome="ok")

    @property
    def running(self) -> bool:
        return self._loop_task is not None and not self._loop_task.done() and not self._stopping

    @property
    def in_flight(self) -> int:
        """Attempts running in this process now."""
        return len(self._inflight)

    async def start(self) -> None:
        """Start the loop; also after `stop()` (a restart: the HTTP session is made again on first use)."""
        if self._loop_task is not None and not self._loop_task.done():
            return
        self._stopping = False
        self._wake = asyncio.Event()
        self._loop_task = asyncio.create_task(self._run(), name="delivery-dispatcher")
        log.info("dispatcher started", concurrency=self.settings.delivery_concurrency)

    async def stop(self, grace: float = 10.0) -> None:
        """Stop claiming; let attempts in flight finish for `grace` seconds, hand the rest back."""
        self._stopping = True
        self._wake.set()
        if self._loop_task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._loop_task
        if self._inflight:
            await asyncio.wait(list(self._inflight), timeout=grace)
        await self.completer.drain()
        leftovers = dict(self._inflight)
        for task in leftovers:
            task.cancel()
        if leftovers:
            await asyncio.gather(*leftovers, return_exceptions=True)
            now = time.time()
            for subscription_id, delivery_id, token in leftovers.values():
                with contextlib.suppress(RedisError, OSError):
                    await self.queue.release(subscription_id, delivery_id, token=token, now=now)
        await self.sender.aclose()
        log.info("dispatcher stopped", handed_back=len(leftovers))

    def wake(self) -> None:
        """Look for due work now rather than at the next tick."""
        self._wake.set()

    # -- taking events in ---------------------------------------------------------------------------

    async def fan_out(self, events: Sequence[OutgoingEvent]) -> int:
        """Queue every event for every matching subscription (enabled or not); safe to repeat.

        Call it with each school's events in `sequence` order: ordered lanes keep the order of arrival.
        Returns how many deliveries were newly queued.
        """
        if not events:
            return 0
        subscriptions = await self.store.snapshot()
        shapes = [shape_of(s) for s in subscriptions]
        if self.store.erasing or any(shapes):
            work, skipped = _shaped(
                events, list(zip(subscriptions, shapes, strict=True)), self.store.erasing, matching=True
            )
            await self._skip_all(skipped, once=True)
        else:  # the usual case: every subscription gets the logged envelope as it is
            work = [
                (subscription, event)
                for event in events
                for subscription in subscriptions
                if subscription.matches(event.event_type, event.school_id)
            ]
        results = await self._enqueue_all(work, now=time.time())
        self._wake.set()
        return sum(int(r) for r in results)

    async def enqueue(self, subscription: Subscription, events: Sequence[OutgoingEvent]) -> int:
        """Queue events again for one subscription (replay, redeliver): always a new delivery. Returns how
        many were queued (an update outside the subscription's `fields` is recorded as skipped instead)."""
        if not events:
            return 0
        work, skipped = _shaped(events, [(subscription, shape_of(subscription))], self.store.erasing)
        await self._skip_all(skipped, once=False)
        await self._enqueue_all(work, now=time.time(), once=False, replay=True)
        self._wake.set()
        return len(work)

    async def _skip_all(self, skipped: list[Skipped], *, once: bool) -> None:
        """Record each (subscription, event) that is not sent, and why (`skipped` or `erased`)."""
        if not skipped:
            return
        now = time.time()
        if not isinstance(self.redis, RedisCluster):
            async with self.redis.pipeline(transaction=False) as pipe:
                for subscription, event, why in skipped:
                    await self.queue.skip(pipe, subscription, event, now=now, outcome=why, once=once)
                await pipe.execute()
            return
        for subscription, event, why in skipped:
            await self.queue.skip(self.redis, subscription, event, now=now, outcome=why, once=once)

    async def _enqueue_all(self, work: list[tuple[Subscription, OutgoingEvent]], **options: Any) -> list[int]:
        """Queue each (subscription, event): one script call per subscription and `ENQUEUE_BATCH` events,
        in the order given (its lanes keep their order); all in one pipeline on plain Redis. Returns per
        subscription and event 1 when newly queued.

        Redis Cluster refuses scripts inside pipelines, so there each subscription's call runs on its own,
        side by side with the others'.
        """
        per_subscription: dict[str, tuple[Subscription, list[OutgoingEvent]]] = {}
        for subscription, event in work:
            per_subscription.setdefault(subscription.id, (subscription, []))[1].append(event)
        calls = [  # per subscription, its calls in order
            [
                (subscription, events[start : start + ENQUEUE_BATCH])
                for start in range(0, len(events), ENQUEUE_BATCH)
            ]
            for subscription, events in per_subscription.values()
        ]
        if not calls:
            return []
        if not isinstance(self.redis, RedisCluster):
            async with self.redis.pipeline(transaction=False) as pipe:
                for subscription, events in (call for of_one in calls for call in of_one):
                    await self.queue.enqueue(pipe, subscription, events, **options)
                replies = await pipe.execute()
        else:

            async def run(of_one: list[tuple[Subscription, list[OutgoingEvent]]]) -> list[Any]:
                return [await self.queue.enqueue(self.redis, s, events, **options) for s, events in of_one]

            replies = [
                reply for replies_of_one in await asyncio.gather(*map(run, calls)) for reply in replies_of_one
            ]
        return [int(queued) for reply in replies for queued in reply]

    # -- the loop -----------------------------------------------------------------------------------

    async def _run(self) -> None:
        while not self._stopping:
            try:
                await self._tick()
            except (RedisError, OSError) as error:
                log.warning("dispatcher tick failed", error=f"{type(error).__name__}: {error}")
                await asyncio.sleep(1.0)
            except Exception:
                log.exception("dispatcher tick crashed")
                await asyncio.sleep(1.0)
            if self._stopping:
                break
            try:
                await asyncio.wait_for(self._wake.wait(), self.poll_interval)
            except TimeoutError:
                pass
            else:
                # Woken by a finished attempt or a fan-out: gather a few more before claiming again,
                # so a busy process makes one round of claims per batch, not per delivery.
                await asyncio.sleep(WAKE_DEBOUNCE_SECONDS)
            self._wake.clear()

    async def _tick(self) -> None:
        subscriptions = [s for s in await self.store.snapshot() if s.enabled]
        now = time.time()
        if now >= self._next_maintenance:
            self._next_maintenance = now + MAINTENANCE_SECONDS
            await self._maintain(await self.store.snapshot(), now)
        # A slot is a request in flight: it frees when the answer is in, while the outcome is written
        # (the lease held until then). Claimed deliveries stay at most twice the concurrency.
        concurrency = self.settings.delivery_concurrency
        free = min(concurrency - len(self._sending), 2 * concurrency - len(self._inflight))
        if free <= 0 or not subscriptions:
            return
        start = self._round_robin % len(subscriptions)
        self._round_robin += 1
        for subscription in subscriptions[start:] + subscriptions[:start]:
            if free <= 0 or self._stopping:
                break
            self._counter += 1
            token = f"{self._tag}:{self._counter}"
            now = time.time()
            claimed = await self.queue.claim(
                subscription.id, now=now, lease_until=now + self.lease_seconds, token=token, limit=free
            )
            for delivery in claimed:
                task = asyncio.create_task(self._deliver(subscription, delivery, token))
                self._inflight[task] = (subscription.id, delivery.id, token)
                self._sending.add(task)
                task.add_done_callback(self._finished)
                free -= 1

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._inflight.pop(task, None)
        self._sending.discard(task)
        self._wake.set()

    def _answered(self) -> None:
        """The current attempt has its answer: its slot is free for the next claim."""
        task = asyncio.current_task()
        if task in self._sending:
            self._sending.discard(task)
            self._wake.set()

    async def _maintain(self, subscriptions: list[Subscription], now: float) -> None:
        cutoff = now - self.settings.event_retention_days * 86400
        for subscription in subscriptions:
            await self.queue.trim(subscription.id, cutoff=cutoff)
        if now >= self._next_sweep:
            self._next_sweep = now + SWEEP_SECONDS
            swept = await self.store.sweep()
            if swept:
                log.warning("keys of deleted subscriptions removed", count=len(swept), first=swept[:10])

    # -- one attempt --------------------------------------------------------------------------------

    async def _deliver(self, subscription: Subscription, delivery: Delivery, token: str) -> None:
        try:
            sent = await self._as_now(subscription, delivery)
            if sent is None:
                return
            result = await self.sender.send(subscription, sent.event_id, sent.body)
            self._answered()
            metrics.DELIVERY_ATTEMPT_DURATION.observe(result.duration_ms / 1000)
            await self._record(subscription, sent, token, result)
        except (RedisError, OSError) as error:
            # The lease runs out and the delivery is attempted again: at-least-once holds.
            _bound(subscription, delivery).warning(
                "delivery bookkeeping failed", error=f"{type(error).__name__}: {error}"
            )

    async def _as_now(self, subscription: Subscription, delivery: Delivery) -> Delivery | None:
        """The delivery as the subscription, as it is now, wants it sent: every send follows the subscription
        as it is when sent (docs/delivery.md), whatever queued it. None when it is dropped instead
        (`_withheld`); the body cut again (`_recut`) when the subscription changed since it was cut, and
        kept so (the outcome is recorded with it)."""
        outcome = self._withheld(subscription, delivery)
        if outcome is None and delivery.shaped_at < subscription.updated_at:
            recut = await self._recut(subscription, delivery)
            if isinstance(recut, Delivery):
                return recut
            outcome = recut
        if outcome is None:
            return delivery
        await self.queue.drop(subscription.id, delivery, now=time.time(), outcome=outcome, leased_too=True)
        _bound(subscription, delivery).info("delivery dropped, not sent", outcome=outcome)
        metrics.DELIVERIES.labels(outcome=outcome).inc()
        return None

    def _withheld(self, subscription: Subscription, delivery: Delivery) -> TraceOutcome | None:
        """Why a delivery is dropped instead of sent, if it is: its event is being erased (`erased`); it has
        waited longer than the retention (`expired`: one the retention pass did not see, an earlier delivery
        of an event redelivered since); the subscription changed since and its `event_types` or `school_ids`
        no longer match the event (`skipped`; a redelivery named to a subscription goes regardless of its
        filters as they were when asked)."""
        erasing = self.store.erasing
        if erasing and delivery.event_id in erasing:
            return "erased"
        if delivery.created_at < time.time() - self.settings.event_retention_days * 86400:
            return "expired"
        if delivery.shaped_at < subscription.updated_at and not subscription.matches(
            delivery.event_type, delivery.school_id
        ):
            return "skipped"
        return None

    async def _recut(self, subscription: Subscription, delivery: Delivery) -> Delivery | TraceOutcome:
        """The delivery with its body cut again by the subscription's options as they are now, from the
        event's envelope in the log (a body cut before cannot give back what it left out: a `redact` or
        `fields` taken off must bring the values back); from the stored body when the log has the event no
        more (that can only narrow it). `skipped` for an update whose changes all fall outside `fields` now,
        `erased` for an event the log says was erased."""
        logged = None if self.events is None else await self.events.get(delivery.event_id)
        envelope = decode(delivery.body if logged is None else logged.body)
        if logged is not None and envelope.data == ERASED:
            return "erased"
        shape = shape_of(subscription)
        if shape is None:
            body: bytes | None = delivery.body if logged is None else logged.body
        else:
            body = project(envelope, shape)
        if body is None:
            return "skipped"
        return msgspec.structs.replace(delivery, body=body, projected_at=subscription.updated_at)

    async def _record(
        self, subscription: Subscription, delivery: Delivery, token: str, result: AttemptResult
    ) -> None:
        now = time.time()
        number = delivery.attempts + 1
        next_at = now
        outcome: Outcome
        if result.ok:
            outcome = "ok"
        elif result.status_code == 410:
            outcome = "hold"
        else:
            delay = next_delay(result, number, self.settings.retry_schedule, self._rng)
            if delay is None:
                outcome = "dead"
            else:
                outcome, next_at = "retry", now + delay
        updated = msgspec.structs.replace(
            delivery,
            attempts=number,
            last_status=result.status_code,
            last_error=result.error,
            last_attempt_at=now,
            state="dead" if outcome == "dead" else "pending",
            dead_at=now if outcome == "dead" else None,
        )
        attempt = Attempt(
            at=now,
            delivery_id=delivery.id,
            event_id=delivery.event_id,
            event_type=delivery.event_type,
            school_id=delivery.school_id,
            attempt=number,
            outcome=outcome,
            status_code=result.status_code,
            error=result.error,
            duration_ms=result.duration_ms,
            response_body=result.response_body,
            signed_at=result.signed_at,
        )
        if outcome == "hold":
            # Disabled before the outcome is written: the held delivery is due again at once, and a
            # claim made meanwhile (a slot frees as soon as the answer is in) must find it disabled.
            await self.store.disable(subscription.id, GONE_REASON)
        held, failing_since = await self.completer.complete(
            Completion(
                subscription=subscription,
                delivery=updated,
                token=token,
                outcome=outcome,
                now=now,
                next_at=next_at,
                attempt=attempt,
            )
        )
        if outcome == "ok" and held:
            # The usual case, kept cheap: the attempt log in Redis has it; its log line is at debug level
            # (rendering a line per delivery would cost more than the Redis bookkeeping).
            self._delivered_ok.inc()
            if not delivery.replay:
                metrics.DELIVERY_LATENCY.observe(max(0.0, now - delivery.event_timestamp))
            log.debug(
                "delivery attempt",
                subscription=subscription.id,
                event_id=delivery.event_id,
                school=delivery.school_id,
                attempt=number,
                outcome=outcome,
                status=result.status_code,
            )
            return
        bound = _bound(subscription, delivery)
        bound.info(
            "delivery attempt",
            attempt=number,
            outcome=outcome,
            status=result.status_code,
            error=result.error,
            duration_ms=result.duration_ms,
            lease_lost=not held,
        )
        if not held:
            metrics.DELIVERIES.labels(outcome="lease_lost").inc()
            return
        metrics.DELIVERIES.labels(outcome="gone" if outcome == "hold" else outcome).inc()
        if outcome == "hold":
            bound.warning("subscription disabled: 410 Gone")
        elif failing_since is not None:
            limit = self.settings.disable_after_hours * 3600
            if now - failing_since >= limit:
                await self.store.disable(
                    subscription.id, f"failed continuously for {self.settings.disable_after_hours:g} hours"
                )
                bound.warning("subscription disabled: continuous failure")

    async def attempts(self, subscription_id: str, *, before: float | None, limit: int) -> list[Attempt]:
        """One subscription's attempt log, newest first, strictly older than `before` (a time) when given."""
        return await self.queue.attempts(subscription_id, before=before, limit=limit)

    async def send_test(self, subscription: Subscription, event_id: str, body: bytes) -> AttemptResult:
        """Send one event now, outside the queue (`POST .../test`), and log the attempt.

        410 Gone disables the subscription, as it does for queued deliveries.
        """
        result = await self.sender.send(subscription, event_id, body, lane=subscription.id)
        now = time.time()
        attempt = Attempt(
            at=now,
            delivery_id="test",
            event_id=event_id,
            event_type="webhook.test",
            school_id=0,
            attempt=1,
            outcome="ok" if result.ok else "failed",
            status_code=result.status_code,
            error=result.error,
            duration_ms=result.duration_ms,
            response_body=result.response_body,
            signed_at=result.signed_at,
        )
        await self.redis.zadd(self.keys.attempts(subscription.id), {encode_attempt(attempt): now})
        if result.status_code == 410:
            await self.store.disable(subscription.id, GONE_REASON)
            log.warning("subscription disabled: 410 Gone to a test event", subscription=subscription.id)
        return result


def _bound(subscription: Subscription, delivery: Delivery) -> Any:
    """The log of one delivery (bound only when something is logged: binding costs on every attempt)."""
    return log.bind(subscription=subscription.id, event_id=delivery.event_id, school=delivery.school_id)


def _shaped(
    events: Sequence[OutgoingEvent],
    subscriptions: list[tuple[Subscription, Shape | None]],
    erasing: frozenset[str],
    *,
    matching: bool = False,
) -> tuple[list[tuple[Subscription, OutgoingEvent]], list[Skipped]]:
    """Each (subscription, event) to queue, with the body that subscription receives, and each one not
    sent (an update outside its `fields`: "skipped"; an event being erased: "erased"). With `matching`,
    only the subscriptions whose filters match an event are considered. Each event is decoded at most
    once, and only when some subscription has a shape."""
    work: list[tuple[Subscription, OutgoingEvent]] = []
    skipped: list[Skipped] = []
    for event in events:
        envelope: Envelope | None = None
        erased = event.event_id in erasing
        for subscription, shape in subscriptions:
            if matching and not subscription.matches(event.event_type, event.school_id):
                continue
            if erased:
                skipped.append((subscription, event, "erased"))
            elif shape is None:
                work.append((subscription, event))
            else:
                if envelope is None:
                    envelope = decode(event.body)
                body = project(envelope, shape)
                if body is None:
                    skipped.append((subscription, event, "skipped"))
                else:
                    work.append((subscription, msgspec.structs.replace(event, body=body)))
    return work, skipped
