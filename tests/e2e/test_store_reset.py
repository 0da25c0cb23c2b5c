"""A store reset seen first by a replica that never knew the lost data (docs/operations.md, store resets).

Any replica that knew a different marker, or one that is now gone, must report the reset (one error log,
`d6_bridge_store_resets_total`, the `store_reset` readiness entry), and every school then takes a silent
new baseline, even under `BRIDGE_EMIT_INITIAL_SNAPSHOT`. A brand-new replica that finds the bridge's keys
without a marker reports it too; one on an empty store does not. Real `d6-bridge serve` processes (or the
bridge's own wiring), a real Redis, the simulator.
"""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path
from typing import Any

import httpx
import redis.asyncio as aioredis

from bridge import metrics
from bridge.store.keys import Keys
from bridge.testing.settings import TOKEN, bridge_settings
from bridge.testing.waiting import wait_for
from tests.e2e.helpers import api, ready, running_bridge, school_events, start_replica, stop_replicas

KEYS = Keys("d6b")
SCHOOLS = (1000, 1001, 1002)
FEEDS = ["debtors.last_success", "learners.last_success"]


async def polled(redis: aioredis.Redis, school_id: int) -> bool:
    """Both feeds of the school polled successfully since the store was last emptied."""
    return all(v is not None for v in await redis.hmget(KEYS.poll_status(school_id), FEEDS))


async def all_polled(redis: aioredis.Redis) -> bool:
    return all([await polled(redis, s) for s in SCHOOLS])


async def event_types(redis: aioredis.Redis) -> dict[int, list[str]]:
    return {s: [e.type for e in await school_events(redis, s)] for s in SCHOOLS}


async def readiness(port: int) -> dict[str, Any]:
    async with httpx.AsyncClient() as client:
        return dict((await client.get(f"http://127.0.0.1:{port}/health/ready")).json())


async def resets_counted(port: int) -> float:
    async with httpx.AsyncClient(headers={"Authorization": f"Bearer {TOKEN}"}) as client:
        page = (await client.get(f"http://127.0.0.1:{port}/metrics")).text
    for line in page.splitlines():
        if line.startswith("d6_bridge_store_resets_total "):
            return float(line.split()[1])
    raise AssertionError("no d6_bridge_store_resets_total on /metrics")


def counter(name: str) -> float:
    return metrics.REGISTRY.get_sample_value(name) or 0.0


async def test_an_old_replica_reports_a_reset_that_a_new_replica_looked_at_first(
    redis: aioredis.Redis, redis_url: str, simulator_factory: Any, tmp_path: Path
) -> None:
    sim = simulator_factory(schools=len(SCHOOLS), learners=30, debtors=20, seed=31)
    timing = {"BRIDGE_INTEGRATIONS_POLL_SECONDS": "2"}  # serve_env: BRIDGE_EMIT_INITIAL_SNAPSHOT=true
    old, old_port = start_replica(redis_url, sim.base_url, tmp_path, **timing)
    replicas = [old]
    try:
        await wait_for(lambda: ready(old_port), timeout=30, what="replica A")
        await wait_for(lambda: all_polled(redis), timeout=30, what="first polls")
        told = await event_types(redis)
        assert all("learner.created" in types for types in told.values()), told  # the initial snapshot
        assert await resets_counted(old_port) == 0

        # Redis loses everything while A is not looking; B starts and is the first to look.
        old.send_signal(signal.SIGSTOP)
        try:
            await redis.flushdb()
            new, new_port = start_replica(redis_url, sim.base_url, tmp_path, **timing)
            replicas.append(new)
            await wait_for(lambda: redis.exists(KEYS.store_marker()), timeout=30, what="B's marker")
        finally:
            old.send_signal(signal.SIGCONT)

        # A knew the marker that was lost: it reports the reset, once.
        await wait_for(lambda: _reset_shown(old_port), timeout=15, what="the reset in A's readiness")
        await wait_for(lambda: resets_counted(old_port), timeout=15, what="the reset counted by A")
        await wait_for(lambda: ready(new_port), timeout=30, what="replica B")
        await wait_for(lambda: _reset_shown(new_port), timeout=15, what="the reset in B's readiness")

        # Every school takes a silent new baseline: no flood of created or authorised events.
        await wait_for(lambda: all_polled(redis), timeout=30, what="new baselines")
        await asyncio.sleep(3)
        assert await event_types(redis) == {s: [] for s in SCHOOLS}
        assert await resets_counted(old_port) == 1
        assert await resets_counted(new_port) == 0  # B never knew the lost data: it learnt of it
    finally:
        await stop_replicas(replicas, grace=20)
    a_log = _read(tmp_path / f"replica-{old_port}.log")
    assert a_log.count("store reset detected") == 1, a_log[-3000:]


