"""d6 request economy: requests the simulator received for a first scan and a steady-state poll.

One school of 1,234 learners and 1,001 debtors in the simulator (over real HTTP, in a thread). `D6Client`
scans both resources as the poller does, twice; the simulator's `/_sim/stats` counts the requests, which
are divided by the floor, ceil(records / 50) per resource. Baseline: a naive client that follows
`next_cursor` without asking for a page size, so it gets d6's default page.
"""

from __future__ import annotations

import asyncio
import math
import sys
from collections.abc import AsyncIterator

import httpx

from bench.common import quiet_logs, verdict
from bridge.d6.client import D6Client
from bridge.d6.pagination import Page
from bridge.settings import load_settings
from bridge.testing.servers import SimulatorServer

SCHOOL = 1000
COUNTS = {"learners": 1_234, "accountablepersons": 1_001}
MAX_LIMIT = 50
PATH = "/v2/finplus/debtmanagement/"
CREDENTIALS = {"HTTP-X-USERNAME": "sandbox", "HTTP-X-PASSWORD": "sandbox"}
FLOOR = {resource: math.ceil(n / MAX_LIMIT) for resource, n in COUNTS.items()}


async def take_stats(control: httpx.AsyncClient) -> dict[str, int]:
    """Requests per resource since the last call (and reset the counters)."""
    by_endpoint = (await control.get("/stats")).json()["by_endpoint"]
    await control.post("/stats/reset")
    return {resource: by_endpoint.get(f"GET {PATH}{resource}", 0) for resource in COUNTS}


async def bridge_scan(d6: D6Client) -> None:
    """Both resources as the poller scans them (every page, all accounts)."""
    for pages, resource in (
        (d6.scan_learners(SCHOOL, all_accounts=True), "learners"),
        (d6.scan_accountable_persons(SCHOOL, all_accounts=True), "accountablepersons"),
    ):
        assert await count(pages) == COUNTS[resource]


async def count(pages: AsyncIterator[Page]) -> int:
    return sum([len(page.records) async for page in pages])


async def naive_scan(base_url: str) -> None:
    """Follow `next_cursor` without `limit`: every page has d6's default size (10)."""
    headers = {**CREDENTIALS, "HTTP-X-SCHOOLID": str(SCHOOL)}
    async with httpx.AsyncClient(base_url=base_url, headers=headers) as http:
        for resource, expected in COUNTS.items():
            params, seen = {"all_accounts": "1"}, 0
            while True:
                body = (await http.get(PATH + resource, params=params)).json()
                seen += len(body["data"])
                if not body["meta"].get("next_cursor"):
                    break
                params = {"all_accounts": "1", "cursor": body["meta"]["next_cursor"]}
            assert seen == expected


def show(label: str, requests: dict[str, int]) -> float:
    """Print one row; return the worst ratio to the floor."""
    ratios = {resource: requests[resource] / FLOOR[resource] for resource in COUNTS}
    cells = "  ".join(f"{r} {requests[r]:>3} / {FLOOR[r]} = {ratios[r]:.2f}" for r in COUNTS)
    print(f"  {label:<14} {cells}")
    return max(ratios.values())


async def main() -> bool:
    quiet_logs()
    with SimulatorServer(
        schools=1, learners=COUNTS["learners"], debtors=COUNTS["accountablepersons"]
    ) as server:
        base_url = server.base_url
        env = {
            "BRIDGE_D6_BASE_URL": base_url,
            "BRIDGE_D6_USERNAME": "sandbox",
            "BRIDGE_D6_PASSWORD": "sandbox",
            "BRIDGE_D6_MAX_RPS": "1000",
        }
        async with (
            httpx.AsyncClient(base_url=f"{server.url}/_sim") as control,
            D6Client(load_settings(env, isatty=False)) as d6,
        ):
            await take_stats(control)
            await bridge_scan(d6)
            first = await take_stats(control)
            await bridge_scan(d6)
            steady = await take_stats(control)
            await naive_scan(base_url)
            naive = await take_stats(control)
    learners, debtors = COUNTS.values()
    print(f"d6 requests, one school of {learners:,} learners and {debtors:,} debtors:")
    print("  requests / floor ceil(n/50):")
    worst = max(show("first scan", first), show("steady state", steady))
    show("baseline", naive)
    print(f"  baseline/bridge {sum(naive.values()) / sum(steady.values()):.2f}x the requests")
    return verdict("d6 requests", worst == 1.0, "exactly 1.00 x ceil(n/50) per resource")


if __name__ == "__main__":
    sys.exit(0 if asyncio.run(main()) else 1)
