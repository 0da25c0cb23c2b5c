"""The subscription store and queue edges that the API tests don't reach."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import msgspec
import pytest
import redis.asyncio as aioredis

from bridge.delivery.models import Attempt, UnknownSubscription, encode_attempt
from bridge.delivery.store import SubscriptionStore
from bridge.testing.events import make_events
from bridge.testing.receivers import Answer, Receiver
from bridge.testing.waiting import wait_for
from tests.delivery.parts import DeliveryParts


async def test_disable_after_delete_does_not_resurrect(
    store: SubscriptionStore, redis: aioredis.Redis
) -> None:
    subscription = await store.create(url="http://127.0.0.1/x")
    await store.delete(subscription.id)
    await store.disable(subscription.id, "late 410")
    assert await store.find(subscription.id) is None
    with pytest.raises(UnknownSubscription):
        await store.update(subscription.id, {"enabled": True})
    assert await redis.keys("*sub_*") == []


async def test_delete_removes_queue_and_keys(
    dispatcher_factory: Callable[..., DeliveryParts], redis: aioredis.Redis
) -> None:
    dispatcher = dispatcher_factory()
    subscription = await dispatcher.store.create(url="http://127.0.0.1:9/x")
    await dispatcher.fan_out(make_events(1, 3) + make_events(2, 2))
    assert await dispatcher.store.counts(subscription.id) == (5, 0)
    assert all(
        b"{sub:" + subscription.id.encode() + b"}" in k for k in await redis.keys(f"*{subscription.id}*")
    )
    await dispatcher.store.delete(subscription.id)
    assert await redis.keys(f"*{subscription.id}*") == []


async def test_graceful_stop_hands_work_back_at_once(
    dispatcher_factory: Callable[..., DeliveryParts], receiver_factory: Callable[..., tuple[Receiver, str]]
) -> None:
    receiver, url = receiver_factory(lambda _r, n: Answer(delay=5.0) if n == 1 else Answer())
    first = dispatcher_factory(lease_seconds=60)
    subscription = await first.store.create(url=url)
    events = make_events(1, 2)
    await first.fan_out(events)
    await first.start()
    await wait_for(lambda: len(receiver.received) == 1)
    await first.stop(grace=0.1)
    assert not first.running
    second = dispatcher_factory(lease_seconds=60)
    await second.start()
    # Without the hand-back this would wait for the 60 s lease.
    await wait_for(lambda: len(receiver.received) == 3, timeout=5)
    assert receiver.ids() == [events[0].event_id, events[0].event_id, events[1].event_id]
    assert second.running
    assert await second.store.counts(subscription.id) in ((0, 0), (1, 0))


async def test_attempt_log_reads_entries_of_both_encodings(
    dispatcher_factory: Callable[..., DeliveryParts], redis: aioredis.Redis
) -> None:
    """Entries are msgpack arrays now; those a store kept from before (JSON objects) still read."""
    dispatcher = dispatcher_factory()
    subscription = await dispatcher.store.create(url="http://127.0.0.1/x")
    shared: dict[str, Any] = {
        "delivery_id": "dlv_1",
        "event_id": "evt_1",
        "event_type": "learner.updated",
        "school_id": 7,
        "duration_ms": 1.5,
    }
    old = Attempt(at=100.0, attempt=1, outcome="retry", status_code=500, **shared)
    new = Attempt(at=200.0, attempt=2, outcome="ok", status_code=200, response_body="ok", **shared)
    legacy = json.dumps(msgspec.structs.asdict(old)).encode()
    await redis.zadd(dispatcher.keys.attempts(subscription.id), {legacy: old.at, encode_attempt(new): new.at})

    assert await dispatcher.attempts(subscription.id, before=None, limit=10) == [new, old]
    assert len(encode_attempt(new)) < len(msgspec.json.encode(msgspec.structs.asdict(new))) / 2
