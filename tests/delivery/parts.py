"""The delivery parts wired on a test Redis as `Services.build` wires them (bridge/app.py), in one bundle.

Tests drive the parts through it: events in with `fan_out` (the intake), `start`/`stop` (the worker),
the API's operations on `service`; `store`, `queue`, `keys` and `redis` are at hand for assertions.
"""

from __future__ import annotations

import random
import time
from collections.abc import Sequence

from redis.asyncio import Redis

from bridge.delivery.completer import Completer
from bridge.delivery.intake import Intake
from bridge.delivery.models import Attempt, EventSource, OutgoingEvent, Subscription
from bridge.delivery.queue import DeliveryQueue
from bridge.delivery.sender import Sender
from bridge.delivery.service import DeliveryService
from bridge.delivery.store import SubscriptionStore
from bridge.delivery.worker import Worker
from bridge.settings import Settings


class DeliveryParts:
    def __init__(
        self,
        redis: Redis,
        settings: Settings,
        store: SubscriptionStore,
        *,
        events: EventSource | None = None,
        lease_seconds: float | None = None,
        poll_interval: float = 0.2,
        rng: random.Random | None = None,
    ) -> None:
        self.redis = redis
        self.settings = settings
        self.store = store
        self.keys = store.keys
        self.queue = DeliveryQueue(redis, self.keys, store.scripts)
        self.sender = Sender(
            store.guard, timeout=settings.delivery_timeout_seconds, concurrency=settings.delivery_concurrency
        )
        completer = Completer(self.queue, lambda: time.time() - settings.event_retention_days * 86400)
        self.worker = Worker(
            settings,
            self.queue,
            store,
            self.sender,
            completer,
            events=events,
            lease_seconds=lease_seconds,
            poll_interval=poll_interval,
            rng=rng,
        )
        self.intake = Intake(redis, self.queue, store, on_queued=self.worker.wake)
        self.service = DeliveryService(
            self.queue, store, self.intake, self.sender, events=events, on_requeued=self.worker.wake
        )

    async def fan_out(self, events: Sequence[OutgoingEvent]) -> int:
        return await self.intake.fan_out(events)

    async def enqueue(self, subscription: Subscription, events: Sequence[OutgoingEvent]) -> int:
        return await self.intake.enqueue(subscription, events)

    async def attempts(self, subscription_id: str, *, before: float | None, limit: int) -> list[Attempt]:
        return await self.service.attempts(subscription_id, before=before, limit=limit)

    async def start(self) -> None:
        await self.worker.start()

    async def stop(self, grace: float = 10.0) -> None:
        await self.worker.stop(grace)

    def wake(self) -> None:
        self.worker.wake()

    @property
    def running(self) -> bool:
        return self.worker.running

    @property
    def in_flight(self) -> int:
        return self.worker.in_flight
