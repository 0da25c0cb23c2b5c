"""The delivery service: what the API and the console do with deliveries, beside the worker.

Attempt logs; test sends; replays, redeliveries and dead-letter retries (queued again through the
intake, the worker woken); and where one event stands with each subscription (`states`, for
`GET /v1/events/{id}`).

Each subscription's `traces` hash names, per event, the latest delivery of it (see `queue.py`). While
that delivery is queued or dead its record holds the attempts and last answer, `due` when it may be
tried next and `leases` whether a worker holds it now; once it succeeded the record is gone and the
trace itself says when, after how many attempts, with which status. Reading one event costs two
pipelined round trips: one HGET per subscription, then three cheap reads per delivery still queued.
"""

from __future__ import annotations

import heapq
import time
from collections.abc import AsyncIterator, Callable
from typing import Any, Final, Literal

import msgspec
import structlog

from bridge.delivery.intake import Intake
from bridge.delivery.models import (
    Attempt,
    AttemptResult,
    Delivery,
    DeliveryError,
    DeliveryTrace,
    EventSource,
    OutgoingEvent,
    Subscription,
    answered,
)
from bridge.delivery.policy import GONE_REASON, gone
from bridge.delivery.projection import project_body, shape_of
from bridge.delivery.queue import DeliveryQueue
from bridge.delivery.sender import Sender
from bridge.delivery.store import SubscriptionStore
from bridge.events.envelope import decode_event, format_timestamp
from bridge.events.ids import new_event_id
from bridge.events.log import is_erased

log = structlog.get_logger(__name__)

CHUNK: Final = 500
"""Events of a replay's window, or dead letters, taken at once: memory stays bounded however many."""

EventDeliveryStatus = Literal[
    "pending", "delivering", "retrying", "delivered", "dead", "expired", "skipped", "erased"
]

_delivery = msgspec.msgpack.Decoder(Delivery)


class UnknownEvent(DeliveryError):
    def __init__(self, event_id: str) -> None:
        self.event_id = event_id
        super().__init__(f"no event with id {event_id!r} in the event log")


class ErasedEvent(DeliveryError):
    def __init__(self, event_id: str) -> None:
        self.event_id = event_id
        super().__init__(f"event {event_id!r} was erased (POST /v1/erasure): there is nothing to send")


class NoEventLog(DeliveryError):
    """Replays need the event log, and this service was built without one."""


class TestEnvelope(msgspec.Struct, kw_only=True):
    """The `webhook.test` event: the usual envelope fields, `data` says what it is."""

    id: str
    type: str
    timestamp: str
    school_id: int
    sequence: int
    resource: str
    resource_id: str
    data: dict[str, Any]


class EventDeliveryState(msgspec.Struct, kw_only=True):
    """One event's latest delivery to one subscription. Times are Unix seconds.

    `state`:
    - `pending`: queued, not attempted yet (it may wait behind earlier events of its school on an
      ordered subscription: then `next_attempt_at` is null);
    - `delivering`: an attempt is running now;
    - `retrying`: attempted and failed; `next_attempt_at` says when it is tried again;
    - `delivered`: a 2xx came back (`last_attempt_at` is when);
    - `dead`: retries exhausted; a dead letter (`POST /v1/dead-letters/retry` sends it again);
    - `expired`: the record was removed by retention (if it had not gone out, it never will);
    - `skipped`: not sent: an update whose changes all fall outside the subscription's `fields`, or an
      event the subscription, changed since, no longer matched when it was to be sent;
    - `erased`: not sent (or not again): its delivery was dropped by an erasure (`POST /v1/erasure`).

    `next_attempt_at` is null while the subscription is disabled: its deliveries wait, kept, until it
    is enabled again. A replay or redelivery of the event replaces the earlier delivery here.
    """

    subscription_id: str
    subscription_enabled: bool
    delivery_id: str
    state: EventDeliveryStatus
    attempts: int
    last_status: int | None = None
    last_error: str | None = None
    last_attempt_at: float | None = None
    next_attempt_at: float | None = None


