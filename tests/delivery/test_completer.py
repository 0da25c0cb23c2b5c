"""Finished attempts are recorded in batches (one script call per subscription and batch) against real Redis,
and each one keeps what a single completion guaranteed: the lease check, the lane moving on in order."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

from bridge.delivery.completer import Completer
from bridge.delivery.models import Attempt, Delivery, Subscription
from bridge.delivery.queue import Completion
from bridge.testing.events import make_events
from tests.delivery.parts import DeliveryParts

Factory = Callable[..., DeliveryParts]


def finished(subscription: Subscription, delivery: Delivery, token: str, now: float) -> Completion:
    attempt = Attempt(
        at=now,
        delivery_id=delivery.id,
        event_id=delivery.event_id,
        event_type=delivery.event_type,
        school_id=delivery.school_id,
        attempt=1,
        outcome="ok",
        status_code=200,
        duration_ms=1.0,
    )
    return Completion(
        subscription=subscription,
        delivery=delivery,
        token=token,
        outcome="ok",
        now=now,
        next_at=now,
        attempt=attempt,
    )


async def test_completions_that_finish_together_are_one_script_call_and_lanes_move_on(
    dispatcher_factory: Factory,
) -> None:
    dispatcher = dispatcher_factory()  # not started: the test plays the worker
    subscription = await dispatcher.store.create(url="http://127.0.0.1:9/hook")  # ordered
    events = make_events(1, 3) + make_events(2, 3)
    await dispatcher.fan_out(events)
    now = time.time()
    heads = await dispatcher.queue.claim(subscription.id, now=now, lease_until=now + 30, token="w", limit=10)
    assert sorted(d.school_id for d in heads) == [1, 2]  # one head per lane

    calls: list[int] = []
    queue = dispatcher.queue
    original = queue.complete_batch

    async def counting(sid: str, batch: list[Completion], **options: Any) -> list[tuple[bool, float | None]]:
        calls.append(len(batch))
        return await original(sid, batch, **options)

    queue.complete_batch = counting  # type: ignore[method-assign]
    completer = Completer(queue, lambda: 0.0)
    results = await asyncio.gather(
        *(completer.complete(finished(subscription, d, "w", now)) for d in heads),
        completer.complete(finished(subscription, heads[0], "someone else", now)),  # its lease is not held
    )
    assert calls == [3]
    assert [held for held, _ in results] == [True, True, False]

    later = time.time()
    nexts = await queue.claim(subscription.id, now=later, lease_until=later + 30, token="w", limit=10)
    by_school = {e.event_id: e for e in events}
    assert sorted((d.school_id, by_school[d.event_id].sequence) for d in nexts) == [(1, 2), (2, 2)]
    logged = await queue.attempts(subscription.id, before=None, limit=10)
    assert len(logged) == 2


async def test_a_batch_is_capped_and_the_rest_follows(dispatcher_factory: Factory) -> None:
    dispatcher = dispatcher_factory()
    subscription = await dispatcher.store.create(url="http://127.0.0.1:9/hook", ordered=False)
    await dispatcher.fan_out(make_events(1, 10))
    now = time.time()
    claimed = await dispatcher.queue.claim(
        subscription.id, now=now, lease_until=now + 30, token="w", limit=10
    )
    completer = Completer(dispatcher.queue, lambda: 0.0, max_batch=4)
    results = await asyncio.gather(
        *(completer.complete(finished(subscription, d, "w", now)) for d in claimed)
    )
    assert all(held for held, _ in results) and len(results) == 10
    assert await dispatcher.redis.hlen(dispatcher.keys.deliveries(subscription.id)) == 0
    assert await dispatcher.redis.zcard(dispatcher.keys.due(subscription.id)) == 0
