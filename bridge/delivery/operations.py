"""Admin operations on deliveries: test sends, replays, redeliveries and dead letters."""

from __future__ import annotations

import heapq
import time
from typing import Any

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
from bridge.events.envelope import decode_event, format_timestamp
from bridge.events.ids import new_event_id
from bridge.events.log import is_erased


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
    """Queue again every event of the window that the subscription matches.

    With `only_failed`, only events whose delivery to this subscription is a dead letter are sent,
    and those dead letters are retried (so they leave the dead-letter list).
    """
    source = _events(dispatcher)
    if only_failed:
        dead = {
            d.event_id: d.id
            for _, d in await dispatcher.queue.dead_letters(subscription.id, before=None, limit=1_000_000)
        }
        ids = []
        async for event in source.window(since, until):
            if event.event_id in dead:
                ids.append(dead[event.event_id])
        requeued = await dispatcher.queue.retry_dead(subscription, ids, now=time.time())
        dispatcher.wake()
        return len(requeued)
    queued = 0
    batch: list[OutgoingEvent] = []
    async for event in source.window(since, until):
        if subscription.matches(event.event_type, event.school_id):
            batch.append(event)
            if len(batch) >= 500:
                queued += await dispatcher.enqueue(subscription, batch)
                batch = []
    queued += await dispatcher.enqueue(subscription, batch)
    return queued


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
    wanted = None if ids is None else set(ids)
    requeued: list[str] = []
    now = time.time()
    for subscription in subscriptions:
        dead = await dispatcher.queue.dead_ids(subscription.id)
        chosen = dead if wanted is None else [i for i in dead if i in wanted]
        if chosen:
            requeued += await dispatcher.queue.retry_dead(subscription, chosen, now=now)
    dispatcher.wake()
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
