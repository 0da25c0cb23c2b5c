"""d6 request economy: requests the simulator received for a first scan and a steady-state poll.

One school of 1,234 learners and 1,001 debtors in the simulator (over real HTTP, in a thread), with its
Finance+ books. `D6Client` scans every watched resource of the catalogue (`BRIDGE_RESOURCES=all`) with the
query the poller uses, twice; the simulator's `/_sim/stats` counts the requests, which are divided by the
floor, ceil(rows / 50) per resource (rows: what the endpoint lists, e.g. families for transactions).
Baseline: a naive client that follows `next_cursor` without asking for a page size, so it gets d6's default
page.
"""

from __future__ import annotations

import asyncio
import math
import sys

import httpx

from bench.common import quiet_logs, verdict
from bridge.catalogue import RESOURCES, Resource
from bridge.d6.client import D6Client
from bridge.settings import Settings, load_settings
from bridge.testing.servers import SimulatorServer

SCHOOL = 1000
LEARNERS, DEBTORS = 1_234, 1_001
MAX_LIMIT = 50
CREDENTIALS = {"HTTP-X-USERNAME": "sandbox", "HTTP-X-PASSWORD": "sandbox"}


def label(resource: Resource) -> str:
    return f"GET {resource.endpoint.collection}"


async def take_stats(control: httpx.AsyncClient) -> dict[str, int]:
    """Requests per resource since the last call (and reset the counters)."""
    by_endpoint = (await control.get("/stats")).json()["by_endpoint"]
    await control.post("/stats/reset")
    return {r.name: by_endpoint.get(label(r), 0) for r in RESOURCES}


async def bridge_scan(d6: D6Client, settings: Settings) -> dict[str, int]:
    """Every resource as the poller scans it; returns the rows each listed."""
    rows = {}
    for resource in RESOURCES:
        pages = d6.scan_endpoint(resource.endpoint, SCHOOL, **resource.query(settings))
        rows[resource.name] = sum([len(page.records) async for page in pages])
    return rows


async def naive_scan(base_url: str, settings: Settings) -> None:
    """Follow `next_cursor` without `limit`: every page has d6's default size (10)."""
    headers = {**CREDENTIALS, "HTTP-X-SCHOOLID": str(SCHOOL)}
    async with httpx.AsyncClient(base_url=base_url, headers=headers) as http:
        for resource in RESOURCES:
            query = {k: ("1" if v is True else str(v)) for k, v in resource.query(settings).items() if v}
            params = dict(query)
            while True:
                body = (await http.get(resource.endpoint.collection, params=params)).json()
                if not body["meta"].get("next_cursor"):
                    break
                params = {**query, "cursor": body["meta"]["next_cursor"]}


def show(title: str, requests: dict[str, int], floor: dict[str, int]) -> float:
    """Print one row; return the worst ratio to the floor."""
    ratios = {name: requests[name] / floor[name] for name in floor}
    print(f"  {title}")
    for name in floor:
        print(f"    {name:<13} {requests[name]:>4} / {floor[name]:>3} = {ratios[name]:.2f}")
    return max(ratios.values())


async def main() -> bool:
    quiet_logs()
    with SimulatorServer(schools=1, learners=LEARNERS, debtors=DEBTORS) as server:
        env = {
            "BRIDGE_D6_BASE_URL": server.base_url,
            "BRIDGE_D6_USERNAME": "sandbox",
            "BRIDGE_D6_PASSWORD": "sandbox",
            "BRIDGE_D6_MAX_RPS": "1000",
            "BRIDGE_RESOURCES": "all",
        }
        settings = load_settings(env, isatty=False)
        async with (
            httpx.AsyncClient(base_url=server.control_url) as control,
            D6Client(settings) as d6,
        ):
            await bridge_scan(d6, settings)  # the books are generated on first use: not counted
            await take_stats(control)
            rows = await bridge_scan(d6, settings)
            first = await take_stats(control)
            await bridge_scan(d6, settings)
            steady = await take_stats(control)
            await naive_scan(server.base_url, settings)
            naive = await take_stats(control)
    floor = {name: max(1, math.ceil(n / MAX_LIMIT)) for name, n in rows.items()}
    print(f"d6 requests, one school of {LEARNERS:,} learners and {DEBTORS:,} debtors, every resource:")
    print("  rows listed: " + ", ".join(f"{name} {n:,}" for name, n in rows.items()))
    print("  requests / floor ceil(rows/50):")
    worst = max(show("first scan", first, floor), show("steady state", steady, floor))
    show("baseline (no limit=50)", naive, floor)
    print(f"  baseline/bridge {sum(naive.values()) / sum(steady.values()):.2f}x the requests")
    return verdict("d6 requests", worst == 1.0, "exactly 1.00 x ceil(rows/50) per resource")


if __name__ == "__main__":
    sys.exit(0 if asyncio.run(main()) else 1)
