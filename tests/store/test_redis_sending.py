"""The store's connections send under `asyncio.timeout` (bridge/store/redis.py `_Sending`): a task busy with
Redis commands ends on one cancellation, as any task does, and a Redis that stops reading makes a send a
`TimeoutError` after the socket timeout, the connection closed and the next command on a fresh one."""

from __future__ import annotations

import asyncio
import os
import random
import signal
import time
from typing import Any

import pytest
from redis.exceptions import TimeoutError as RedisTimeoutError

from bridge.store import redis as store_redis
from bridge.store.redis import connect
from bridge.testing.redis import redis_cluster
from bridge.testing.settings import fast_settings


async def test_one_cancellation_ends_a_task_busy_with_redis_commands(redis_url: str) -> None:
    """redis-py sends under `asyncio.wait_for`, which on Python 3.11 loses a cancellation that comes as the
    send completes: most of the thirty below, through a plain client."""
    client = connect(fast_settings(redis_url=redis_url))
    try:
        await _each_cancellation_ends_it(client)
    finally:
        await client.aclose()


async def test_the_same_on_a_redis_cluster() -> None:
    with redis_cluster() as url:
        client = connect(fast_settings(redis_url=url, redis_cluster=True))
        try:
            await _each_cancellation_ends_it(client)
        finally:
            await client.aclose()


async def _each_cancellation_ends_it(client: Any) -> None:
    rng = random.Random(11)
    for _ in range(30):

        async def busy() -> None:
            while True:
                await client.hlen("d6b:test:sending")

        task = asyncio.create_task(busy())
        await asyncio.sleep(rng.random() * 0.003)
        task.cancel()
        done, _ = await asyncio.wait({task}, timeout=5)
        assert done and task.cancelled()


async def test_a_send_to_a_redis_that_stops_reading_times_out(
    redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(store_redis, "SOCKET_TIMEOUT_SECONDS", 0.5)
    client = connect(fast_settings(redis_url=redis_url))
    pid = int((await client.info("server"))["process_id"])
    os.kill(pid, signal.SIGSTOP)  # the server reads nothing: the socket's buffers fill, the send waits
    try:
        began = time.monotonic()
        with pytest.raises(RedisTimeoutError, match="Timeout writing to socket"):
            await client.set("d6b:test:sending-big", b"x" * 64 * 1024 * 1024)
        assert time.monotonic() - began < 10
    finally:
        os.kill(pid, signal.SIGCONT)
    try:
        assert await client.ping()
    finally:
        await client.delete("d6b:test:sending-big")
        await client.aclose()
