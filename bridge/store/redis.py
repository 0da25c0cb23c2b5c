"""Connecting to the store: a real Redis, or the embedded `memory://` store for the demo."""

from __future__ import annotations

import redis.asyncio as aioredis

from bridge.settings import Settings

SOCKET_TIMEOUT_SECONDS = 5.0


def connect(settings: Settings) -> aioredis.Redis:
    """A client for `settings.redis_url`; `memory://` gives fakeredis (same commands, Lua included)."""
    if settings.uses_memory_store:
        import fakeredis

        return fakeredis.FakeAsyncRedis(decode_responses=False)
    return aioredis.Redis.from_url(
        settings.redis_url,
        socket_timeout=SOCKET_TIMEOUT_SECONDS,
        socket_connect_timeout=SOCKET_TIMEOUT_SECONDS,
        health_check_interval=30,
        decode_responses=False,
    )
