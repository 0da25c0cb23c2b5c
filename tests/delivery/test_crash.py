"""Several dispatchers on one Redis: no double delivery without a crash, nothing lost with one."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest

from bridge.delivery import worker as worker_module
from bridge.testing.events import make_events
from bridge.testing.receivers import Answer, Receiver
from bridge.testing.settings import fast_settings
from bridge.testing.waiting import wait_for
from tests.delivery.parts import DeliveryParts

Factory = Callable[..., DeliveryParts]
Receivers = Callable[..., tuple[Receiver, str]]


async def test_two_dispatchers_deliver_each_event_once(
    dispatcher_factory: Factory, receiver_factory: Receivers
) -> None:
    receiver, url = receiver_factory(lambda _r, _n: Answer(delay=0.005))
    first, second = dispatcher_factory(), dispatcher_factory()
    await first.store.create(url=url)
    await first.store.create(url=url, ordered=False)
    events = [e for school in range(1, 11) for e in make_events(school, 15)]
    await first.start()
    await second.start()
    half = len(events) // 2
    await asyncio.gather(first.fan_out(events[:half]), second.fan_out(events[half:]))
    await wait_for(lambda: len(receiver.received) >= 2 * len(events), timeout=20, what="300 deliveries")
    await asyncio.sleep(0.3)
    counts = Counter(receiver.ids())
    assert len(receiver.received) == 2 * len(events)
    assert set(counts.values()) == {2}  # once per subscription
    # Both processes took part.
    assert first.queue is not second.queue


async def test_killed_dispatcher_work_is_finished_by_another_after_the_lease(
    dispatcher_factory: Factory, receiver_factory: Receivers
) -> None:
    receiver, url = receiver_factory(lambda _r, _n: Answer(delay=0.3))
    settings = fast_settings(delivery_timeout_seconds=1.0)
    victim = dispatcher_factory(settings, lease_seconds=1.5)
    subscription = await victim.store.create(url=url)
    events = [e for school in (1, 2, 3) for e in make_events(school, 4)]
    await victim.fan_out(events)
    await victim.start()
    await wait_for(lambda: len(receiver.received) >= 3, what="deliveries in flight")
    # kill -9: cancel everything, no release of leases, no bookkeeping.
    assert victim.worker._loop_task is not None
    victim.worker._loop_task.cancel()
    for task in [*victim.worker._slots, *victim.worker._failing]:
        task.cancel()
    await asyncio.sleep(0)
    leased = await victim.redis.hlen(victim.keys.leases(subscription.id))
    assert leased >= 1  # work was abandoned mid-flight

    rescuer = dispatcher_factory(settings, lease_seconds=1.5)
    await rescuer.start()
    await asyncio.sleep(0.5)
    before_expiry = set(receiver.ids())
    await wait_for(
        lambda: {e.event_id for e in events} <= set(receiver.ids()), timeout=15, what="every event"
    )
    # The abandoned ones were not retaken before their lease ended.
    assert len(before_expiry) < len(events)
    # Order per school still holds for first arrivals.
    for school in (1, 2, 3):
        firsts: list[int] = []
        for body in receiver.bodies():
            if body["school_id"] == school and body["sequence"] not in firsts:
                firsts.append(body["sequence"])
        assert firsts == [1, 2, 3, 4]

    async def drained() -> bool:
        return await rescuer.store.counts(subscription.id) == (0, 0)

    await wait_for(drained, what="an empty queue")


async def test_deliveries_that_wait_too_long_for_a_slot_are_handed_back_and_sent_once(
    dispatcher_factory: Factory, receiver_factory: Receivers, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Claimed ahead of a slot, a delivery that waits past `READY_SECONDS` goes back to the queue unsent
    (its lease may no longer cover an attempt); it is claimed again, and every event arrives once."""
    monkeypatch.setattr(worker_module, "READY_SECONDS", 0.05)
    receiver, url = receiver_factory(lambda _r, _n: Answer(delay=0.1))
    dispatcher = dispatcher_factory(fast_settings(delivery_concurrency=1))
    subscription = await dispatcher.store.create(url=url, ordered=False)
    events = make_events(1, 6)
    await dispatcher.fan_out(events)
    released: list[str] = []
    release = dispatcher.queue.release

    async def counting(subscription_id: str, delivery_id: str, **options: Any) -> None:
        released.append(delivery_id)
        await release(subscription_id, delivery_id, **options)

    monkeypatch.setattr(dispatcher.queue, "release", counting)
    await dispatcher.start()
    await wait_for(lambda: len(receiver.received) >= len(events), timeout=15, what="every event")
    await dispatcher.stop()
    assert released  # one slot, six claimed: some waited 0.1 s and more
    assert sorted(receiver.ids()) == sorted(e.event_id for e in events)  # each once
    assert await dispatcher.redis.hlen(dispatcher.keys.deliveries(subscription.id)) == 0
