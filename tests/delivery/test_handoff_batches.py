"""The hand-off's batches (bridge/delivery/handoff.py): a backlog is fanned out from a small first batch
up, so its first deliveries are queued before the rest is read; every event is queued once."""

from __future__ import annotations

from collections.abc import Callable

import redis.asyncio as aioredis

from bridge.delivery.handoff import BATCH, FIRST_BATCH, Handoff
from bridge.events.envelope import new_event
from bridge.events.outbox import Outbox
from bridge.sync.diff import diff
from bridge.sync.snapshot import SnapshotStore
from tests.delivery.parts import DeliveryParts

SCHOOL = 1000


async def test_a_backlog_is_fanned_out_from_a_small_first_batch_up(
    dispatcher_factory: Callable[..., DeliveryParts], redis: aioredis.Redis
) -> None:
    dispatcher = dispatcher_factory()
    store, keys = dispatcher.store, dispatcher.keys
    subscription = await store.create(url="http://127.0.0.1:9/hook")
    snapshots = SnapshotStore(redis, keys, store.scripts)
    backlog = FIRST_BATCH * 5 // 2
    records = [{"learner_id": n, "grade": "4"} for n in range(1, backlog + 1)]
    result = diff(await snapshots.load(SCHOOL, "learner"), records, "learner_id", {})
    events = [
        new_event(
            "learner.created", school_id=SCHOOL, resource="learner", resource_id=str(r["learner_id"]), data=r
        )
        for r in records
    ]
    await snapshots.commit(SCHOOL, "learner", result, events, token=None)
    await Outbox(redis, keys, store.scripts).publish(SCHOOL)
    handoff = Handoff(redis, keys, dispatcher.intake, dispatcher.queue, store, store.scripts)

    moved = [await handoff.step() for _ in range(3)]
    assert moved == [FIRST_BATCH, backlog - FIRST_BATCH, 0]  # the second asked for four times more
    assert await redis.hlen(keys.deliveries(subscription.id)) == backlog  # each queued once
    assert FIRST_BATCH * 4 <= BATCH
