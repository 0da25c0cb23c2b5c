"""A poll that was running when Redis froze releases its school's lease as soon as Redis answers again,
instead of locking the school out for the rest of the lease TTL (60 s)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import httpx
import redis.asyncio as aioredis

from bridge.app import Services
from bridge.store.keys import Keys
from bridge.testing.redis import RedisServer
from bridge.testing.settings import bridge_settings

KEYS = Keys("d6b")


async def test_a_poll_interrupted_by_a_frozen_redis_releases_its_lease_when_redis_is_back(
    tmp_path: Path, simulator_factory: Any
) -> None:
    sim = simulator_factory(schools=1, learners=200, debtors=10, seed=21)
    server = RedisServer(tmp_path)
    server.start()
    client = aioredis.Redis.from_url(server.url, socket_timeout=1.0, socket_connect_timeout=1.0)
    services = Services.build(bridge_settings(server.url, sim.base_url), redis=client)
    try:
        # Every d6 page takes 0.3 s, so the poll is mid-scan when Redis freezes.
        await _post(sim.control_url + "/faults", {"latency_ms": 300})
        poll = asyncio.create_task(services.poller.poll(1000, force=True))
        await asyncio.sleep(0.5)
        assert await client.exists(KEYS.lease(1000)), "the poll holds the school's lease"
        server.pause()
        # The poll gives up on the frozen Redis (the scheduler's worker logs the Redis error it raises).
        (outcome,) = await asyncio.wait_for(asyncio.gather(poll, return_exceptions=True), 20)
        assert isinstance(outcome, Exception), outcome
        await asyncio.sleep(1.0)
        server.resume()
        resumed = time.monotonic()
        while await client.exists(KEYS.lease(1000)):
            assert time.monotonic() - resumed < 5, "the lease is still held 5 s after Redis came back"
            await asyncio.sleep(0.05)
        # The school can be polled at once by anyone.
        await _post(sim.control_url + "/faults", {})
        assert await services.poller.poll(1000, force=True) == "ok"
    finally:
        server.resume()
        await services.poller.aclose()
        await services.d6.aclose()
        await client.aclose()
        server.stop()


async def _post(url: str, body: dict[str, Any]) -> None:
    async with httpx.AsyncClient() as http:
        (await http.post(url, json=body)).raise_for_status()
