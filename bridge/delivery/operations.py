"""Admin operations on deliveries: test sends, replays, redeliveries and dead letters."""

from __future__ import annotations

import heapq
import time
from collections.abc import AsyncIterator
from typing import Any, Final

import msgspec

from bridge.delivery.dispatcher import Dispatcher
from bridge.delivery.models import (
    AttemptResult,
    Delivery,
    DeliveryError,
    EventSource,
    OutgoingEvent,
    Subscription,
    UnknownSubscription,
)
from bridge.delivery.projection import project_body, shape_of
from bridge.events.envelope import decode_event, format_timestamp
from bridge.events.ids import new_event_id
from bridge.events.log import is_erased

CHUNK: Final = 500
"""Events of a replay's window, or dead letters, taken at once: memory stays bounded however many."""


class UnknownEvent(DeliveryError):
    def __init__(self, event_id: str) -> None:
        self.event_id = event_id
        super().__init__(f"no event with id {event_id!r} in the event log")


class ErasedEvent(DeliveryError):
    def __init__(self, event_id: str) -> None:
        self.event_id = event_id
        super().__init__(f"event {event_id!r} was erased (POST /v1/erasure): there is nothing to send")


class NoEventLog(DeliveryError):
    """Replays need the event log, and this dispatcher was built without one."""


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


async def send_test(dispatcher: Dispatcher, subscription: Subscription) -> tuple[str, AttemptResult]:
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
    return event_id, await dispatcher.send_test(subscription, event_id, body)


def _events(dispatcher: Dispatcher) -> EventSource:
    if dispatcher.events is None:
        raise NoEventLog("the event log is not available to the dispatcher")
    return dispatcher.events


async def replay(
    dispatcher: Dispatcher,
    subscription: Subscription,
    *,
    since: float,
    until: float | None,
    only_failed: bool,
) -> int:
    """Queue again every event of the window that the subscription matches, `CHUNK` events at a time.

    With `only_failed`, only events whose latest delivery to this subscription is a dead letter are
    sent, and those dead letters are retried (so they leave the dead-letter list).
    """
    source = _events(dispatcher)
    if only_failed:
        return await _retry_failed(dispatcher, subscription, source.window(since, until))
    queued = 0
    batch: list[OutgoingEvent] = []
    async for event in source.window(since, until):
        if subscription.matches(event.event_type, event.school_id):
            batch.append(event)
            if len(batch) >= CHUNK:
                queued += await dispatcher.enqueue(subscription, batch)
                batch = []
    queued += await dispatcher.enqueue(subscription, batch)
    return queued


async def _retry_failed(
    dispatcher: Dispatcher, subscription: Subscription, events: AsyncIterator[OutgoingEvent]
) -> int:
    """Retry the dead letters of `events` (oldest first, so each lane keeps its order), `CHUNK` at a time."""
    now = time.time()
    requeued = 0
    chunk: list[str] = []
    async for event in events:
        chunk.append(event.event_id)
        if len(chunk) >= CHUNK:
            requeued += await _retry_latest(dispatcher, subscription, chunk, now)
            chunk = []
    requeued += await _retry_latest(dispatcher, subscription, chunk, now)
    dispatcher.wake()
    return requeued


async def _retry_latest(
    dispatcher: Dispatcher, subscription: Subscription, event_ids: list[str], now: float
) -> int:
    latest = await dispatcher.queue.latest(subscription.id, event_ids)
    return len(await dispatcher.queue.retry_dead(subscription, latest, now=now))


async def redeliver(dispatcher: Dispatcher, event_id: str, subscription_id: str | None) -> list[str]:
    """Send one event again to every subscription it matches, or to the one named (filters aside)."""
    event = await _events(dispatcher).get(event_id)
    if event is None:
        raise UnknownEvent(event_id)
    if is_erased(decode_event(event.body)):
        raise ErasedEvent(event_id)
    if subscription_id is not None:
        targets = [await dispatcher.store.get(subscription_id)]
    else:
        targets = [
            s for s in await dispatcher.store.list_all() if s.matches(event.event_type, event.school_id)
        ]
    for subscription in targets:
        await dispatcher.enqueue(subscription, [event])
    return [s.id for s in targets]


async def dead_letters(
    dispatcher: Dispatcher, *, subscription_id: str | None, before: float | None, limit: int
) -> list[tuple[float, Delivery]]:
    """Dead letters newest first, across subscriptions (or of one)."""
    if subscription_id is not None:
        subscriptions = [await dispatcher.store.get(subscription_id)]
    else:
        subscriptions = await dispatcher.store.list_all()
    rows: list[tuple[float, Delivery]] = []
    for subscription in subscriptions:
        rows.extend(await dispatcher.queue.dead_letters(subscription.id, before=before, limit=limit))
    return heapq.nlargest(limit, rows, key=lambda row: row[0])


async def retry_dead_letters(
    dispatcher: Dispatcher, *, ids: list[str] | None, subscription_id: str | None
) -> list[str]:
    """Queue dead letters again (all of them, those of one subscription, or the ids given)."""
    if subscription_id is not None:
        subscriptions = [await dispatcher.store.get(subscription_id)]
    else:
        subscriptions = await dispatcher.store.list_all()
    requeued: list[str] = []
    now = time.time()
    for subscription in subscriptions:
        if ids is None:
            requeued += await _retry_all(dispatcher, subscription, now)
        else:
            chosen = await dispatcher.queue.dead_in_order(subscription.id, ids)
            requeued += await dispatcher.queue.retry_dead(subscription, chosen, now=now)
    dispatcher.wake()
    return requeued


async def _retry_all(dispatcher: Dispatcher, subscription: Subscription, now: float) -> list[str]:
    """Every dead letter of the subscription that died by `now` (not one that dies again meanwhile), oldest
    death first (each lane keeps its order), `CHUNK` at a time."""
    requeued: list[str] = []
    start = 0  # the dead letters passed over (gone, or not dead after all) stay at the head of the list
    while True:
        page = await dispatcher.queue.dead_ids(subscription.id, until=now, start=start, count=CHUNK)
        done = await dispatcher.queue.retry_dead(subscription, page, now=now)
        requeued += done
        start += len(page) - len(done)
        if len(page) < CHUNK:
            return requeued


__all__ = [
    "ErasedEvent",
    "NoEventLog",
    "UnknownEvent",
    "UnknownSubscription",
    "dead_letters",
    "redeliver",
    "replay",
    "retry_dead_letters",
    "send_test",
]
