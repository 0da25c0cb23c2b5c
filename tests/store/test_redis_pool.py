"""The store's connection pool (bridge/store/redis.py `_Pool`): a free connection is handed out at once,
with every connection in use a command waits for one, and a connection Redis closed is made again."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError

from bridge.store import redis as store_redis
from bridge.store.redis import connect
from bridge.testing.settings import fast_settings


@pytest.fixture
async def two_connections(redis_url: str, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[aioredis.Redis]:
    monkeypatch.setattr(store_redis, "MAX_CONNECTIONS", 2)
    client = connect(fast_settings(redis_url=redis_url))
    yield client
    await client.aclose()


async def test_commands_beyond_the_connections_wait_for_one_and_all_are_answered(
    two_connections: aioredis.Redis, redis: aioredis.Redis
) -> None:
    client = two_connections
    started = time.monotonic()
    # Each BLPOP holds its connection for 0.3 s (Redis itself stays free): six on two connections take three
    # turns; the PINGs among them wait for a connection as well.
    replies = await asyncio.gather(
        *(client.blpop([f"empty:{n}"], timeout=0.3) for n in range(6)), *(client.ping() for _ in range(4))
    )
    elapsed = time.monotonic() - started
    assert replies == [None] * 6 + [True] * 4
    assert elapsed >= 0.85, elapsed  # never more than two at once
    pool = client.connection_pool
    assert len(pool._available_connections) == 2 and not pool._in_use_connections  # type: ignore[attr-defined]
    clients = await redis.client_list()
    assert sum(1 for c in clients if c["cmd"] in ("blpop", "ping")) <= 2


async def test_a_connection_redis_closed_is_made_again(
    two_connections: aioredis.Redis, redis: aioredis.Redis
) -> None:
    client = two_connections
    pooled = await client.client_id()
    assert await redis.client_kill_filter(_id=pooled) == 1
    await asyncio.sleep(0.05)
    with contextlib.suppress(RedisConnectionError):  # the command that finds it closed fails, as in redis-py
        await client.ping()
    assert await client.ping() is True
    assert await client.client_id() != pooled
