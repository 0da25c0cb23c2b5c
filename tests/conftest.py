"""Shared fixtures: a real Redis, the d6 simulator over real HTTP."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest
import redis.asyncio as aioredis

from tests.servers import ThreadedServer, redis_server


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """A Redis no one else uses: `BRIDGE_TEST_REDIS_URL`, or a redis-server started for this session."""
    configured = os.environ.get("BRIDGE_TEST_REDIS_URL")
    if configured:
        yield configured
        return
    with redis_server() as url:
        yield url


@pytest.fixture
async def redis(redis_url: str) -> AsyncIterator[aioredis.Redis]:
    """A client on the test Redis, flushed before each test."""
    client = aioredis.Redis.from_url(redis_url)
    await client.flushdb()
    try:
        yield client
    finally:
        await client.aclose()


class SimulatorHandle:
    """A running simulator: `base_url` is what the bridge points at, `url` the server root."""

    def __init__(self, server: ThreadedServer) -> None:
        self.server = server
        self.url = server.url
        self.base_url = f"{server.url}/api"
        self.control_url = f"{server.url}/_sim"


@pytest.fixture
def simulator_factory() -> Iterator[Callable[..., SimulatorHandle]]:
    """Start simulators with any `SimulatorConfig` fields; each is stopped after the test."""
    from bridge.simulator.app import SimulatorConfig, create_simulator_app

    servers: list[ThreadedServer] = []

    def start(**config: Any) -> SimulatorHandle:
        server = ThreadedServer(create_simulator_app(SimulatorConfig(**config)))
        server.__enter__()
        servers.append(server)
        return SimulatorHandle(server)

    yield start
    for server in servers:
        server.__exit__(None, None, None)


@pytest.fixture
def simulator(simulator_factory: Callable[..., SimulatorHandle]) -> SimulatorHandle:
    """A simulator with 3 schools of 120 learners and 90 debtors, seed 1, no churn."""
    return simulator_factory(schools=3, learners=120, debtors=90, seed=1)
