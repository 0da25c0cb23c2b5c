"""The worker: claims due deliveries, sends each, and records how it went. Every serve process runs one.

Its loop claims due deliveries of enabled subscriptions from Redis (see `queue.py` for lanes and leases); its
slots (`BRIDGE_DELIVERY_CONCURRENCY` coroutines, one request in flight each) attempt them and record the
outcomes. It claims ahead: claimed deliveries wait in `_ready`, and a slot takes the next one the moment it
has its answer (`_slot`), so a slot does not sit empty for a round of claims, and no task is made per
delivery. The write that records finished attempts also claims what follows them for this worker
(`_claim_next`, `_claimed`): the next delivery of each ordered lane it moves on, so one school's events follow
each other without a round of claims between them; for an unordered subscription, as many due deliveries as it
finished, within the subscription's even share of the claims (the tick hands out the rest, each subscription
in turn). Claimed deliveries stay at most twice the concurrency, whether waiting, sending or being recorded.
It wakes when an attempt fails, when a success's outcome is written while the last round of claims took all it
could hold (only then is its claim freed; with less due than room, all of it was claimed and a round would
find nothing), when a write made a lane's next head due rather than claiming it, or when the intake or a
resync queued something (`wake`); and otherwise polls every `poll_interval` seconds (one cheap script per
enabled subscription per tick), so other processes' fan-outs and expiring retries are picked up quickly.

One attempt: `_as_now` (the delivery as the subscription is now: dropped, or its body cut again), send,
then `_record_ok` or `_record`, the two places a delivery's outcome is recorded: classified (ok, retry,
dead, or hold on 410 Gone), written as one `Attempt` with the delivery's new state (`Completer`, batched
per subscription), the subscription disabled on 410 or continuous failure, the delivery metrics of
`bridge.metrics` moved. A success is handed to the completer and its attempt ends there (`_written`
finishes it once written): the process goes on sending while completions are written. Until then its
lease stays taken and it counts against the claims (`_recording`), as an attempt in flight does.

It can be stopped and started again (its HTTP session is made again at each start).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import random
import secrets
import time
from collections import Counter, deque
from typing import Any

import msgspec
import structlog
from redis.exceptions import RedisError

from bridge import metrics
from bridge.delivery.completer import Completer, Result
from bridge.delivery.models import (
    AttemptResult,
    Delivery,
    EventSource,
    Subscription,
    answered,
)
from bridge.delivery.policy import GONE_REASON, gone, next_delay
from bridge.delivery.queue import Claim, Completion, DeliveryQueue, Outcome
from bridge.delivery.sender import Sender
from bridge.delivery.sendtime import as_it_is, as_now
from bridge.delivery.store import Current, SubscriptionStore
from bridge.loops import cancelled, poll
from bridge.settings import Settings

log = structlog.get_logger(__name__)

LEASE_MARGIN_SECONDS = 5.0  # the attempt is bounded by the timeout; this covers recording its outcome
MAINTENANCE_SECONDS = 60.0
SWEEP_SECONDS = 3600.0  # the orphan sweep SCANs the whole keyspace: at start, then hourly
WAKE_DEBOUNCE_SECONDS = 0.001
CLAIMED_PER_SLOT = 2
"""Deliveries held at once (waiting for a slot, sending, being recorded) per slot of concurrency."""
FRESH_SECONDS = 0.005
"""A send starts a read of the erasures under way when the worker's last read is older than this: a
delivery claimed by a write goes out without a tick (and its read) before it."""
STALE_SECONDS = 0.05
"""A send waits for that read when the last one is older than this (the worker was idle a while)."""
READY_SECONDS = LEASE_MARGIN_SECONDS / 2
"""A claimed delivery that waited this long for a slot is handed back: its lease must still cover the
attempt (bounded by the timeout) and the recording of its outcome."""


class Worker:
    def __init__(
        self,
        settings: Settings,
        queue: DeliveryQueue,
        store: SubscriptionStore,
        sender: Sender,
        completer: Completer,
        *,
        events: EventSource | None = None,
        lease_seconds: float | None = None,
        poll_interval: float = 0.2,
        rng: random.Random | None = None,
    ) -> None:
        self._settings = settings
        self._queue = queue
        self._store = store
        self._sender = sender
        self._completer = completer
        self._events = events  # the event log, to cut a body again from the logged envelope
        # A lease must outlive the longest attempt (bounded by the timeout), or work would be doubled.
        self.lease_seconds = lease_seconds or settings.delivery_timeout_seconds + LEASE_MARGIN_SECONDS
        self.poll_interval = poll_interval
        self._rng = rng or random.Random()
        self._tag = secrets.token_hex(6)
        self._counter = 0
        self._slots: list[asyncio.Task[None]] = []
        self._hands: dict[int, tuple[str, str, str]] = {}
        """Per slot sending now: the delivery it attempts (subscription id, delivery id, token)."""
        self._free: deque[asyncio.Future[None]] = deque()
        """Slots waiting for a claimed delivery (`_launch` wakes them)."""
        self._failing: dict[asyncio.Task[None], tuple[str, str, str]] = {}
        """Outcomes other than a success being written (`_record`): their slots are free meanwhile."""
        self._recording: Counter[str] = Counter()
        """Per subscription, successes handed to the completer whose outcome is not written yet."""
        self._pushing = 1
        """Enabled subscriptions this worker sends to, as the last tick found them (at least 1)."""
        self._ready: deque[tuple[Subscription, Delivery, str, float]] = deque()
        """Claimed, waiting for a slot: (subscription, delivery, token, when claimed, monotonic)."""
        self._debug = False  # whether the log takes debug lines (read each tick: a line costs ~3 µs)
        self._wake = asyncio.Event()
        self._loop_task: asyncio.Task[None] | None = None
        self._stopping = False
        self._next_maintenance = 0.0
        self._next_sweep = 0.0
        self._next_expiry = time.time() + self._rng.uniform(0, SWEEP_SECONDS)
        """The hourly pass over every delivery for a resync's expired ones (`expire_unlogged`): a full scan,
        first made at a random time within the process's first hour, not beside the backlog it starts with."""
        self._round_robin = 0
        self._short = True
        """Whether the last tick claimed as much as it could hold (so more may be due): a freed claim then
        wakes the loop. Otherwise all that was due was claimed, and what becomes due later wakes it
        itself (a fan-out, a resync, a write that made a lane's next head due) or waits for a tick."""
        self._erasing: frozenset[str] = frozenset()
        """The events being erased, as last read (a tick, or `_fresh` before a send)."""
        self._read_at = -math.inf
        """When `_erasing` was read (monotonic)."""
        self._reading: asyncio.Task[Current] | None = None
        """The read of them under way for the sends (`_fresh`)."""
        # Taken once: looking a metric's labels up on every attempt adds up.
        self._delivered_ok = metrics.DELIVERIES.labels(outcome="ok")
        completer.claim, completer.claimed, completer.due = self._claim_next, self._claimed, self.wake

    @property
    def running(self) -> bool:
        return self._loop_task is not None and not self._loop_task.done() and not self._stopping

    @property
    def in_flight(self) -> int:
        """Deliveries this process holds now: waiting for a slot, sending, or being recorded."""
        return len(self._ready) + len(self._hands) + len(self._failing) + self._recording.total()

    @property
    def _capacity(self) -> int:
        """The most deliveries this process holds at once: `CLAIMED_PER_SLOT` a slot of concurrency."""
        return CLAIMED_PER_SLOT * self._settings.delivery_concurrency

    async def start(self) -> None:
        """Start the loop; also after `stop()` (a restart: the HTTP session is made again)."""
        if self._loop_task is not None and not self._loop_task.done():
            return
        self._stopping = False
        self._wake = asyncio.Event()
        self._sender.session()  # made now (its CA bundle takes ~15 ms to load), not by the first send
        self._free.clear()
        self._slots = [
            asyncio.create_task(self._slot(n), name=f"delivery-slot-{n}")
            for n in range(self._settings.delivery_concurrency)
        ]
        self._loop_task = asyncio.create_task(self._run(), name="delivery-dispatcher")
        log.info("dispatcher started", concurrency=self._settings.delivery_concurrency)

    async def stop(self, grace: float = 10.0) -> None:
        """Stop claiming; let attempts in flight finish for `grace` seconds, hand the rest back."""
        self._stopping = True
        self._wake.set()
        if self._loop_task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._loop_task
        await self._hand_back(len(self._ready))  # claimed, not started: back at once
        self._launch()  # idle slots end (stopping)
        busy = [task for task in (*self._slots, *self._failing) if not task.done()]
        if busy:
            await asyncio.wait(busy, timeout=grace)
        await self._completer.drain()
        await self._hand_back(len(self._ready))  # lanes' next heads the last writes claimed
        leftovers = [*self._hands.values(), *self._failing.values()]
        await cancelled(*self._slots, *self._failing)
        await cancelled(*self._failing)  # what a cancelled send recorded meanwhile (released below)
        self._slots = []
        if leftovers:
            now = time.time()
            for subscription_id, delivery_id, token in leftovers:
                with contextlib.suppress(RedisError, OSError):
                    await self._queue.release(subscription_id, delivery_id, token=token, now=now)
        if self._reading is not None:
            self._reading.cancel()
        await self._sender.aclose()
        log.info("dispatcher stopped", handed_back=len(leftovers))

    def wake(self) -> None:
        """Look for due work now rather than at the next tick (the intake calls it when it queued some)."""
        self._wake.set()

    # -- the loop -----------------------------------------------------------------------------------

    async def _run(self) -> None:
        await poll(
            self._tick,
            self._idle,
            failed="dispatcher tick failed",
            crashed="dispatcher tick crashed",
            running=lambda: not self._stopping,
        )

    async def _idle(self, _: None) -> None:
        """Until woken (a finished attempt, a fan-out) or `poll_interval` passes; nothing when stopping."""
        if self._stopping:
            return
        try:
            async with asyncio.timeout(self.poll_interval):  # no task of its own, as wait_for makes
                await self._wake.wait()
        except TimeoutError:
            pass
        else:
            if len(self._ready) >= self._settings.delivery_concurrency:
                # Woken by a finished attempt or a fan-out with enough claimed ahead: gather a few more
                # before claiming again, so a busy process makes one round of claims per batch, not
                # per delivery. (With fewer waiting, a slot would soon stand empty: claim at once.)
                await asyncio.sleep(WAKE_DEBOUNCE_SECONDS)
        self._wake.clear()

    async def _tick(self) -> None:
        current = await self._read()
        self._debug = log.bind().is_enabled_for(logging.DEBUG)
        subscriptions = [s for s in current.subscriptions if s.enabled and not s.pulled]  # a feed is read
        self._pushing = max(1, len(subscriptions))
        now = time.time()
        if now >= self._next_maintenance:
            self._next_maintenance = now + MAINTENANCE_SECONDS
            await self._maintain(current.subscriptions, now)
        # A slot is a request in flight: it frees when the answer is in, while the outcome is written
        # (the lease held until then). Held deliveries (waiting for a slot, sending, being recorded)
        # stay at most twice the concurrency; those that waited too long for a slot go back first.
        await self._hand_back(self._stale())
        free = self._capacity - self.in_flight
        self._short = free <= 0
        if free <= 0 or not subscriptions:
            return
        start = self._round_robin % len(subscriptions)
        self._round_robin += 1
        for subscription in subscriptions[start:] + subscriptions[:start]:
            if free <= 0 or self._stopping:
                break
            token = self._token()
            now = time.time()
            claimed = await self._queue.claim(
                subscription.id, now=now, lease_until=now + self.lease_seconds, token=token, limit=free
            )
            self._claimed(subscription, claimed, token)
            free -= len(claimed)
        self._short = free <= 0  # else every subscription had less due than it could take

    async def _read(self) -> Current:
        """The subscriptions and the erasures under way, as Redis has them now (one GET while unchanged)."""
        current = await self._store.current()
        self._erasing, self._read_at = current.erasing, time.monotonic()
        return current

    def _fresh(self) -> asyncio.Task[Current] | None:
        """Keep the erasures under way a send checks at most a few ms old (docs/personal-data.md: once an
        erasure has begun, no send of its events begins): older than `FRESH_SECONDS`, a read starts, one
        for all the sends; older than `STALE_SECONDS`, the send waits for it (returned, to be awaited). A
        busy worker reads every few ms and no send waits; one idle a while waits once. (Not a coroutine:
        most sends need nothing of it, and a coroutine costs its call.)"""
        age = time.monotonic() - self._read_at
        if age <= FRESH_SECONDS:
            return None
        if self._reading is None or self._reading.done():
            self._reading = asyncio.create_task(self._read(), name="delivery-erasures")
            self._reading.add_done_callback(_retrieved)
        return self._reading if age > STALE_SECONDS else None

    def _token(self) -> str:
        """A fresh token for one claim: this worker's tag and a counter."""
        self._counter += 1
        return f"{self._tag}:{self._counter}"

    def _claim_next(self, subscription: Subscription, finished: int) -> Claim | None:
        """The claim a write of `finished` completions makes (`Completer`): the next heads of the ordered
        lanes it moves on; for an unordered subscription, up to as many due deliveries as it finished, while
        this worker then holds at most twice its concurrency and the subscription at most its even share of
        that. A fresh token, a lease as the tick's; none once stopping, or with no room."""
        if self._stopping:
            return None
        now = time.time()
        if subscription.ordered:
            return Claim(lease_until=now + self.lease_seconds, token=self._token())
        room = min(finished, self._capacity - (self.in_flight - finished))
        if self._pushing > 1:
            share = self._capacity // self._pushing
            room = min(room, share - (self._holding(subscription.id) - finished))
        if room <= 0:
            return None
        return Claim(lease_until=now + self.lease_seconds, token=self._token(), limit=room, now=now)

    def _holding(self, subscription_id: str) -> int:
        """The deliveries of one subscription this process holds: waiting for a slot, sending, recording."""
        waiting = sum(1 for s, *_ in self._ready if s.id == subscription_id)
        sending = sum(
            1 for sid, *_ in (*self._hands.values(), *self._failing.values()) if sid == subscription_id
        )
        return waiting + sending + self._recording[subscription_id]

    def _claimed(self, subscription: Subscription, deliveries: list[Delivery], token: str) -> None:
        """Claimed deliveries, a tick's or the lanes' next heads a write claimed (that write checked, in
        the same script, that the subscription is enabled and as `subscription` has it): they wait for a
        slot, and start at once while slots are free."""
        claimed_at = time.monotonic()
        self._ready.extend((subscription, delivery, token, claimed_at) for delivery in deliveries)
        self._launch()

    def _launch(self) -> None:
        """Wake idle slots for the claimed deliveries waiting (all of them once stopping: they end)."""
        while self._free and (self._ready or self._stopping):
            waiter = self._free.popleft()
            if not waiter.done():
                waiter.set_result(None)

    async def _slot(self, n: int) -> None:
        """One slot of concurrency: attempts claimed deliveries one after another, oldest claim first."""
        loop = asyncio.get_running_loop()
        while not self._stopping:
            if not self._ready or self._ready[0][3] <= time.monotonic() - READY_SECONDS:
                if self._ready:
                    self._wake.set()  # its lease may not cover an attempt now: the tick hands it back
                waiter = loop.create_future()
                self._free.append(waiter)
                await waiter
                continue
            subscription, delivery, token, _ = self._ready.popleft()
            self._hands[n] = (subscription.id, delivery.id, token)
            try:
                handed = await self._deliver(subscription, delivery, token)
            except Exception:
                log.exception("delivery attempt crashed", subscription=subscription.id)
                handed = False
            del self._hands[n]  # (kept when cancelled: `stop` releases it)
            if not handed:
                # A success handed to the completer still counts against the claims, and its lane moves
                # on only once it is written, so a tick now would find nothing new: `_written` wakes the
                # loop. Anything else frees room at once.
                self._wake.set()

    def _stale(self) -> int:
        """How many of the deliveries waiting for a slot waited `READY_SECONDS` (the oldest come first)."""
        limit = time.monotonic() - READY_SECONDS
        return next((n for n, item in enumerate(self._ready) if item[3] > limit), len(self._ready))

    async def _hand_back(self, count: int) -> None:
        """Release the first `count` deliveries waiting for a slot: due again at once, for any process."""
        if not count:
            return
        leaving = [self._ready.popleft() for _ in range(count)]  # before any await: the slots pop too
        self._launch()  # slots that stopped at a stale claim take the fresh ones behind it
        now = time.time()
        for subscription, delivery, token, _ in leaving:
            with contextlib.suppress(RedisError, OSError):  # else its lease runs out: the same, later
                await self._queue.release(subscription.id, delivery.id, token=token, now=now)

    async def _maintain(self, subscriptions: list[Subscription], now: float) -> None:
        cutoff = now - self._settings.event_retention_days * 86400
        for subscription in subscriptions:
            await self._queue.trim(subscription.id, cutoff=cutoff)
        if now >= self._next_expiry:
            self._next_expiry = now + SWEEP_SECONDS
            for subscription in subscriptions:  # a resync's deliveries, which `trim` cannot find
                expired = await self._queue.expire_unlogged(subscription.id, cutoff=cutoff)
                if expired:
                    log.info("resync deliveries expired", subscription=subscription.id, count=expired)
        if now >= self._next_sweep:
            self._next_sweep = now + SWEEP_SECONDS
            swept = await self._store.sweep()
            if swept:
                log.warning("keys of deleted subscriptions removed", count=len(swept), first=swept[:10])

    # -- one attempt --------------------------------------------------------------------------------

    async def _deliver(self, subscription: Subscription, delivery: Delivery, token: str) -> bool:
        """One attempt; whether it ended handed to the completer (a success, written later). Any other
        outcome is written by a task of its own (`_failed`): the slot takes its next delivery meanwhile."""
        try:
            reading = self._fresh()
            if reading is not None:
                await asyncio.shield(reading)
            sent = delivery
            if not as_it_is(
                subscription, delivery, erasing=self._erasing, expired_before=self._expired_before()
            ):
                now_wanted = await self._as_now(subscription, delivery)
                if now_wanted is None:
                    return False
                sent = now_wanted
            result = await self._sender.send(subscription, sent.event_id, sent.body)
            metrics.DELIVERY_ATTEMPT_DURATION.observe(result.duration_ms / 1000)
            if result.ok:
                self._record_ok(subscription, sent, token, result)
                return True
            self._failed(subscription, sent, token, result)
            return False
        except (RedisError, OSError) as error:
            # The lease runs out and the delivery is attempted again: at-least-once holds.
            _bound(subscription, delivery).warning(
                "delivery bookkeeping failed", error=f"{type(error).__name__}: {error}"
            )
            return False

    async def _as_now(self, subscription: Subscription, delivery: Delivery) -> Delivery | None:
        """The delivery as the subscription, as it is now, wants it sent: every send follows the subscription
        as it is when sent (docs/delivery.md), whatever queued it. None when it is dropped instead
        (sendtime.py `withheld`); the body cut again (`recut`) when the subscription changed since it was
        cut, and kept so (the outcome is recorded with it)."""
        outcome = await as_now(
            self._queue,
            self._events,
            subscription,
            delivery,
            erasing=self._erasing,
            expired_before=self._expired_before(),
        )
        if isinstance(outcome, Delivery):
            return outcome
        _bound(subscription, delivery).info("delivery dropped, not sent", outcome=outcome)
        metrics.DELIVERIES.labels(outcome=outcome).inc()
        return None

    def _expired_before(self) -> float:
        """Deliveries queued before this are dropped, not sent (the retention)."""
        return time.time() - self._settings.event_retention_days * 86400

    def _record_ok(
        self, subscription: Subscription, delivery: Delivery, token: str, result: AttemptResult
    ) -> None:
        """Where a success is recorded: handed to the completer, and the attempt ends; `_written` finishes
        it once it is written."""
        now = time.time()
        completion = _completion(subscription, delivery, token, result, "ok", now, now)
        self._recording[subscription.id] += 1
        self._completer.submit(
            completion, lambda written: self._written(subscription, delivery, result, now, written)
        )

    def _failed(
        self, subscription: Subscription, delivery: Delivery, token: str, result: AttemptResult
    ) -> None:
        """Any other outcome: recorded by a task of its own (`_record`), counted against the claims."""
        task = asyncio.create_task(self._record(subscription, delivery, token, result))
        self._failing[task] = (subscription.id, delivery.id, token)
        task.add_done_callback(self._recorded)

    def _recorded(self, task: asyncio.Task[None]) -> None:
        self._failing.pop(task, None)
        self._wake.set()
        if not task.cancelled() and task.exception() is not None:
            log.error("recording a delivery's outcome crashed", error=type(task.exception()).__name__)

    async def _record(
        self, subscription: Subscription, delivery: Delivery, token: str, result: AttemptResult
    ) -> None:
        """Where any other outcome is recorded: classified, written with its `Attempt`, then told (`_told`).
        A Redis error leaves the lease to run out: the delivery is attempted again (at-least-once)."""
        now = time.time()
        number = delivery.attempts + 1
        next_at = now
        outcome: Outcome
        if gone(result):
            outcome = "hold"
        else:
            delay = next_delay(result, number, self._settings.retry_schedule, self._rng)
            if delay is None:
                outcome = "dead"
            else:
                outcome, next_at = "retry", now + delay
        try:
            if outcome == "hold":
                # Disabled before the outcome is written: the held delivery is due again at once, and a
                # claim made meanwhile (a slot frees as soon as the answer is in) must find it disabled.
                await self._store.disable(subscription.id, GONE_REASON)
            held, failing_since = await self._completer.complete(
                _completion(subscription, delivery, token, result, outcome, now, next_at)
            )
            await self._told(subscription, delivery, result, outcome, held, failing_since, now)
        except (RedisError, OSError) as error:
            _bound(subscription, delivery).warning(
                "delivery bookkeeping failed", error=f"{type(error).__name__}: {error}"
            )

    def _written(
        self,
        subscription: Subscription,
        delivery: Delivery,
        result: AttemptResult,
        now: float,
        written: Result | Exception,
    ) -> None:
        """A success's outcome is written (or the write failed): its claim is freed, and it is counted."""
        self._recording[subscription.id] -= 1
        if not self._recording[subscription.id]:
            del self._recording[subscription.id]  # a deleted subscription leaves nothing behind
        if self._short or isinstance(written, Exception):
            self._wake.set()  # room for more of what is due
        if isinstance(written, Exception):
            # The lease runs out and the delivery is attempted again: at-least-once holds.
            _bound(subscription, delivery).warning(
                "delivery bookkeeping failed", error=f"{type(written).__name__}: {written}"
            )
            return
        held, _ = written
        if not held:
            _logged(subscription, delivery, result, "ok", held=False)
            return
        # The usual case, kept cheap: the attempt log in Redis has it; its log line is at debug level
        # (rendering a line per delivery would cost more than the Redis bookkeeping).
        self._delivered_ok.inc()
        if not delivery.replay:
            metrics.DELIVERY_LATENCY.observe(max(0.0, now - delivery.event_timestamp))
        if self._debug:
            log.debug(
                "delivery attempt",
                subscription=subscription.id,
                event_id=delivery.event_id,
                school=delivery.school_id,
                attempt=delivery.attempts + 1,
                outcome="ok",
                status=result.status_code,
            )

    async def _told(
        self,
        subscription: Subscription,
        delivery: Delivery,
        result: AttemptResult,
        outcome: Outcome,
        held: bool,
        failing_since: float | None,
        now: float,
    ) -> None:
        """An outcome other than a delivery made: logged, counted, and the subscription disabled after
        failing continuously for `BRIDGE_DISABLE_AFTER_HOURS` (docs/delivery.md)."""
        bound = _logged(subscription, delivery, result, outcome, held=held)
        if not held:
            return
        metrics.DELIVERIES.labels(outcome="gone" if outcome == "hold" else outcome).inc()
        if outcome == "hold":
            bound.warning("subscription disabled: 410 Gone")
        elif failing_since is not None:
            limit = self._settings.disable_after_hours * 3600
            if now - failing_since >= limit:
                await self._store.disable(
                    subscription.id, f"failed continuously for {self._settings.disable_after_hours:g} hours"
                )
                bound.warning("subscription disabled: continuous failure")


