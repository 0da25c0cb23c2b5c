"""Connecting to the store: a real Redis, or the embedded `memory://` store for the demo."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Iterable
from typing import Any, cast

import hiredis
import redis.asyncio as aioredis
from redis.asyncio.connection import AbstractConnection, Connection
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import DataError
from redis.exceptions import TimeoutError as RedisTimeoutError

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
        # read touches keys of one hash tag, hence one slot (see store/keys.py). Its nodes' connections
        # pack and send as a single Redis's do: those of the nodes it was given, and of those it finds.
        nodes = cluster.nodes_manager
        nodes.connection_kwargs["connection_class"] = packing(nodes.connection_kwargs["connection_class"])
        for node in nodes.startup_nodes.values():
            node.connection_class = cast(type[Connection], packing(node.connection_class))
        return cast(aioredis.Redis, cluster)
    # A burst of requests (200 streams opened at once, say) waits for a free connection rather than failing:
    # redis-py's default pool refuses the 101st at once ("Too many connections").
    pool = _Pool.from_url(
        settings.redis_url,
        max_connections=MAX_CONNECTIONS,
        timeout=SOCKET_TIMEOUT_SECONDS,
        socket_timeout=SOCKET_TIMEOUT_SECONDS,
        socket_connect_timeout=SOCKET_TIMEOUT_SECONDS,
        health_check_interval=30,
        decode_responses=False,
    )
    pool.connection_class = packing(pool.connection_class)
    return aioredis.Redis(connection_pool=pool)


class _Pool(aioredis.BlockingConnectionPool):
    """redis-py's blocking pool, which hands out a free connection without waiting on its condition under a
    timeout when nobody waits for one: a command's round trip then costs about a sixth less CPU (164 against
    198 µs a PING on the bench machine, the two pools in turns; bench/RESULTS.md section 4). With every
    connection in use, or a task already waiting, it is redis-py's `get_connection` as it is (the wait
    bounded by the pool's timeout). The connection is checked as redis-py checks it (`ensure_connection`)."""

    async def get_connection(self, *args: Any, **kwargs: Any) -> AbstractConnection:
        free = self._available_connections
        if not free or self._in_maintenance or getattr(self._condition, "_waiters", True):
            return cast(AbstractConnection, await super().get_connection(*args, **kwargs))  # type: ignore[no-untyped-call]
        connection = free.pop()
        self._in_use_connections.add(connection)
        try:
            await self.ensure_connection(connection)
        except BaseException:
            await self.release(connection)
            raise
        return connection


class _Sending:
    """Commands sent under `asyncio.timeout`, where redis-py's asyncio connection sends them under
    `asyncio.wait_for`. On Python 3.11 `wait_for` returns the send's result instead of raising when a
    cancellation comes as the send completes (fixed in 3.12), so a task busy with Redis commands lost most
    of its cancellations: a stop waited, a timeout around Redis work did not fire. The rest is redis-py's
    `send_packed_command` as it is: the same checks before, the same errors, the connection closed after
    any failure (tests/store/test_redis_sending.py)."""

    async def send_packed_command(
        self, command: bytes | str | Iterable[bytes], check_health: bool = True
    ) -> None:
        connection = cast(AbstractConnection, self)
        timeout = connection.socket_timeout
        if not timeout or sys.version_info >= (3, 12):
            await super().send_packed_command(command, check_health)  # type: ignore[misc]
            return
        if not connection.is_connected:
            await connection.connect_check_health(check_health=False)
        if check_health:
            await connection.check_health()  # type: ignore[no-untyped-call]
        if isinstance(command, str):
            command = command.encode()
        if isinstance(command, bytes):
            command = [command]
        writer = connection._writer
        assert writer is not None
        try:
            async with asyncio.timeout(timeout):
                writer.writelines(command)
                await writer.drain()
        except TimeoutError:  # before OSError, whose subclass it is
            await connection.disconnect(nowait=True)
            raise RedisTimeoutError("Timeout writing to socket") from None
        except OSError as error:
            await connection.disconnect(nowait=True)
            number, message = ("UNKNOWN", error.args[0]) if len(error.args) == 1 else error.args[:2]
            raise RedisConnectionError(f"Error {number} while writing to socket. {message}.") from error
        except BaseException:
            await connection.disconnect(nowait=True)  # a send cut short leaves the connection unusable
            raise


class _HiredisPacking:
    """Commands packed by hiredis (C), as redis-py's synchronous client does when hiredis is installed; its
    asyncio connections pack in Python, a few microseconds an argument (a commit of 100 changes sends some
    800). The bytes are the same (tests/store/test_redis_packing.py)."""

    def pack_command(self, *args: Any) -> list[bytes]:
        if isinstance(args[0], str):  # "CONFIG GET": the command's words are arguments of their own
            args = (*args[0].encode().split(), *args[1:])
        elif b" " in args[0]:
            args = (*args[0].split(), *args[1:])
        try:
            return [hiredis.pack_command(args)]
        except TypeError as error:  # what redis-py raises for an argument it cannot encode (a bool, None)
            raise DataError(str(error)) from None


_PACKING: dict[type[AbstractConnection], type[AbstractConnection]] = {}


def packing(connection_class: type[AbstractConnection]) -> type[AbstractConnection]:
    """`connection_class` (plain, TLS or Unix socket: whichever the URL chose) packing with hiredis and
    sending under `asyncio.timeout` (`_Sending`)."""
    if connection_class not in _PACKING:
        name = f"Hiredis{connection_class.__name__}"
        _PACKING[connection_class] = cast(
            type[AbstractConnection], type(name, (_Sending, _HiredisPacking, connection_class), {})
        )
    return _PACKING[connection_class]
