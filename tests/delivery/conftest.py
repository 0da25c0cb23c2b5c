"""Fixtures for delivery tests: settings with a short retry schedule, stores, dispatchers, receivers."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest
import redis.asyncio as aioredis

from bridge.delivery.dispatcher import Dispatcher
from bridge.delivery.keys import DeliveryKeys
from bridge.delivery.store import SubscriptionStore
from bridge.delivery.urls import UrlGuard
from bridge.settings import Settings
from tests.delivery.helpers import Receiver
from tests.servers import ThreadedServer

FAST = {
    "allow_private_urls": True,
    "retry_schedule": (0.05, 0.1),
    "delivery_timeout_seconds": 2.0,
    "delivery_concurrency": 16,
    "admin_token": "test-admin-token",
}


def fast_settings(**overrides: Any) -> Settings:
    return Settings(**{**FAST, **overrides})


@pytest.fixture
def settings() -> Settings:
    return fast_settings()


@pytest.fixture
def store_factory(redis: aioredis.Redis) -> Callable[[Settings], SubscriptionStore]:
    def build(settings: Settings) -> SubscriptionStore:
        guard = UrlGuard(allow_private=settings.allow_private_urls)
        return SubscriptionStore(redis, DeliveryKeys(settings.redis_prefix), guard)

    return build


@pytest.fixture
def store(store_factory: Callable[[Settings], SubscriptionStore], settings: Settings) -> SubscriptionStore:
    return store_factory(settings)


@pytest.fixture
async def dispatcher_factory(
    redis: aioredis.Redis, store_factory: Callable[[Settings], SubscriptionStore]
) -> AsyncIterator[Callable[..., Dispatcher]]:
    """Build dispatchers (not started); every one is stopped after the test."""
    built: list[Dispatcher] = []

    def build(settings: Settings | None = None, **kwargs: Any) -> Dispatcher:
        settings = settings or fast_settings()
        kwargs.setdefault("poll_interval", 0.05)
        dispatcher = Dispatcher(redis, settings, store_factory(settings), **kwargs)
        built.append(dispatcher)
        return dispatcher

    yield build
    for dispatcher in built:
        await dispatcher.stop(grace=1.0)


@pytest.fixture
def receiver_factory() -> Iterator[Callable[..., tuple[Receiver, str]]]:
    """Start recording receivers on loopback: returns (receiver, url)."""
    servers: list[ThreadedServer] = []

    def start(script: Any = None) -> tuple[Receiver, str]:
        receiver = Receiver(script)
        server = ThreadedServer(receiver)
        server.__enter__()
        servers.append(server)
        return receiver, f"{server.url}/hook"

    yield start
    for server in servers:
        server.__exit__(None, None, None)
