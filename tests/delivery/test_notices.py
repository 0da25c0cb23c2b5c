"""Notices (bridge/delivery/feed.py): pull readers are woken on every replica; delivery workers only by the
notices of a process with no worker of its own (the hand-off process), and then on every replica."""

from __future__ import annotations

import asyncio

import redis.asyncio as aioredis

from bridge.delivery.feed import Notices
from bridge.store.keys import Keys

KEYS = Keys("d6b")


async def _notices(redis: aioredis.Redis) -> list[dict[bytes, bytes]]:
    return [fields for _id, fields in await redis.xrange(KEYS.feed_notices())]


async def test_a_process_with_a_worker_beside_it_tells_pull_readers_only(redis: aioredis.Redis) -> None:
    notices = Notices(redis, KEYS)
    await notices.publish([], pushed=True)  # webhooks queued: its own worker was woken directly
    assert await _notices(redis) == []
    await notices.publish(["sub_b", "sub_a", "sub_b"], pushed=True)
    assert await _notices(redis) == [{b"s": b"sub_a,sub_b"}]


async def test_the_handoff_process_wakes_the_worker_of_every_replica(redis: aioredis.Redis) -> None:
    woken: list[asyncio.Event] = [asyncio.Event(), asyncio.Event()]
    replicas = [Notices(redis, KEYS, on_pushed=event.set) for event in woken]
    for replica in replicas:
        replica.start()
    handoff = Notices(redis, KEYS, announce_pushed=True)
    try:
        await asyncio.sleep(0.2)  # each listener reads from the newest notice on: let both begin
        with replicas[0].watch("sub_a") as reader:
            await handoff.publish(["sub_a"])  # a pull subscription's deliveries alone: no worker is woken
            await asyncio.wait_for(reader.wait(), 5)
        assert not any(event.is_set() for event in woken)
        await handoff.publish([], pushed=True)
        await asyncio.wait_for(asyncio.gather(*(event.wait() for event in woken)), 5)
        assert await _notices(redis) == [{b"s": b"sub_a"}, {b"s": b"", b"p": b"1"}]
    finally:
        for replica in replicas:
            await replica.stop()


async def test_a_notice_published_before_the_listener_s_first_blocking_read_still_wakes_the_reader(
    redis_url: str, redis: aioredis.Redis
) -> None:
    """A replica's first reader awaits `listening` before it reads its feed: a notice another replica
    publishes after that read and before this replica's first blocking read (late here by 0.3 s) wakes it."""
    await redis.xadd(KEYS.feed_notices(), {"s": "sub_old"})  # the stream has a history
    own = aioredis.from_url(redis_url)
    xread = own.xread

    async def late(*args: object, **kwargs: object) -> object:
        await asyncio.sleep(0.3)
        return await xread(*args, **kwargs)  # type: ignore[arg-type]

    own.xread = late  # type: ignore[method-assign]
    replica, other = Notices(own, KEYS), Notices(redis, KEYS)
    try:
        await replica.listening()
        with replica.watch("sub_a") as reader:
            await other.publish(["sub_a"])  # after the reader's read, before the listener reads
            await asyncio.wait_for(reader.wait(), 2)
    finally:
        await replica.stop()
        await own.aclose()
