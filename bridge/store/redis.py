"""Connecting to the store: a real Redis, or the embedded `memory://` store for the demo."""

from __future__ import annotations

from typing import cast

import redis.asyncio as aioredis

from bridge.settings import Settings

SOCKET_TIMEOUT_SECONDS = 5.0
MAX_CONNECTIONS = 100
"""Connections one process opens to Redis at most; one more request waits (up to the socket timeout)."""


def connect(settings: Settings) -> aioredis.Redis:
    """A client for `settings.redis_url`; `memory://` gives fakeredis (same commands, Lua included)."""
    if settings.uses_memory_store:
        import fakeredis

        return fakeredis.FakeAsyncRedis(decode_responses=False)
    if settings.redis_cluster:
        from redis.asyncio.cluster import RedisCluster

        cluster = RedisCluster.from_url(
            settings.redis_url,
            socket_timeout=SOCKET_TIMEOUT_SECONDS,
            socket_connect_timeout=SOCKET_TIMEOUT_SECONDS,
            decode_responses=False,
        )
        # The bridge speaks to it through the same commands: every multi-key script, transaction and
        # read touches keys of one hash tag, hence one slot (see store/keys.py).
        return cast(aioredis.Redis, cluster)
    # A burst of requests (200 streams opened at once, say) waits for a free connection rather than failing:
    # redis-py's default pool refuses the 101st at once ("Too many connections").
    pool = aioredis.BlockingConnectionPool.from_url(
        settings.redis_url,
        max_connections=MAX_CONNECTIONS,
        timeout=SOCKET_TIMEOUT_SECONDS,
        socket_timeout=SOCKET_TIMEOUT_SECONDS,
        socket_connect_timeout=SOCKET_TIMEOUT_SECONDS,
        health_check_interval=30,
        decode_responses=False,
    )
    return aioredis.Redis(connection_pool=pool)