class DeliveryService:
    def __init__(
        self,
        queue: DeliveryQueue,
        store: SubscriptionStore,
        intake: Intake,
        sender: Sender,
        *,
        events: EventSource | None = None,
        on_requeued: Callable[[], None],
    ) -> None:
        self._queue = queue
        self._store = store
        self._intake = intake
        self._sender = sender
        self._events = events  # the event log, for replays and redeliveries
        self._on_requeued = on_requeued  # wakes the worker: dead letters went back to `due`

    async def attempts(self, subscription_id: str, *, before: float | None, limit: int) -> list[Attempt]:
        """One subscription's attempt log, newest first, strictly older than `before` (a time) when given."""
        return await self._queue.attempts(subscription_id, before=before, limit=limit)

    # -- test sends ---------------------------------------------------------------------------------

    async def send_test(self, subscription: Subscription) -> tuple[str, AttemptResult]:
        """Send a `webhook.test` now, outside the queue (`POST .../test`), and log the attempt.

        410 Gone disables the subscription, as it does for queued deliveries.
        """
        now = time.time()
        event_id = new_event_id(now)
        body = msgspec.json.encode(
            TestEnvelope(
                id=event_id,
                type="webhook.test",
                timestamp=format_timestamp(now),
                school_id=0,
                sequence=0,
                resource="subscription",
                resource_id=subscription.id,
                data={"subscription_id": subscription.id, "message": "a test event from d6 bridge"},
            )
        )
        shape = shape_of(subscription)  # cut as every send is: by the subscription as it is now
        if shape is not None:
            body = project_body(body, shape, may_skip=False) or body
        result = await self._sender.send(subscription, event_id, body, lane=subscription.id)
        attempt = answered(
            result,
            at=time.time(),
            delivery_id="test",
            event_id=event_id,
            event_type="webhook.test",
            school_id=0,
            attempt=1,
            outcome="ok" if result.ok else "failed",
        )
        await self._queue.log_attempt(subscription.id, attempt)
        if gone(result):
            await self._store.disable(subscription.id, GONE_REASON)
            log.warning("subscription disabled: 410 Gone to a test event", subscription=subscription.id)
        return event_id, result

    # -- sending again ------------------------------------------------------------------------------

    def _source(self) -> EventSource:
        if self._events is None:
            raise NoEventLog("the event log is not available to the dispatcher")
        return self._events

    async def replay(
        self, subscription: Subscription, *, since: float, until: float | None, only_failed: bool
    ) -> int:
        """Queue again every event of the window that the subscription matches, `CHUNK` events at a time.

        With `only_failed`, only events whose latest delivery to this subscription is a dead letter are
        sent, and those dead letters are retried (so they leave the dead-letter list).
        """
        source = self._source()
        if only_failed:
            return await self._retry_failed(subscription, source.window(since, until))
        queued = 0
        batch: list[OutgoingEvent] = []
        async for event in source.window(since, until):
            if subscription.matches(event.event_type, event.school_id):
                batch.append(event)
                if len(batch) >= CHUNK:
                    queued += await self._intake.enqueue(subscription, batch)
                    batch = []
        queued += await self._intake.enqueue(subscription, batch)
        return queued

    async def _retry_failed(self, subscription: Subscription, events: AsyncIterator[OutgoingEvent]) -> int:
        """Retry the dead letters of `events` (oldest first, so each lane keeps its order), `CHUNK` at a
        time."""
        now = time.time()
        requeued = 0
        chunk: list[str] = []
        async for event in events:
            chunk.append(event.event_id)
            if len(chunk) >= CHUNK:
                requeued += await self._retry_latest(subscription, chunk, now)
                chunk = []
        requeued += await self._retry_latest(subscription, chunk, now)
        self._on_requeued()
        return requeued

    async def _retry_latest(self, subscription: Subscription, event_ids: list[str], now: float) -> int:
        latest = await self._queue.latest(subscription.id, event_ids)
        return len(await self._queue.retry_dead(subscription, latest, now=now))

    async def redeliver(self, event_id: str, subscription_id: str | None) -> list[str]:
        """Send one event again to every subscription it matches, or to the one named (filters aside)."""
        event = await self._source().get(event_id)
        if event is None:
            raise UnknownEvent(event_id)
        if is_erased(decode_event(event.body)):
            raise ErasedEvent(event_id)
        if subscription_id is not None:
            targets = [await self._store.get(subscription_id)]
        else:
            targets = [
                s for s in await self._store.list_all() if s.matches(event.event_type, event.school_id)
            ]
        for subscription in targets:
            await self._intake.enqueue(subscription, [event])
        return [s.id for s in targets]

    # -- dead letters -------------------------------------------------------------------------------

    async def _chosen(self, subscription_id: str | None) -> list[Subscription]:
        if subscription_id is not None:
            return [await self._store.get(subscription_id)]
        return await self._store.list_all()

    async def dead_letters(
        self, *, subscription_id: str | None, before: float | None, limit: int
    ) -> list[tuple[float, Delivery]]:
        """Dead letters newest first, across subscriptions (or of one)."""
        rows: list[tuple[float, Delivery]] = []
        for subscription in await self._chosen(subscription_id):
            rows.extend(await self._queue.dead_letters(subscription.id, before=before, limit=limit))
        return heapq.nlargest(limit, rows, key=lambda row: row[0])

    async def retry_dead_letters(self, *, ids: list[str] | None, subscription_id: str | None) -> list[str]:
        """Queue dead letters again (all of them, those of one subscription, or the ids given)."""
        subscriptions = await self._chosen(subscription_id)
        requeued: list[str] = []
        now = time.time()
        for subscription in subscriptions:
            if ids is None:
                requeued += await self._retry_all(subscription, now)
            else:
                chosen = await self._queue.dead_in_order(subscription.id, ids)
                requeued += await self._queue.retry_dead(subscription, chosen, now=now)
        self._on_requeued()
        return requeued

    async def _retry_all(self, subscription: Subscription, now: float) -> list[str]:
        """Every dead letter of the subscription that died by `now` (not one that dies again meanwhile),
        oldest death first (each lane keeps its order), `CHUNK` at a time."""
        requeued: list[str] = []
        start = 0  # the dead letters passed over (gone, or not dead after all) stay at the head of the list
        while True:
            page = await self._queue.dead_ids(subscription.id, until=now, start=start, count=CHUNK)
            done = await self._queue.retry_dead(subscription, page, now=now)
            requeued += done
            start += len(page) - len(done)
            if len(page) < CHUNK:
                return requeued

    # -- where an event stands ----------------------------------------------------------------------

    async def states(self, event_id: str) -> list[EventDeliveryState]:
        """For each subscription that has or had a delivery of `event_id`: where it stands, by
        subscription id."""
        subscriptions = sorted((await self._store.current()).subscriptions, key=lambda s: s.id)
        if not subscriptions:
            return []
        traces = await self._queue.event_traces([s.id for s in subscriptions], event_id)
        found = [
            (subscription, trace)
            for subscription, trace in zip(subscriptions, traces, strict=True)
            if trace is not None
        ]
        queued = [(s, t) for s, t in found if t.delivered_at is None and t.outcome is None]
        rows = await self._queue.standing([(s.id, t.delivery_id) for s, t in queued])
        live = {subscription.id: row for (subscription, _), row in zip(queued, rows, strict=True)}
        # A delivery that ended between the two reads has no record left: its trace, read again, tells how.
        ended = [(s, t) for s, t in queued if live[s.id][0] is None]
        if ended:
            again = await self._queue.event_traces([s.id for s, _ in ended], event_id)
            newer = {s.id: t for (s, _), t in zip(ended, again, strict=True) if t is not None}
            found = [(s, newer.get(s.id, t)) for s, t in found]
        states = []
        for subscription, trace in found:
            if trace.outcome is not None:
                states.append(_not_sent(subscription, trace))
            elif trace.delivered_at is not None:
                states.append(_delivered(subscription, trace))
            else:
                record, due, leased = live[subscription.id]
                states.append(_queued(subscription, trace, record, due, leased))
        return states


