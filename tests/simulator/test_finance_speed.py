"""The books stay cheap: generated on first use, and a large school's reports scan in about a second."""

from __future__ import annotations

import time
from collections.abc import Callable

import httpx

from bridge.testing.servers import SimulatorServer
from tests.simulator.finance_helpers import AGE, TODAY, TRANSACTIONS
from tests.simulator.helpers import CREDENTIALS, scan


async def test_reports_of_a_school_of_4000_debtors(simulator_factory: Callable[..., SimulatorServer]) -> None:
    started = time.perf_counter()
    sim = simulator_factory(schools=20, learners=5_000, debtors=4_000, today=TODAY)
    ready = time.perf_counter() - started
    headers = {**CREDENTIALS, "HTTP-X-SCHOOLID": "1000"}
    async with httpx.AsyncClient(base_url=sim.base_url, headers=headers, timeout=30) as client:
        started = time.perf_counter()
        await client.get(AGE)
        generated = time.perf_counter() - started
        started = time.perf_counter()
        rows, pages = await scan(client, AGE, {"limit": 50, "all_accounts": 1})
        ageing = time.perf_counter() - started
        started = time.perf_counter()
        families, window = await scan(
            client, TRANSACTIONS, {"limit": 50, "all_accounts": 1, "start_date": "2026-01-28"}
        )
        transactions = time.perf_counter() - started
    count = sum(len(f["transactions"]) for f in families)
    print(
        f"\n20 schools of 4,000 debtors up in {ready:.2f} s; a school's books generated in {generated:.2f} s;"
        f" age analysis {len(rows)} rows / {len(pages)} pages in {ageing:.3f} s;"
        f" {count} transactions of 45 days / {len(window)} pages in {transactions:.3f} s"
    )
    assert len(rows) == 4_000
    assert ready < 15.0, "schools' books must not be generated before they are used"
    assert generated < 5.0
    assert ageing < 3.0
    assert transactions < 3.0
