"""Shared fixtures: a real Redis, the d6 simulator over real HTTP, webhook receivers, the delivery parts."""

from __future__ import annotations

import asyncio
import faulthandler
import gc
import os
import sys
import threading
import urllib.parse
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest
import redis.asyncio as aioredis

from bridge.delivery.store import SubscriptionStore
from bridge.delivery.urls import UrlGuard
from bridge.settings import Settings
from bridge.store.keys import Keys
from bridge.store.redis import connect
from bridge.store.scripts import Scripts
from bridge.testing.receivers import Receiver, ReceiverServer, Script
from bridge.testing.redis import redis_server
from bridge.testing.servers import SimulatorServer
from bridge.testing.settings import fast_settings
from tests.delivery.parts import DeliveryParts

STUCK_AFTER_SECONDS = 150.0
"""A test still running after this long prints where every thread and every asyncio task stands
(pytest-timeout in pyproject.toml then fails it), so a hang shows its cause instead of using up the CI run."""


def _print_where_everything_stands() -> None:
    print("\n--- a test is still running: threads and asyncio tasks ---", file=sys.stderr)
    faulthandler.dump_traceback(file=sys.stderr, all_threads=True)
    for task in [o for o in gc.get_objects() if isinstance(o, asyncio.Task) and not o.done()]:
        print(f"\n{task!r}", file=sys.stderr)
        task.print_stack(file=sys.stderr)


@pytest.fixture(autouse=True)
def stuck_test_report() -> Iterator[None]:
    timer = threading.Timer(STUCK_AFTER_SECONDS, _print_where_everything_stands)
    timer.daemon = True
    timer.start()
    try:
        yield
    finally:
        timer.cancel()


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """A Redis no one else uses: `BRIDGE_TEST_REDIS_URL`, or a redis-server started for this session.

    Each test process (`pytest -n`) has a database of its own there: `gw1` the one after the URL's."""
    configured = os.environ.get("BRIDGE_TEST_REDIS_URL")
    if configured:
        worker = int(os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw"))
        url = urllib.parse.urlsplit(configured)
        database = int(url.path.strip("/") or 0) + worker
        yield urllib.parse.urlunsplit(url._replace(path=f"/{database}"))
        return
    with redis_server() as url:
        yield url


@pytest.fixture
async def redis(redis_url: str) -> AsyncIterator[aioredis.Redis]:
    """A client on the test Redis as the bridge makes one (bridge/store/redis.py `connect`: a task the test
    cancels while it sends commands ends, as the bridge's own do), flushed before each test."""
    client = connect(fast_settings(redis_url=redis_url))
    await client.flushdb()
    try:
        yield client
    finally:
        await client.aclose()


@pytest.fixture
def simulator_factory() -> Iterator[Callable[..., SimulatorServer]]:
    """Start simulators with any `SimulatorConfig` fields; each is stopped after the test."""
    servers: list[SimulatorServer] = []

    def start(**config: Any) -> SimulatorServer:
        server = SimulatorServer(**config)
        server.start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


@pytest.fixture
def simulator(simulator_factory: Callable[..., SimulatorServer]) -> SimulatorServer:
    """A simulator with 3 schools of 120 learners and 90 debtors, seed 1, no churn."""
    return simulator_factory(schools=3, learners=120, debtors=90, seed=1)


@pytest.fixture
def receiver_factory() -> Iterator[Callable[..., tuple[Receiver, str]]]:
    """Start recording receivers on loopback: returns (receiver, url)."""
    servers: list[ReceiverServer] = []

    def start(script: Script | None = None) -> tuple[Receiver, str]:
        server = ReceiverServer(Receiver(script))
        server.start()
        servers.append(server)
        return server.receiver, server.hook_url

    yield start
    for server in servers:
        server.stop()


@pytest.fixture
def store_factory(redis: aioredis.Redis) -> Callable[[Settings], SubscriptionStore]:
    def build(settings: Settings) -> SubscriptionStore:
        guard = UrlGuard(allow_private=settings.allow_private_urls)
        return SubscriptionStore(redis, Keys(settings.redis_prefix), guard, scripts=Scripts(redis))

    return build


@pytest.fixture
async def dispatcher_factory(
    redis: aioredis.Redis, store_factory: Callable[[Settings], SubscriptionStore]
) -> AsyncIterator[Callable[..., DeliveryParts]]:
    """Build delivery parts (tests/delivery/parts.py; worker not started); each is stopped after the test."""
    built: list[DeliveryParts] = []

    def build(settings: Settings | None = None, **kwargs: Any) -> DeliveryParts:
        settings = settings or fast_settings()
        kwargs.setdefault("poll_interval", 0.05)
        dispatcher = DeliveryParts(redis, settings, store_factory(settings), **kwargs)
        built.append(dispatcher)
        return dispatcher

    yield build
    for dispatcher in built:
        await dispatcher.stop(grace=1.0)