async def test_a_new_replica_that_finds_the_bridges_keys_without_a_marker_reports_a_reset(
    redis: aioredis.Redis, redis_url: str, simulator_factory: Any
) -> None:
    sim = simulator_factory(schools=len(SCHOOLS), learners=30, debtors=20, seed=32)
    # What a lost marker leaves behind: schools known, the first integrations list recorded.
    await redis.sadd(KEYS.known_schools(), *[str(s) for s in SCHOOLS])
    await redis.set(KEYS.integrations_baseline(), "1")
    resets = counter("d6_bridge_store_resets_total")
    settings = bridge_settings(redis_url, sim.base_url, BRIDGE_EMIT_INITIAL_SNAPSHOT="true")
    async with running_bridge(settings) as services:
        client = api(services)
        await wait_for(lambda: _reset_in(client), what="the reset in readiness")
        assert counter("d6_bridge_store_resets_total") == resets + 1
        await wait_for(lambda: all_polled(redis), what="new baselines")
        await asyncio.sleep(2)
        assert await event_types(redis) == {s: [] for s in SCHOOLS}
        assert counter("d6_bridge_store_resets_total") == resets + 1


async def test_a_new_replica_on_an_empty_store_is_a_first_start_and_tells_the_initial_snapshot(
    redis: aioredis.Redis, redis_url: str, simulator_factory: Any
) -> None:
    sim = simulator_factory(schools=len(SCHOOLS), learners=30, debtors=20, seed=33)
    resets = counter("d6_bridge_store_resets_total")
    settings = bridge_settings(redis_url, sim.base_url, BRIDGE_EMIT_INITIAL_SNAPSHOT="true")
    async with running_bridge(settings) as services:
        client = api(services)
        await wait_for(lambda: all_polled(redis), what="first polls")
        told = await event_types(redis)
        for types in told.values():
            assert types.count("integration.authorised") == 1 and types.count("learner.created") == 30, told
        assert (await client.get("/health/ready")).json()["store_reset"] is None
        assert counter("d6_bridge_store_resets_total") == resets


async def test_one_replica_that_finds_its_marker_gone_baselines_silently_under_emit_initial_snapshot(
    redis: aioredis.Redis, redis_url: str, simulator_factory: Any
) -> None:
    sim = simulator_factory(schools=len(SCHOOLS), learners=30, debtors=20, seed=34)
    resets = counter("d6_bridge_store_resets_total")
    settings = bridge_settings(redis_url, sim.base_url, BRIDGE_EMIT_INITIAL_SNAPSHOT="true")
    async with running_bridge(settings) as services:
        client = api(services)
        await wait_for(lambda: all_polled(redis), what="first polls")
        await redis.flushdb()
        await wait_for(lambda: _reset_in(client), what="the reset in readiness")
        await wait_for(lambda: all_polled(redis), what="new baselines")
        await asyncio.sleep(3)
        assert await event_types(redis) == {s: [] for s in SCHOOLS}
        assert counter("d6_bridge_store_resets_total") == resets + 1


def _read(path: Path) -> str:
    return path.read_text()


async def _reset_shown(port: int) -> bool:
    return bool((await readiness(port)).get("store_reset"))


async def _reset_in(client: httpx.AsyncClient) -> bool:
    return bool((await client.get("/health/ready")).json().get("store_reset"))
