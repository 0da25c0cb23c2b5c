"""Several `d6-bridge serve` processes on one Redis: each school polled once per interval, no event twice.

Three real serve processes share a real Redis and the simulator while it changes records every second.
One of them is killed with SIGKILL half way and replaced. With BRIDGE_EMIT_INITIAL_SNAPSHOT every record
starts with a `*.created`, so replaying each school's events must rebuild exactly what d6 holds at the end:
an event emitted twice, or a false `removed`, would break the replay.
"""

from __future__ import annotations

import asyncio
import signal
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import redis.asyncio as aioredis

from bridge.d6.records import normalise
from bridge.sync.poller import LEASE_SECONDS
from bridge.testing.servers import SimulatorServer
from bridge.testing.waiting import wait_for
from tests.e2e.helpers import ready, school_events, start_replica, stop_replicas

SCHOOLS = tuple(range(1000, 1006))
POLL_SECONDS = 2.0
JITTER_SECONDS = 0.2
RESOURCES = {"learner": ("learners", "learner_id"), "debtor": ("accountablepersons", "accountable_person_id")}
TIMING = {"BRIDGE_SCHOOL_POLL_SECONDS": str(POLL_SECONDS), "BRIDGE_POLL_JITTER_SECONDS": str(JITTER_SECONDS)}


async def test_three_replicas_poll_each_school_once_per_interval_and_never_emit_twice(
    redis: aioredis.Redis, redis_url: str, simulator_factory: Any, tmp_path: Path
) -> None:
    sim: SimulatorServer = simulator_factory(
        schools=len(SCHOOLS), learners=60, debtors=40, seed=11, inactive_schools=1
    )
    control = httpx.AsyncClient(base_url=sim.control_url)
    replicas = [start_replica(redis_url, sim.base_url, tmp_path, **TIMING) for _ in range(3)]
    try:
        for _process, port in replicas:
            await wait_for(lambda p=port: ready(p), timeout=30, what=f"replica on {port}")
        await control.post("/churn", json={"rate": 3})
        await asyncio.sleep(4)
        # Three replicas, one school awaiting activation: it is activated once, and that is told once.
        early = (await control.get("/requests")).json()["requests"]
        activations = [r for r in early if r["method"] != "GET" and r["path"].endswith("/clientintegrations")]
        assert len(activations) == 1, activations
        for school in SCHOOLS:  # BRIDGE_EMIT_INITIAL_SNAPSHOT: the first list is told too
            told = [e.type for e in await school_events(redis, school) if e.resource == "integration"]
            activated = ["integration.activated"] if school == SCHOOLS[-1] else []
            assert told == ["integration.authorised", *activated], (school, told)
        await control.post("/stats/reset")
        window_start = time.time()
        await asyncio.sleep(4)
        victim, _port = replicas.pop(0)
        victim.send_signal(signal.SIGKILL)
        victim.wait(timeout=10)
        replicas.append(start_replica(redis_url, sim.base_url, tmp_path, **TIMING))
        await asyncio.sleep(6)
        window = time.time() - window_start
        requests = (await control.get("/requests")).json()["requests"]
        await control.post("/churn", json={"rate": 0})

        # Each school's complete learner scans in the window: one per interval, not one per replica.
        scans = Counter(
            r["school_id"] for r in requests if r["path"].endswith("/learners") and "cursor" not in r["query"]
        )
        most = window / (POLL_SECONDS - JITTER_SECONDS - 0.1) + 1
        fewest = window / (POLL_SECONDS + JITTER_SECONDS + 1.5) - 1
        for school in SCHOOLS:
            assert fewest <= scans[school] <= most, (school, scans[school], fewest, most)
        lists = sum(1 for r in requests if r["path"].endswith("/clientintegrations"))
        assert lists <= window / 1.0 + 2, lists  # one integrations poll per interval across replicas

        # After the churn stops and every school is polled again, the events rebuild d6 exactly. A school
        # the killed replica was polling keeps its lease until the TTL (docs/guarantees.md): its next poll
        # may wait that long.
        settled = time.time()
        for school in SCHOOLS:
            await wait_for(
                lambda s=school: _polled_since(redis, s, settled),
                timeout=LEASE_SECONDS + 10 * POLL_SECONDS,
                what=f"poll of {school}",
            )
        for school in SCHOOLS:
            events = await school_events(redis, school)
            assert [e.sequence for e in events] == list(range(1, len(events) + 1))
            assert len({e.id for e in events}) == len(events)
            for resource, (path, id_field) in RESOURCES.items():
                state: dict[str, dict[str, Any]] = {}
                for event in events:
                    if event.resource != resource:
                        continue
                    if event.type.endswith(".created"):
                        assert event.resource_id not in state, f"{event.type} twice for {event.resource_id}"
                        state[event.resource_id] = event.data
                    elif event.type.endswith(".updated"):
                        assert event.resource_id in state
                        state[event.resource_id] = event.data
                    else:
                        assert state.pop(event.resource_id) == event.data
                truth = (await control.get(f"/schools/{school}/{path}")).json()["data"]
                assert state == {str(normalise(r)[id_field]): normalise(r) for r in truth}, (school, resource)
    finally:
        await stop_replicas((process for process, _port in replicas), grace=20)
    for process, port in replicas:
        assert process.returncode == 0, (tmp_path / f"replica-{port}.log").read_text()[-2000:]


async def _polled_since(redis: aioredis.Redis, school_id: int, since: float) -> bool:
    """Both feeds of the school (its debtors and its learners) polled since."""
    raw = await redis.hmget(f"d6b:{{s:{school_id}}}:poll", ["debtors.last_success", "learners.last_success"])
    return all(value is not None and float(value) > since + 0.5 for value in raw)