def _retrieved(task: asyncio.Task[Any]) -> None:
    """A read no send waited for: what it raised is not left unretrieved (the next send reads again)."""
    if not task.cancelled():
        task.exception()


def _logged(
    subscription: Subscription, delivery: Delivery, result: AttemptResult, outcome: Outcome, *, held: bool
) -> Any:
    """An attempt's outcome logged at info level, a lost lease counted; the bound logger, for more."""
    bound = _bound(subscription, delivery)
    bound.info(
        "delivery attempt",
        attempt=delivery.attempts + 1,
        outcome=outcome,
        status=result.status_code,
        error=result.error,
        duration_ms=result.duration_ms,
        lease_lost=not held,
    )
    if not held:
        metrics.DELIVERIES.labels(outcome="lease_lost").inc()
    return bound


def _completion(
    subscription: Subscription,
    delivery: Delivery,
    token: str,
    result: AttemptResult,
    outcome: Outcome,
    now: float,
    next_at: float,
) -> Completion:
    """The delivery as the attempt leaves it, and its one `Attempt` line, to be written together."""
    number = delivery.attempts + 1
    dead = outcome == "dead"
    updated = msgspec.structs.replace(
        delivery,
        attempts=number,
        last_status=result.status_code,
        last_error=result.error,
        last_attempt_at=now,
        state="dead" if dead else "pending",
        dead_at=now if dead else None,
    )
    attempt = answered(
        result,
        at=now,
        delivery_id=delivery.id,
        event_id=delivery.event_id,
        event_type=delivery.event_type,
        school_id=delivery.school_id,
        attempt=number,
        outcome=outcome,
    )
    return Completion(
        subscription=subscription,
        delivery=updated,
        token=token,
        outcome=outcome,
        now=now,
        next_at=next_at,
        attempt=attempt,
    )


def _bound(subscription: Subscription, delivery: Delivery) -> Any:
    """The log of one delivery (bound only when something is logged: binding costs on every attempt)."""
    return log.bind(subscription=subscription.id, event_id=delivery.event_id, school=delivery.school_id)