def _delivered(subscription: Subscription, trace: DeliveryTrace) -> EventDeliveryState:
    return EventDeliveryState(
        subscription_id=subscription.id,
        subscription_enabled=subscription.enabled,
        delivery_id=trace.delivery_id,
        state="delivered",
        attempts=trace.attempts,
        last_status=trace.status,
        last_attempt_at=trace.delivered_at,
    )


def _not_sent(subscription: Subscription, trace: DeliveryTrace) -> EventDeliveryState:
    assert trace.outcome is not None
    return EventDeliveryState(
        subscription_id=subscription.id,
        subscription_enabled=subscription.enabled,
        delivery_id=trace.delivery_id,
        state=trace.outcome,
        attempts=trace.attempts,
        last_attempt_at=None,
    )


def _queued(
    subscription: Subscription, trace: DeliveryTrace, raw: bytes | None, due: float | None, leased: bool
) -> EventDeliveryState:
    if raw is None:
        return EventDeliveryState(
            subscription_id=subscription.id,
            subscription_enabled=subscription.enabled,
            delivery_id=trace.delivery_id,
            state="expired",
            attempts=0,
        )
    delivery = _delivery.decode(raw)
    state: EventDeliveryStatus
    if delivery.state == "dead":
        state = "dead"
    elif leased:
        state = "delivering"
    else:
        state = "retrying" if delivery.attempts else "pending"
    waiting = state in ("pending", "retrying") and subscription.enabled
    return EventDeliveryState(
        subscription_id=subscription.id,
        subscription_enabled=subscription.enabled,
        delivery_id=delivery.id,
        state=state,
        attempts=delivery.attempts,
        last_status=delivery.last_status,
        last_error=delivery.last_error,
        last_attempt_at=delivery.last_attempt_at,
        next_attempt_at=float(due) if waiting and due is not None else None,
    )
