"""An erased value leaves Redis's own files at their next save and rewrite (docs/personal-data.md).

A redis-server of its own with AOF on, the bridge polling the simulator: a debtor's id number is changed
to a distinctive value, committed, handed off and delivered (and held for a disabled subscription), then
the debtor is erased (`POST /v1/erasure`). After `BGSAVE` and `BGREWRITEAOF`, no file in Redis's
directory holds the value. RDB compression is off, so that a value in a file is there byte for byte
(LZF could hide it and the search would prove nothing); the search finds it before the erasure.
"""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Any

import httpx
import redis.asyncio as aioredis

from bridge.testing.receivers import Receiver
from bridge.testing.redis import RedisServer
from bridge.testing.servers import SimulatorServer, ThreadedServer
from bridge.testing.settings import bridge_settings
from bridge.testing.waiting import wait_for
from tests.e2e.helpers import api, running_bridge

SCHOOL = 1000


async def test_an_erased_value_is_in_no_redis_file_after_a_save_and_a_rewrite(
    tmp_path: Path, simulator_factory: Any
) -> None:
    server = RedisServer(tmp_path, appendfsync="everysec", extra=("--rdbcompression", "no"))
    server.start()
    try:
        await _story(server, simulator_factory(schools=1, learners=3, debtors=6, seed=41))
    finally:
        server.stop()


async def _story(server: RedisServer, sim: SimulatorServer) -> None:
    control = httpx.AsyncClient(base_url=sim.control_url)
    debtors = (await control.get(f"/schools/{SCHOOL}/accountablepersons")).json()["data"]
    target = next(d for d in debtors if d["id_number"])
    pid = int(target["accountable_person_id"])
    others = [int(d["accountable_person_id"]) for d in debtors if d is not target][:2]
    id_number = f"77{secrets.randbelow(10**11):011d}"
    value = id_number.encode()
    values = [target["id_number"].encode(), value]  # the id number it had, and the one it gets
    ok, held = Receiver(), Receiver()
    redis = aioredis.Redis.from_url(server.url)
    settings = bridge_settings(server.url, sim.base_url, BRIDGE_EMIT_INITIAL_SNAPSHOT="true")
    try:
        with ThreadedServer(ok) as ok_hook, ThreadedServer(held) as held_hook:
            async with running_bridge(settings) as services, api(services) as client:
                subs = []
                for url in (ok_hook.url, held_hook.url):
                    created = await client.post(
                        "/v1/subscriptions", json={"url": f"{url}/d6", "event_types": ["debtor.*"]}
                    )
                    assert created.status_code == 201, created.text
                    subs.append(created.json())
                await client.patch(f"/v1/subscriptions/{subs[1]['id']}", json={"enabled": False})
                await wait_for(lambda: _got(ok, b"debtor.created") >= len(debtors), what="the first poll")
                await control.patch(
                    f"/schools/{SCHOOL}/accountablepersons/{pid}", json={"id_number": id_number}
                )
                await wait_for(lambda: any(value in r.body for r in ok.received), what="the new id number")
                for other in others:  # events after it: the erased entries are not the stream's last
                    await control.patch(
                        f"/schools/{SCHOOL}/accountablepersons/{other}", json={"employer": "Sasol"}
                    )
                await wait_for(lambda: _got(ok, b"debtor.updated") >= 3, what="the later updates")
                await _save(redis)
                for each in values:
                    assert _holding(server.dir, each), "the search must find the values before the erasure"

                answer = await client.post(
                    "/v1/erasure", json={"school_id": SCHOOL, "resource": "debtor", "record_id": str(pid)}
                )
                assert answer.status_code == 202, answer.text
                assert answer.json()["events"] == 2
                events = (await client.get("/v1/events", params={"school_id": SCHOOL, "limit": 500})).json()
                mine = [
                    e for e in events["data"] if (e["resource"], e["resource_id"]) == ("debtor", str(pid))
                ]
                assert mine and all(e["data"] == {"erased": True} for e in mine)
        await _save(redis)
        await _rewrite(redis)
        for each in values:
            assert _holding(server.dir, each) == [], each
    finally:
        await redis.aclose()


def _got(receiver: Receiver, event_type: bytes) -> int:
    return sum(1 for r in receiver.received if b'"type":"' + event_type + b'"' in r.body)


def _holding(directory: Path, value: bytes) -> list[str]:
    """Every file under Redis's directory (dump.rdb, appendonlydir/*, ...) that holds `value`."""
    return sorted(
        str(p.relative_to(directory)) for p in directory.rglob("*") if p.is_file() and value in p.read_bytes()
    )


async def _save(redis: aioredis.Redis) -> None:
    before = (await redis.info("persistence"))["rdb_saves"]
    await redis.bgsave()

    async def saved() -> bool:
        info = await redis.info("persistence")
        return not info["rdb_bgsave_in_progress"] and info["rdb_saves"] > before

    await wait_for(saved, timeout=30, what="BGSAVE")


async def _rewrite(redis: aioredis.Redis) -> None:
    await redis.bgrewriteaof()

    async def rewritten() -> bool:
        info = await redis.info("persistence")
        return not info["aof_rewrite_in_progress"] and not info["aof_rewrite_scheduled"]

    await wait_for(rewritten, timeout=30, what="BGREWRITEAOF")
