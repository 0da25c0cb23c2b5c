"""Poll planning end to end: a budget that binds, skewed churn, and what `/v1/schools` and the metrics say."""

from __future__ import annotations

import asyncio
import itertools
import time
from typing import Any

import httpx
import redis.asyncio as aioredis

from bridge.app import Services
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
            """The plan once the estimates have learnt the skew: the busy school's learners change fastest of
            every other school's feeds (a quiet feed's estimate can run high for its first few scans)."""
            found = await feeds()
            busy, quiet = found[(1000, "learners")], found[(1007, "learners")]
            others = max(f["change_rate_per_hour"] or 0.0 for (s, _), f in found.items() if s != 1000)
            if (
                busy["change_rate_per_hour"]
                and busy["change_rate_per_hour"] > others
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
        assert found[(1000, "learners")]["last_changes"] is not None

        metrics = (await client.get("/metrics")).text
        assert 'd6_bridge_planned_poll_interval_seconds{resource="learner",stat="max"}' in metrics
        assert "d6_bridge_detection_lag_seconds_bucket" in metrics


async def test_two_replicas_under_a_binding_plan_never_poll_a_feed_twice_within_its_target_interval(
    redis: aioredis.Redis, redis_url: str, simulator_factory: Any
) -> None:
    """Both derive the plan from the shared status; the lease and the due check keep each feed to one
    replica at a time and one poll per target interval, whichever replica's turn comes first. Every poll's
    start, by either replica, is read from the shared status every 0.1 s (the in-process simulator's own
    request times are late by whatever the event loop owes it)."""
    sim: SimulatorServer = simulator_factory(schools=len(SCHOOLS), learners=60, debtors=40, seed=6)
    control = httpx.AsyncClient(base_url=sim.control_url)
    settings = bridge_settings(redis_url, sim.base_url, **{**BINDING, "BRIDGE_SCHOOL_POLL_SECONDS": "2"})
    feeds = [(school_id, resource) for school_id in SCHOOLS for resource in ("debtors", "learners")]
    starts: dict[tuple[int, str], set[float]] = {feed: set() for feed in feeds}
    async with running_bridge(settings) as one, running_bridge(settings) as two:
        await control.post("/churn", json={"rate": 3, "skew": 2})

        def binding(services: Services) -> bool:
            return services.scheduler.planner is not None and services.scheduler.planner.binding

        await wait_for(lambda: binding(one) and binding(two), timeout=30, what="a binding plan in both")
        until = time.monotonic() + 15
        while time.monotonic() < until:
            for feed, status in (await one.status.feeds_of(list(starts))).items():
                if status.last_started is not None:
                    starts[feed].add(status.last_started)
            await asyncio.sleep(0.1)
        assert binding(one) and binding(two)
    assert all(len(seen) >= 2 for seen in starts.values())  # every feed was polled, and again
    gaps = [b - a for seen in starts.values() for a, b in itertools.pairwise(sorted(seen))]
    assert min(gaps) >= 2.0 - 0.2 - 0.1  # the target less the due check's tolerance
