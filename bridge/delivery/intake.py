"""The intake: events in, deliveries queued (`fan_out` for new events, `enqueue` for replays and
redeliveries), and the (subscription, event) pairs not sent recorded as skipped or erased.

Each subscription gets the body its options cut (`projection.py`): an update whose changes all fall
outside its `fields` is recorded as `skipped`, an event being erased as `erased`. The worker is told
(`on_queued`) so it claims the new work at once rather than at its next tick, and the readers of pull
subscriptions' feeds through `Notices` (feed.py).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from typing import Any

import msgspec
from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster

from bridge.delivery.feed import Notices
from bridge.delivery.models import OutgoingEvent, Subscription, TraceOutcome
from bridge.delivery.projection import Envelope, Shape, decode, project, shape_of
from bridge.delivery.queue import DeliveryQueue
from bridge.delivery.store import SubscriptionStore

ENQUEUE_BATCH = 1000  # events of one subscription in one script call (Lua's unpack stays far from its limit)
Skipped = tuple[Subscription, OutgoingEvent, TraceOutcome]
"""An event not queued for a subscription, and why (`skipped` or `erased`)."""


class Intake:
    def __init__(
        self,
        redis: Redis,
        queue: DeliveryQueue,
        store: SubscriptionStore,
        on_queued: Callable[[], None],
        *,
        notices: Notices | None = None,
    ) -> None:
        self.redis = redis
        self.queue = queue
        self.store = store
        self._on_queued = on_queued
        self._notices = notices

    async def fan_out(self, events: Sequence[OutgoingEvent]) -> int:
        """Queue every event for every matching subscription (enabled or not); safe to repeat.

        Call it with each school's events in `sequence` order: ordered lanes keep the order of arrival.
        Returns how many deliveries were newly queued.
        """
        if not events:
            return 0
        current = await self.store.current()
        subscriptions = current.subscriptions
        shapes = [shape_of(s) for s in subscriptions]
        if current.erasing or any(shapes):
            work, skipped = _shaped(
                events, list(zip(subscriptions, shapes, strict=True)), current.erasing, matching=True
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
        self._on_queued()
        return sum(int(r) for r in results)

    async def enqueue(self, subscription: Subscription, events: Sequence[OutgoingEvent]) -> int:
        """Queue events again for one subscription (replay, redeliver): always a new delivery. Returns how
        many were queued (an update outside the subscription's `fields` is recorded as skipped instead)."""
        if not events:
            return 0
        erasing = (await self.store.current()).erasing
        work, skipped = _shaped(events, [(subscription, shape_of(subscription))], erasing)
        await self._skip_all(skipped, once=False)
        await self._enqueue_all(work, now=time.time(), once=False, replay=True)
        self._on_queued()
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
        pulled = [subscription.id for subscription, _ in per_subscription.values() if subscription.pulled]
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
        if self._notices is not None:  # their readers wake; the workers too where told (feed.py)
            await self._notices.publish(pulled, pushed=len(pulled) < len(per_subscription))
        return [int(queued) for reply in replies for queued in reply]


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
