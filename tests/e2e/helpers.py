"""A bridge (`Services`) wired to a real Redis and the simulator over HTTP, as `serve` wires it."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import httpx
import redis.asyncio as aioredis

from bridge.app import Services, create_app
from bridge.events.envelope import Event, decode_event
from bridge.settings import Settings, load_settings
from bridge.store.keys import Keys

TOKEN = "e2e-admin-token-0123456789"


def bridge_settings(redis_url: str, d6_base_url: str, **overrides: str) -> Settings:
    env = {
        "BRIDGE_REDIS_URL": redis_url,
        "BRIDGE_D6_BASE_URL": d6_base_url,
        "BRIDGE_D6_USERNAME": "sandbox",
        "BRIDGE_D6_PASSWORD": "sandbox",
        "BRIDGE_ADMIN_TOKEN": TOKEN,
        "BRIDGE_D6_MAX_RPS": "200",
        "BRIDGE_INTEGRATIONS_POLL_SECONDS": "1",
        "BRIDGE_SCHOOL_POLL_SECONDS": "2",
        "BRIDGE_POLL_JITTER_SECONDS": "0.2",
        "BRIDGE_ALLOW_PRIVATE_URLS": "true",
        "BRIDGE_RETRY_SCHEDULE": "0.2,0.5,1",
        "BRIDGE_LOG_LEVEL": "warning",
        **overrides,
    }
    return load_settings(env, isatty=False)


@asynccontextmanager
async def running_bridge(settings: Settings) -> AsyncIterator[Services]:
    services = Services.build(settings)
    await services.start()
    try:
        yield services
    finally:
        await services.stop(grace=2)


def api(services: Services) -> httpx.AsyncClient:
    """The bridge's HTTP API in this event loop (no lifespan: the services already run)."""
    app = create_app(services.settings, services)
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app),
        base_url="http://bridge.test",
        headers={"Authorization": f"Bearer {TOKEN}"},
    )


async def school_events(redis: aioredis.Redis, school_id: int, prefix: str = "d6b") -> list[Event]:
    """Every event the school's log holds, in sequence order."""
    entries = await redis.xrange(Keys(prefix).school_events(school_id))
    return [decode_event(fields[b"body"]) for _, fields in entries]


async def wait_for(
    check: Callable[[], Awaitable[Any]], limit: float = 20.0, interval: float = 0.1, what: str = ""
) -> Any:
    deadline = time.monotonic() + limit
    while True:
        value = await check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {limit} s waiting for {what or check}")
        await asyncio.sleep(interval)
