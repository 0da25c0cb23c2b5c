"""Fast enough for benchmarks: a 10,000-learner school is scanned in well under a second."""

from __future__ import annotations

import time
from collections.abc import Callable

import httpx

from bridge.testing.servers import SimulatorServer
from tests.simulator.helpers import CREDENTIALS, LEARNERS, scan


async def test_scan_of_10000_learners(simulator_factory: Callable[..., SimulatorServer]) -> None:
    sim = simulator_factory(schools=1, learners=10_000, debtors=8_000)
    headers = {**CREDENTIALS, "HTTP-X-SCHOOLID": "1000"}
    async with httpx.AsyncClient(base_url=sim.base_url, headers=headers) as client:
        await client.get(LEARNERS)  # connection set up outside the measurement
        started = time.perf_counter()
        records, pages = await scan(client, LEARNERS, {"limit": 50, "all_accounts": 1})
        elapsed = time.perf_counter() - started
    print(f"\nscan of {len(records)} learners in {len(pages)} pages: {elapsed:.3f} s")
    assert len(records) == 10_000
    assert len(pages) == 200
    assert elapsed < 3.0
