"""A deleted subscription leaves no key behind: not when a fan-out on another replica read the
subscription list just before the delete, and not after a crash half-way through a delete."""

from __future__ import annotations

from collections.abc import Callable
from typing import cast

import pytest
import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster

from bridge.delivery.store import Current, SubscriptionStore
from bridge.delivery.urls import UrlGuard
from bridge.settings import Settings
from bridge.store.codec import as_text
from bridge.store.keys import Keys
from bridge.store.scripts import Scripts
from bridge.testing.events import make_events
from bridge.testing.receivers import Receiver
from bridge.testing.redis import redis_cluster
from bridge.testing.settings import fast_settings
from bridge.testing.waiting import wait_for
from tests.delivery.parts import DeliveryParts

Factory = Callable[..., DeliveryParts]
Receivers = Callable[..., tuple[Receiver, str]]
Stores = Callable[[Settings], SubscriptionStore]


async def keys_of(redis: aioredis.Redis, subscription_id: str) -> list[str]:
    found = await redis.keys(f"d6b:{{sub:{subscription_id}}}:*")
    return sorted(as_text(k) for k in found)


@pytest.mark.parametrize("ordered", [True, False])
@pytest.mark.parametrize("erasing", [False, True])
async def test_a_delete_between_reading_the_list_and_enqueueing_leaves_no_key(
    dispatcher_factory: Factory, store_factory: Stores, redis: aioredis.Redis, ordered: bool, erasing: bool
) -> None:
    settings = fast_settings()
    dispatcher = dispatcher_factory(settings)
    elsewhere = store_factory(settings)  # another replica's store, deleting through its own API path
    subscription = await dispatcher.store.create(url="http://127.0.0.1:9/hook", ordered=ordered)
    events = make_events(1000, 3) + make_events(1001, 2)
    read_list = dispatcher.store.current

    async def read_then_deleted_elsewhere() -> Current:
        current = await read_list()
        assert [s.id for s in current.subscriptions] == [subscription.id]
        await elsewhere.delete(subscription.id)
        if erasing:  # the fan-out records the erased events as skipped instead (its other script)
            return Current(subscriptions=current.subscriptions, erasing=frozenset(e.event_id for e in events))
        return current

    dispatcher.store.current = read_then_deleted_elsewhere  # type: ignore[method-assign]
    assert await dispatcher.fan_out(events) == 0
    assert await keys_of(redis, subscription.id) == []
    assert await elsewhere.list_all() == []


async def test_maintenance_sweeps_what_a_crash_left(
    dispatcher_factory: Factory, receiver_factory: Receivers, redis: aioredis.Redis
) -> None:
    receiver, url = receiver_factory()
    dispatcher = dispatcher_factory()
    store = dispatcher.store
    kept = await store.create(url=url)
    half_deleted = await store.create(url="http://127.0.0.1:9/hook")
    orphaned = await store.create(url="http://127.0.0.1:9/hook", ordered=False)
    await store.update(half_deleted.id, {"enabled": False})
    await store.update(orphaned.id, {"enabled": False})
    assert await dispatcher.fan_out(make_events(1000, 3) + make_events(1001, 2)) == 15
    for gone in (half_deleted, orphaned):
        assert any(k.endswith(":lane:1001") or k.endswith(":due") for k in await keys_of(redis, gone.id))
    # A delete that died after removing the record (the enqueue scripts refuse the subscription from then
    # on); and what the fan-out race left before the scripts checked: queue keys, no record, no index entry.
    await redis.delete(store.keys.subscription(half_deleted.id))
    await redis.delete(store.keys.subscription(orphaned.id))
    await redis.srem(store.keys.subscription_index(), orphaned.id)
    await redis.incr(store.keys.subscriptions_version())

    await dispatcher.start()  # its first tick runs the maintenance

    async def swept() -> bool:
        return not await keys_of(redis, half_deleted.id) and not await keys_of(redis, orphaned.id)

    await wait_for(swept, what="the orphaned keys swept")
    assert not await redis.sismember(store.keys.subscription_index(), half_deleted.id)
    await wait_for(lambda: len(receiver.received) == 5, what="the kept subscription's 5 deliveries")
    assert store.keys.subscription(kept.id) in await keys_of(redis, kept.id)
    assert [s.id for s in await store.list_all()] == [kept.id]


async def test_an_index_entry_without_record_goes_at_the_second_sweep(
    store: SubscriptionStore, redis: aioredis.Redis
) -> None:
    # A delete that died after removing every key but the index entry; on Redis Cluster the same picture
    # is a subscription being created (its index entry may land before its record), so one sweep waits.
    index = store.keys.subscription_index()
    await redis.sadd(index, "sub_gone")
    assert await store.sweep() == []
    assert await redis.sismember(index, "sub_gone")
    assert await store.sweep() == ["sub_gone"]
    assert not await redis.sismember(index, "sub_gone")


async def test_the_sweep_finds_orphans_on_every_node_of_a_cluster() -> None:
    with redis_cluster() as url:
        client = RedisCluster.from_url(url)
        try:
            redis = cast(aioredis.Redis, client)
            store = SubscriptionStore(redis, Keys(), UrlGuard(allow_private=True), scripts=Scripts(redis))
            dispatcher = DeliveryParts(redis, fast_settings(), store)
            created = [await store.create(url="http://127.0.0.1:9/hook") for _ in range(12)]
            assert await dispatcher.fan_out(make_events(1000, 2)) == 24
            crashed = created[::2]  # their ids hash to slots on every node, most likely
            for subscription in crashed:
                await redis.delete(store.keys.subscription(subscription.id))
            assert await store.sweep() == sorted(s.id for s in crashed)
            left = {as_text(k) async for k in redis.scan_iter(match="d6b:{sub:*")}
            assert {store.keys.subscription_of(k) for k in left} == {s.id for s in created[1::2]}
        finally:
            await client.aclose()
