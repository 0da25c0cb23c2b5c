"""The poller hands on every new baseline of a feed, and only those (docs/api.md#automatic-snapshots): a
newly active school's first poll, the first poll after a purge, every feed after a store reset. The
simulator over HTTP, a real Redis, the bridge's own wiring.

The poller's `on_baseline` is replaced here by a recorder: this test is about when the poller calls it
(its wiring to the resync runner, and what subscribers receive, are tested end to end in
tests/e2e/test_automatic_snapshots.py)."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from typing import Any

import httpx
import redis.asyncio as aioredis

from bridge.app import HANDON_AFTER_SECONDS, Services
from bridge.testing.settings import bridge_settings
from bridge.testing.waiting import wait_for
from tests.e2e.helpers import running_bridge

FEEDS = ("debtors", "learners")


class Baselines:
    """Records each (school, resource) handed to `on_baseline`."""

    def __init__(self) -> None:
        self.calls: Counter[tuple[int, str]] = Counter()

    async def __call__(self, school_id: int, resource: str) -> None:
        self.calls[(school_id, resource)] += 1

    def of(self, *schools: int) -> Counter[tuple[int, str]]:
        return Counter({(s, r): n for (s, r), n in self.calls.items() if s in schools})


async def polled(services: Services, school_id: int, after: float = 0.0) -> bool:
    status = await services.status.get(school_id)
    return status.last_success is not None and status.last_success > after


async def test_each_new_baseline_is_handed_on_once_and_nothing_else(
    redis: aioredis.Redis, redis_url: str, simulator_factory: Any
) -> None:
    sim = simulator_factory(schools=2, learners=30, debtors=20, seed=23)
    control = httpx.AsyncClient(base_url=sim.control_url)
    settings = bridge_settings(redis_url, sim.base_url, BRIDGE_REVOKED_PURGE_DAYS="0.00003")  # 2.6 s
    services = Services.build(settings)
    baselines = Baselines()
    services.poller.on_baseline = baselines
    await services.start()
    try:
        # Each school's first poll takes each feed's baseline: handed on once each.
        for school in (1000, 1001):
            await wait_for(lambda s=school: polled(services, s), what=f"first poll of {school}")
        await wait_for(lambda: len(baselines.calls) == 4 or None, what="four baselines")
        assert baselines.calls == Counter({(s, r): 1 for s in (1000, 1001) for r in FEEDS})
        assert await services.hand_on_left(now=time.time() + 3600) == 0  # none left behind

        # Later polls, with changes or without, take no baseline.
        learner = (await control.get("/schools/1000/learners")).json()["data"][2]
        await control.patch(f"/schools/1000/learners/{learner['learner_id']}", json={"grade": "RR"})
        for _ in range(2):
            for school in (1000, 1001):  # "busy" while the scheduler's own poll of it runs: then again
                await wait_for(lambda s=school: forced(services, s), what=f"a forced poll of {school}")
        assert sum(baselines.calls.values()) == 4

        # A school that becomes active later: its first poll.
        await control.post("/schools", json={"school_id": 2000, "learners": 5, "debtors": 5})
        await wait_for(lambda: len(baselines.of(2000)) == 2 or None, what="the new school's baselines")
        assert baselines.of(2000) == Counter({(2000, r): 1 for r in FEEDS})

        # Revoked, purged, authorised again: a fresh baseline of each feed.
        await control.post("/schools/1001/revoke")
        await wait_for(lambda: _purged(services, 1001), what="the purge", timeout=15)
        await control.post("/schools/1001/authorise")
        await wait_for(
            lambda: baselines.of(1001) == Counter({(1001, r): 2 for r in FEEDS}) or None,
            timeout=20,
            what="the baselines after the purge",
        )
        assert baselines.of(1000, 2000) == Counter({(s, r): 1 for s in (1000, 2000) for r in FEEDS})

        # The store loses its data: every school's every feed takes a new baseline, handed on once more.
        before = dict(baselines.calls)
        await redis.flushdb()
        everyone = {(s, r): before[(s, r)] + 1 for s in (1000, 1001, 2000) for r in FEEDS}
        await wait_for(
            lambda: dict(baselines.calls) == everyone or None, timeout=30, what="baselines after reset"
        )
        await asyncio.sleep(2.5)  # a few more polls of each school: no more
        assert dict(baselines.calls) == everyone
    finally:
        await services.stop(grace=2)


async def test_a_failing_hand_on_leaves_the_poll_successful_and_is_handed_on_later_once(
    redis: aioredis.Redis, redis_url: str, simulator_factory: Any
) -> None:
    """What a replica killed between the commit and the hand-on leaves is the same as a failed hand-on: the
    baseline's mark, which the upkeep of any replica hands on once it is `HANDON_AFTER_SECONDS` old."""
    sim = simulator_factory(schools=1, learners=10, debtors=10, seed=24)
    baselines = Baselines()
    failing = True

    async def broken_at_first(school_id: int, resource: str) -> None:
        if failing:
            raise ConnectionError("resync store unreachable")
        await baselines(school_id, resource)

    async with running_bridge(bridge_settings(redis_url, sim.base_url)) as services:
        services.poller.on_baseline = broken_at_first
        await wait_for(lambda: polled(services, 1000), what="first poll")
        status = await services.status.get(1000)
        assert status.last_error is None and status.consecutive_failures == 0
        failing = False
        assert await services.hand_on_left() == 0  # not yet: the replica that committed may be at it
        later = time.time() + HANDON_AFTER_SECONDS + 1
        both = await asyncio.gather(services.hand_on_left(now=later), services.hand_on_left(now=later))
        assert sum(both) == 2  # two replicas' upkeep at once: each baseline goes to one of them
        assert baselines.calls == Counter({(1000, r): 1 for r in FEEDS})
        # Handed on: taken by one caller, and gone.
        assert await services.hand_on_left(now=later + HANDON_AFTER_SECONDS + 1) == 0
        assert baselines.calls == Counter({(1000, r): 1 for r in FEEDS})


async def _purged(services: Services, school_id: int) -> bool:
    return (await services.snapshots.flags(school_id)).purged is not None


async def forced(services: Services, school_id: int) -> bool:
    return await services.poller.poll(school_id, force=True) == "ok"
