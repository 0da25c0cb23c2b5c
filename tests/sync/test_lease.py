from __future__ import annotations

import asyncio

import redis.asyncio as aioredis

from bridge.store.keys import Keys
from bridge.store.scripts import Scripts
from bridge.sync.lease import Lease

KEYS = Keys("d6b")


async def test_acquire_is_exclusive_and_tokens_grow(redis: aioredis.Redis) -> None:
    lease = Lease(redis, KEYS, Scripts(redis))
    first = await lease.acquire(1000, "replica-a", 30)
    assert first is not None
    assert await lease.acquire(1000, "replica-b", 30) is None
    assert await lease.holder(1000) == (first, "replica-a")
    other_school = await lease.acquire(1001, "replica-b", 30)
    assert other_school is not None
    assert await lease.release(1000, first)
    assert await lease.holder(1000) is None
    second = await lease.acquire(1000, "replica-b", 30)
    assert second is not None and second > first


async def test_renew_and_release_need_the_current_token(redis: aioredis.Redis) -> None:
    lease = Lease(redis, KEYS, Scripts(redis))
    token = await lease.acquire(1, "a", 30)
    assert token is not None
    assert not await lease.renew(1, token + 1, 30)
    assert not await lease.release(1, token + 1)
    assert await lease.renew(1, token, 60)
    assert 59_000 < await redis.pttl(KEYS.lease(1)) <= 60_000
    assert await lease.release(1, token)
    assert not await lease.renew(1, token, 30)


async def test_lease_expires_and_the_old_token_is_fenced_off(redis: aioredis.Redis) -> None:
    lease = Lease(redis, KEYS, Scripts(redis))
    old = await lease.acquire(1, "slow", 0.05)
    assert old is not None
    await asyncio.sleep(0.1)
    new = await lease.acquire(1, "fast", 30)
    assert new is not None and new > old
    assert not await lease.renew(1, old, 30)  # the stalled holder wakes up: refused
    assert not await lease.release(1, old)
    assert await lease.holder(1) == (new, "fast")


async def test_lease_names_are_independent_but_share_the_counter(redis: aioredis.Redis) -> None:
    scripts = Scripts(redis)
    poll, integration = Lease(redis, KEYS, scripts), Lease(redis, KEYS, scripts, name="integration")
    a = await poll.acquire(1, "x", 30)
    b = await integration.acquire(1, "y", 30)
    assert a is not None and b is not None and b > a
