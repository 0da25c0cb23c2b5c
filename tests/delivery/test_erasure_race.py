"""An erasure racing a fan-out (bridge/delivery/erasure.py): a hand-off that read an event before the
erasure began, and queues it only after the erasure finished and its journal entry was forgotten, must
not leave the record's data waiting for a subscriber (a disabled one here), nor send it later.

The steps are interleaved by hand: the hand-off is held just before it queues (after it read the event
and the erasure journal), the whole erasure runs, the journal's guard ends, then the hand-off goes on."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import msgspec
import redis.asyncio as aioredis

from bridge.delivery.erasure import KEEP_DONE_SECONDS, Eraser
from bridge.delivery.handoff import Handoff
from bridge.delivery.models import Delivery
from bridge.delivery.resync import Resyncs
from bridge.events.envelope import new_event
from bridge.events.log import EventLog
from bridge.events.outbox import Outbox
from bridge.store.codec import as_bytes
from bridge.sync.diff import diff
from bridge.sync.snapshot import SnapshotStore
from bridge.testing.receivers import Receiver
from bridge.testing.waiting import wait_for
from tests.delivery.parts import DeliveryParts

SCHOOL = 1000
MARKER = "8801015009087"


async def _commit(snapshots: SnapshotStore, learner_id: int, **data: Any) -> None:
    record = {"learner_id": learner_id, **data}
    previous = await snapshots.load(SCHOOL, "learner")
    result = diff(
        previous, [*(await snapshots.all_records(SCHOOL, "learner")).values(), record], "learner_id", {}
    )
    event = new_event(
        "learner.created", school_id=SCHOOL, resource="learner", resource_id=str(learner_id), data=record
    )
    await snapshots.commit(SCHOOL, "learner", result, [event], token=None)


async def test_a_fan_out_that_read_before_an_erasure_queues_nothing_of_it_after(
    dispatcher_factory: Callable[..., DeliveryParts],
    receiver_factory: Callable[..., tuple[Receiver, str]],
    redis: aioredis.Redis,
) -> None:
    receiver, url = receiver_factory()
    dispatcher = dispatcher_factory()
    store, keys = dispatcher.store, dispatcher.keys
    subscription = await store.create(url=url)
    await store.update(subscription.id, {"enabled": False})
    snapshots = SnapshotStore(redis, keys, store.scripts)
    outbox, events = Outbox(redis, keys, store.scripts), EventLog(redis, keys)
    eraser = Eraser(redis, keys, snapshots=snapshots, events=events, outbox=outbox, subscriptions=store)
    handoff = Handoff(redis, keys, dispatcher.intake, dispatcher.queue, store, store.scripts)

    await _commit(snapshots, 5, id_number=MARKER)
    await outbox.publish(SCHOOL)

    reached, release = asyncio.Event(), asyncio.Event()
    enqueue_all = dispatcher.intake._enqueue_all

    async def held(work: Any, **options: Any) -> list[int]:
        reached.set()
        await release.wait()
        return await enqueue_all(work, **options)

    dispatcher.intake._enqueue_all = held  # type: ignore[method-assign]
    step = asyncio.create_task(handoff.step())
    await asyncio.wait_for(reached.wait(), 10)  # it read the event and the (empty) journal

    erased = await eraser.erase(SCHOOL, "learner", "5")
    assert erased.events == 1
    await eraser.resume(now=time.time() + KEEP_DONE_SECONDS + 1)  # the journal's guard is over
    release.set()
    assert await step == 1
    dispatcher.intake._enqueue_all = enqueue_all  # type: ignore[method-assign]

    waiting = await redis.hvals(keys.deliveries(subscription.id))
    assert not any(MARKER.encode() in raw for raw in waiting)

    # enabled again, it gets what came later, and nothing of the erased record
    await _commit(snapshots, 6, id_number="later")
    await outbox.publish(SCHOOL)
    assert await handoff.step() == 1
    await store.update(subscription.id, {"enabled": True})
    await dispatcher.start()
    await wait_for(lambda: any(b"later" in r.body for r in receiver.received), what="the later event")
    assert not any(MARKER.encode() in r.body for r in receiver.received)


async def test_a_resync_chunk_read_before_an_erasure_is_dropped_once_queued(
    dispatcher_factory: Callable[..., DeliveryParts], redis: aioredis.Redis
) -> None:
    """A resync reads a chunk of records, an erasure of one of them runs whole (finding no snapshot delivery
    queued yet), then the chunk is queued: the erased record's snapshot delivery is dropped at once, the
    others stay (bridge/delivery/resync.py)."""
    dispatcher = dispatcher_factory()
    store, keys = dispatcher.store, dispatcher.keys
    subscription = await store.create(url="http://127.0.0.1:9/hook")
    await store.update(subscription.id, {"enabled": False})
    snapshots = SnapshotStore(redis, keys, store.scripts)
    outbox, events = Outbox(redis, keys, store.scripts), EventLog(redis, keys)
    eraser = Eraser(redis, keys, snapshots=snapshots, events=events, outbox=outbox, subscriptions=store)
    for learner_id, marker in ((5, MARKER), (6, "other"), (7, "third")):
        await _commit(snapshots, learner_id, id_number=marker)
    await outbox.publish(SCHOOL)
    resyncs = Resyncs(
        redis, keys, snapshots, dispatcher.queue, store, dispatcher.settings, on_queued=lambda: None
    )
    subscription = await store.get(subscription.id)
    assert subscription is not None
    read_records = snapshots.read_records
    erasures: list[int] = []

    async def then_erased(*args: Any, **options: Any) -> Any:
        page = await read_records(*args, **options)
        if any(row.resource_id == "5" and row.data is not None for row in page.rows):
            erasures.append((await eraser.erase(SCHOOL, "learner", "5")).deliveries)
        return page

    snapshots.read_records = then_erased  # type: ignore[method-assign]
    await resyncs.start(subscription, [SCHOOL], ["learner"])
    while await resyncs.step():
        pass
    assert erasures == [0]  # the erasure ran between the read and the queuing, and found nothing queued
    queued = [
        msgspec.msgpack.decode(as_bytes(raw), type=Delivery)
        for raw in await redis.hvals(keys.deliveries(subscription.id))
    ]
    told = [msgspec.json.decode(d.body) for d in queued if d.event_type == "learner.snapshot"]
    assert sorted(b["resource_id"] for b in told) == ["6", "7"]
    assert not any(MARKER.encode() in d.body for d in queued)


async def test_a_resync_snapshot_queued_after_an_erasure_is_not_sent_before_it_is_dropped(
    dispatcher_factory: Callable[..., DeliveryParts],
    receiver_factory: Callable[..., tuple[Receiver, str]],
    redis: aioredis.Redis,
) -> None:
    """The same race with a worker sending: between the chunk's queuing and the resync's check that drops
    the erased record's snapshot (held back a second here, as a stalled process would), the worker does not
    send it: a record under erasure is named in what every sender reads (the erasure journal)."""
    receiver, url = receiver_factory()
    dispatcher = dispatcher_factory()
    store, keys = dispatcher.store, dispatcher.keys
    subscription = await store.create(url=url, ordered=False)
    snapshots = SnapshotStore(redis, keys, store.scripts)
    outbox, events = Outbox(redis, keys, store.scripts), EventLog(redis, keys)
    eraser = Eraser(redis, keys, snapshots=snapshots, events=events, outbox=outbox, subscriptions=store)
    for learner_id, marker in ((5, MARKER), (6, "other")):
        await _commit(snapshots, learner_id, id_number=marker)
    await outbox.publish(SCHOOL)
    resyncs = Resyncs(
        redis, keys, snapshots, dispatcher.queue, store, dispatcher.settings, on_queued=dispatcher.wake
    )
    subscription = await store.get(subscription.id)
    read_records = snapshots.read_records
    erased: list[int] = []

    async def then_erased(*args: Any, **options: Any) -> Any:
        page = await read_records(*args, **options)
        if any(row.resource_id == "5" and row.data is not None for row in page.rows):
            erased.append((await eraser.erase(SCHOOL, "learner", "5")).events)
        return page

    snapshots.read_records = then_erased  # type: ignore[method-assign]
    recheck = resyncs._recheck_erased

    async def stalled(*args: Any) -> None:
        await asyncio.sleep(1.0)
        await recheck(*args)

    resyncs._recheck_erased = stalled  # type: ignore[method-assign]
    await dispatcher.start()
    await resyncs.start(subscription, [SCHOOL], ["learner"])
    for _ in range(50):
        await resyncs.step()
        await asyncio.sleep(0.1)
        if any(b"resync.completed" in r.body for r in receiver.received):
            break
    assert erased == [1]
    snapshots_sent = [r.body for r in receiver.received if b"learner.snapshot" in r.body]
    assert snapshots_sent and not any(MARKER.encode() in body for body in snapshots_sent)


async def test_a_resync_s_markers_queued_before_a_subscription_left_the_school_are_not_sent(
    dispatcher_factory: Callable[..., DeliveryParts],
    receiver_factory: Callable[..., tuple[Receiver, str]],
    redis: aioredis.Redis,
) -> None:
    """Markers are queued never to be cut again, but every send follows the subscription as it is: one whose
    `school_ids` no longer hold the school gets neither the school's snapshots nor its markers."""
    receiver, url = receiver_factory()
    dispatcher = dispatcher_factory()
    store, keys = dispatcher.store, dispatcher.keys
    subscription = await store.create(url=url, ordered=True)
    await store.update(subscription.id, {"enabled": False})
    snapshots = SnapshotStore(redis, keys, store.scripts)
    await _commit(snapshots, 5, id_number="other")
    await Outbox(redis, keys, store.scripts).publish(SCHOOL)
    resyncs = Resyncs(
        redis, keys, snapshots, dispatcher.queue, store, dispatcher.settings, on_queued=lambda: None
    )
    await resyncs.start(await store.get(subscription.id), [SCHOOL], ["learner"])
    while await resyncs.step():
        pass
    queued = await redis.hvals(keys.deliveries(subscription.id))
    assert any(b"resync.started" in raw for raw in queued) and any(
        b"resync.completed" in raw for raw in queued
    )
    await store.update(subscription.id, {"school_ids": [SCHOOL + 1], "enabled": True})
    await dispatcher.start()
    await wait_for(
        lambda: _drained(redis, keys.deliveries(subscription.id)), timeout=10, what="the queue dropped"
    )
    assert [r.body for r in receiver.received if b'"school_id":' + str(SCHOOL).encode() in r.body] == []


async def _drained(redis: aioredis.Redis, key: str) -> bool:
    return not await redis.hlen(key)
