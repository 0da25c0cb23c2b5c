"""Poll planning end to end: a budget that binds, skewed churn, and what `/v1/schools` and the metrics say."""

from __future__ import annotations

from typing import Any

import httpx
import redis.asyncio as aioredis

from bridge.testing.servers import SimulatorServer
from bridge.testing.settings import bridge_settings
from bridge.testing.waiting import wait_for
from tests.e2e.helpers import api, running_bridge

SCHOOLS = tuple(range(1000, 1008))
# 8 schools x (2 learner pages + 1 debtor page) due every second: 24 requests a second against 4
BINDING = {
    "BRIDGE_D6_MAX_RPS": "4",
    "BRIDGE_SCHOOL_POLL_SECONDS": "1",
    "BRIDGE_POLL_JITTER_SECONDS": "0",
    "BRIDGE_INTEGRATIONS_POLL_SECONDS": "5",
    "BRIDGE_MAX_POLL_SECONDS": "40",
}


async def test_under_a_binding_budget_the_busy_school_is_polled_more_and_the_api_shows_the_plan(
    redis: aioredis.Redis, redis_url: str, simulator_factory: Any
) -> None:
    sim: SimulatorServer = simulator_factory(schools=len(SCHOOLS), learners=60, debtors=40, seed=5)
    control = httpx.AsyncClient(base_url=sim.control_url)
    async with running_bridge(bridge_settings(redis_url, sim.base_url, **BINDING)) as services:
        client = api(services)

        async def feeds() -> dict[tuple[int, str], dict[str, Any]]:
            schools = (await client.get("/v1/schools", params={"limit": 100})).json()["data"]
            return {(s["school_id"], f["resource"]): f for s in schools for f in s["feeds"]}

        async def baselines() -> bool:
            found = await feeds()
            return len(found) == 2 * len(SCHOOLS) and all(f["last_successful_poll"] for f in found.values())

        await wait_for(baselines, timeout=30, what="every feed's baseline")
        await control.post("/churn", json={"rate": 4, "skew": 3})  # school 1000 makes 83% of the changes

        async def planned() -> dict[tuple[int, str], dict[str, Any]] | None:
            found = await feeds()
            busy, quiet = found[(1000, "learners")], found[(1007, "learners")]
            if (
                busy["change_rate_per_hour"]
                and busy["planned_interval_seconds"] * 2 < quiet["planned_interval_seconds"]
            ):
                return found
            return None

        found = await wait_for(planned, timeout=60, interval=0.5, what="a plan that favours the busy school")
        for feed in found.values():
            assert feed["interval_seconds"] == 1.0  # the target
            assert 1.0 <= feed["planned_interval_seconds"] <= 0.9 * 40 + 0.1  # within target and floor
            assert feed["change_rate_per_hour"] is None or feed["change_rate_per_hour"] >= 0
            assert feed["lag_seconds"] >= 0
        busy = found[(1000, "learners")]
        assert busy["change_rate_per_hour"] > max(
            f["change_rate_per_hour"] or 0.0 for (s, _), f in found.items() if s != 1000
        )
        assert busy["last_changes"] is not None

        metrics = (await client.get("/metrics")).text
        assert 'd6_bridge_planned_poll_interval_seconds{resource="learner",stat="max"}' in metrics
        assert "d6_bridge_detection_lag_seconds_bucket" in metrics
