"""A replica killed with SIGKILL while it sends a write-back create (docs/commands.md#exactly-once): another
replica takes the command up once the lease runs out, and d6 ends with exactly one note."""

from __future__ import annotations

import asyncio
import datetime as dt
import signal
from pathlib import Path
from typing import Any

import httpx
import redis.asyncio as aioredis

from bridge.testing.servers import SimulatorServer
from bridge.testing.settings import TOKEN
from bridge.testing.waiting import wait_for
from tests.e2e.helpers import ready, start_replica, stop_replicas

SCHOOL = 1000
OVERRIDES = {
    "BRIDGE_RESOURCES": "all",
    "BRIDGE_D6_TIMEOUT_SECONDS": "2",  # the command lease: two of them and 5 s
    "BRIDGE_COMMAND_RETRY_SCHEDULE": "0.2,0.2,0.2,0.2,0.2",
    "BRIDGE_SCHOOL_POLL_SECONDS": "30",
}


async def test_a_create_in_flight_on_a_killed_replica_lands_exactly_once(
    redis: aioredis.Redis, redis_url: str, simulator_factory: Any, tmp_path: Path
) -> None:
    sim: SimulatorServer = simulator_factory(schools=1, learners=10, debtors=8, seed=44)
    control = httpx.AsyncClient(base_url=sim.control_url, timeout=30)
    headers = {"Authorization": f"Bearer {TOKEN}"}
    replicas = [start_replica(redis_url, sim.base_url, tmp_path, **OVERRIDES)]
    try:
        victim, port = replicas[0]
        await wait_for(lambda: ready(port), timeout=60, what="replica A")
        async with httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{port}", headers=headers, timeout=30
        ) as on_a:
            await wait_for(lambda: _active(on_a), timeout=60, what="the school active")
            person = int(
                (await control.get(f"/schools/{SCHOOL}/balances")).json()["data"][0]["accountable_person_id"]
            )
            await control.post("/faults", json={"latency_ms": 1500})  # every d6 call takes 1.5 s now
            text = "called the parent (in flight at the kill)"
            body = {
                "accountable_person_id": person,
                "date": dt.date.today().isoformat(),
                "note_type_id": 1,
                "communication_type_id": 3,
                "note": text,
            }
            made = (await on_a.post(f"/v1/schools/{SCHOOL}/notes", json=body)).json()
            command_id = made["command_id"]
            await wait_for(
                lambda: _state(on_a, command_id, "sending"), timeout=30, what="the command sending"
            )
            await asyncio.sleep(2.0)  # past the first read of the person's notes: the create is on the wire
        victim.send_signal(signal.SIGKILL)
        assert await asyncio.to_thread(victim.wait, 30) == -signal.SIGKILL
        await control.post("/faults", json={})

        replicas.append(start_replica(redis_url, sim.base_url, tmp_path, **OVERRIDES))
        _, port_b = replicas[1]
        await wait_for(lambda: ready(port_b), timeout=60, what="replica B")
        async with httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{port_b}", headers=headers, timeout=30
        ) as on_b:
            await wait_for(lambda: _state(on_b, command_id, "succeeded"), timeout=60, what="B completing it")
            command = (await on_b.get(f"/v1/commands/{command_id}")).json()
        notes = (await control.get(f"/schools/{SCHOOL}/notes")).json()["data"]
        ours = [n for n in notes if n.get("note") == text]
        assert [n["note_id"] for n in ours] == [command["result"]["note_id"]], (command, ours)
        assert command["attempts"] >= 2
    finally:
        await control.aclose()
        await stop_replicas(process for process, _port in replicas)


async def _active(client: httpx.AsyncClient) -> bool:
    schools = (await client.get("/v1/schools")).json()["data"]
    return any(s["school_id"] == SCHOOL and s["state"] == "active" for s in schools)


async def _state(client: httpx.AsyncClient, command_id: str, state: str) -> bool:
    return (await client.get(f"/v1/commands/{command_id}")).json()["state"] == state
