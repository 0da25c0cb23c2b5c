"""The store's connections pack commands with hiredis (bridge/store/redis.py): the same bytes redis-py's own
packing sends, the same refusal of what cannot be sent, and real Redis answers through them."""

from __future__ import annotations

import pytest
from redis.asyncio.connection import Connection, SSLConnection, UnixDomainSocketConnection
from redis.exceptions import DataError

from bridge.store.redis import connect, packing
from bridge.testing.settings import fast_settings

ARGUMENTS = [
    ("SET", "key", "value"),
    ("CONFIG GET", "maxmemory"),
    (b"CLIENT SETNAME", b"bridge"),
    ("EVALSHA", "0" * 40, 3, b"k1", "k2", "k3", 1.5, 1e-7, 0.1 + 0.2, -3, 12345678901234567890),
    ("HSET", "h", "ünï", b"\x00\xff\r\n", "", b"", memoryview(b"view")),
    ("SET", "big", b"x" * 200_000),
]


@pytest.mark.parametrize("args", ARGUMENTS)
def test_commands_are_packed_as_redis_py_packs_them(args: tuple[object, ...]) -> None:
    plain, packed = Connection(), packing(Connection)()
    assert b"".join(map(bytes, packed.pack_command(*args))) == b"".join(map(bytes, plain.pack_command(*args)))
    assert b"".join(packed.pack_commands([args, args])) == b"".join(plain.pack_commands([args, args]))


@pytest.mark.parametrize("value", [True, None, object()])
def test_an_argument_redis_cannot_take_is_refused_as_redis_py_refuses_it(value: object) -> None:
    with pytest.raises(DataError):
        packing(Connection)().pack_command("SET", "key", value)
    with pytest.raises(DataError):
        Connection().pack_command("SET", "key", value)


def test_each_kind_of_connection_keeps_its_kind() -> None:
    for kind in (Connection, SSLConnection, UnixDomainSocketConnection):
        assert issubclass(packing(kind), kind) and packing(kind) is packing(kind)


async def test_the_store_client_speaks_to_a_real_redis(redis_url: str) -> None:
    client = connect(fast_settings(redis_url=redis_url))
    try:
        assert isinstance(await client.connection_pool.get_connection(), packing(Connection))
        await client.set("bin", b"\x00\xff" * 50_000)
        assert await client.get("bin") == b"\x00\xff" * 50_000
        script = client.register_script("return {#KEYS, #ARGV, ARGV[#ARGV]}")
        args = [f"a{n}" for n in range(800)]
        assert await script(keys=["k1", "k2"], args=args) == [2, 800, b"a799"]
        async with client.pipeline(transaction=True) as pipe:
            pipe.hset("h", mapping={"x": 1, "y": 2.5})
            pipe.hgetall("h")
            assert await pipe.execute() == [2, {b"x": b"1", b"y": b"2.5"}]
    finally:
        await client.aclose()
