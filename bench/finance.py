"""Finance+ diffs: a 1,500-debtor age analysis and a 45-day transaction window, against learners.

One simulator school of 1,500 debtors (1,900 learners) with its books, scanned over real HTTP by `D6Client`
as the poller scans it (the catalogue's query, `prepare`, key function and compare form). Timed, median of
several runs, from the scanned records to the committed snapshot and events (load, hash and compare, old
records, events, the commit script), per record:
- balances at month end: the school's month moves on, so every row's buckets age (every row is an update);
- balances and transactions on an ordinary poll: a few payments (1% of the debtors) since the last scan;
- baseline, same run, same Redis, same pipeline: the school's learners with the same share of records changed
  as the case (learners carry no amounts to normalise and have their id in a field), timed in turns with
  the case (one of each per round), so that a slow spell of the shared machine weighs on both alike.
Redis bytes per record of each snapshot (MEMORY USAGE of its digest and record hashes) against the
baseline of one compact JSON string per record in a hash.
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import redis.asyncio as aioredis

from bench.common import Record, paired_median_seconds, private_redis, quiet_logs, verdict, with_changes
from bridge import collector
from bridge.catalogue import BY_NAME, Resource
from bridge.d6.client import D6Client
from bridge.settings import Settings, load_settings
from bridge.store.keys import Keys
from bridge.store.scripts import Scripts
from bridge.sync.diff import finish_diff, plan_diff
from bridge.sync.events import record_events
from bridge.sync.snapshot import SnapshotStore
from bridge.testing.servers import SimulatorServer

SCHOOL = 1000
DEBTORS, LEARNERS = 1_500, 1_900
PAYMENTS = DEBTORS // 100
REPEATS = 5
TARGET_RATIO = {"balances": 0.5, "transactions": 0.4}
"""Finance records per second at least this share of the learner baseline's. Transactions pay for a second
digest per record (their identity: d6 gives them no id), so their floor is lower."""
TARGET_BYTES_RATIO = 1.5
"""Redis bytes per finance record at most this multiple of one compact JSON string per record."""
KEYS = Keys("bench")


async def scan(d6: D6Client, resource: Resource, settings: Settings) -> list[Record]:
    records: list[Record] = []
    async for page in d6.scan_endpoint(resource.endpoint, SCHOOL, **resource.query(settings)):
        records.extend(page.records)
    return resource.prepare(records) if resource.prepare is not None else records


async def poll(store: SnapshotStore, resource: Resource, records: list[Record]) -> int:
    """One feed poll as `SchoolPoller._commit` does it; returns the events committed."""
    previous = await store.load(SCHOOL, resource.prefix)
    plan = plan_diff(previous, records, resource.key_function(), resource.compare)
    result = finish_diff(plan, await store.records(SCHOOL, resource.prefix, plan.need_old))
    events = record_events(result, school_id=SCHOOL, resource=resource.prefix, emit_created=previous.baseline)
    committed = await store.commit(SCHOOL, resource.prefix, result, events, token=None)
    return len(committed.events)


def timed_poll(
    redis: aioredis.Redis, store: SnapshotStore, resource: Resource, before: list[Record], after: list[Record]
) -> tuple[tuple[Callable[[], Awaitable[None]], Callable[[], Awaitable[None]]], list[int]]:
    """The `after` poll over a snapshot of `before`, as a (prepare, run) pair for `paired_median_seconds`,
    and a list that holds the events of its last run."""
    events = [0]

    async def prepare() -> None:
        await redis.flushdb()
        await poll(store, resource, before)

    async def run() -> None:
        events[0] = await poll(store, resource, after)

    return (prepare, run), events


async def rate(
    redis: aioredis.Redis,
    store: SnapshotStore,
    case: tuple[Resource, list[Record], list[Record]],
    rows: int,
    learners: list[Record],
) -> tuple[float, int, float]:
    """Records per second of a case's poll (median) and its events; and those of its baseline: the learners
    with the same share changed (the case's events over its `rows`), the two timed in turns
    (`paired_median_seconds`) so that a slow spell of the machine weighs on both alike."""
    case_pair, events = timed_poll(redis, store, *case)
    for step in case_pair:  # once untimed: its events give the baseline's share
        await step()
    changed = with_changes(learners, max(1, round(len(learners) * events[0] / rows)))
    baseline_pair, _ = timed_poll(redis, store, BY_NAME["learners"], learners, changed)
    case_seconds, baseline_seconds = await paired_median_seconds(REPEATS, case_pair, baseline_pair)
    return len(case[2]) / case_seconds, events[0], len(changed) / baseline_seconds


async def bytes_per_record(
    redis: aioredis.Redis, store: SnapshotStore, resource: Resource, records: list[Record]
) -> tuple[float, float]:
    """(bridge snapshot bytes per record, one JSON string per record in a hash)."""
    await redis.flushdb()
    await poll(store, resource, records)
    bridge = 0
    for key in (
        KEYS.snapshot_hashes(SCHOOL, resource.prefix),
        KEYS.snapshot_records(SCHOOL, resource.prefix),
    ):
        bridge += await redis.memory_usage(key, samples=0) or 0
    key_of = resource.key_function()
    await redis.hset("naive", mapping={key_of(r): json.dumps(r, separators=(",", ":")) for r in records})
    naive = await redis.memory_usage("naive", samples=0) or 0
    return bridge / len(records), naive / len(records)


def bench_settings(base_url: str = "http://127.0.0.1:1/api") -> Settings:
    env = {
        "BRIDGE_D6_BASE_URL": base_url,
        "BRIDGE_D6_USERNAME": "sandbox",
        "BRIDGE_D6_PASSWORD": "sandbox",
        "BRIDGE_D6_MAX_RPS": "1000",
    }
    return load_settings(env, isatty=False)


async def read_books() -> dict[str, Any]:
    """Scans before and after a few payments, and after the month moves on."""
    balances, transactions = BY_NAME["balances"], BY_NAME["transactions"]
    with SimulatorServer(schools=1, learners=LEARNERS, debtors=DEBTORS, seed=7) as server:
        settings = bench_settings(server.base_url)
        async with D6Client(settings) as d6, httpx.AsyncClient(base_url=server.control_url) as control:
            books: dict[str, Any] = {
                "balances": await scan(d6, balances, settings),
                "transactions": await scan(d6, transactions, settings),
                "learners": await scan(d6, BY_NAME["learners"], settings),
            }
            for row in books["balances"][:PAYMENTS]:
                payment = {"accountable_person_id": int(row["accountable_person_id"]), "amount": "250"}
                await control.post(f"/schools/{SCHOOL}/transactions", json=payment)
            books["balances_paid"] = await scan(d6, balances, settings)
            books["transactions_paid"] = await scan(d6, transactions, settings)
            await control.post(f"/schools/{SCHOOL}/age")
            books["balances_aged"] = await scan(d6, balances, settings)
    return books


async def main() -> bool:
    quiet_logs()
    books = await read_books()
    collector.settle()  # as serve does once started (bridge/collector.py)
    learners = books["learners"]
    balances, transactions = BY_NAME["balances"], BY_NAME["transactions"]
    async with private_redis() as redis:
        store = SnapshotStore(redis, KEYS, Scripts(redis))
        cases = {
            # The month end ages 614 of the 1,500 rows; 15 payments touch 1% of the debtors.
            "balances, month end": await rate(
                redis,
                store,
                (balances, books["balances"], books["balances_aged"]),
                len(books["balances_aged"]),
                learners,
            ),
            "balances, payments": await rate(
                redis,
                store,
                (balances, books["balances"], books["balances_paid"]),
                len(books["balances"]),
                learners,
            ),
            "transactions, payments": await rate(
                redis,
                store,
                (transactions, books["transactions"], books["transactions_paid"]),
                len(books["transactions"]),
                learners,
            ),
        }
        sizes = {
            "balances": await bytes_per_record(redis, store, balances, books["balances"]),
            "transactions": await bytes_per_record(redis, store, transactions, books["transactions"]),
        }
    print(
        f"finance diffs, one school of {DEBTORS:,} debtors: age analysis {len(books['balances']):,} rows, "
        f"{len(books['transactions']):,} transactions in the 45-day window; median of {REPEATS}:"
    )
    print("  records/s from scan to commit; baseline: the school's learners with the same share changed")
    ok = True
    for name, (per_second, events, baseline) in cases.items():
        ratio = per_second / baseline
        ok &= ratio >= TARGET_RATIO[name.split(",")[0]]
        print(
            f"  {name:<24} {per_second:>9,.0f}  {events:>4} events   baseline {baseline:>9,.0f}"
            f"   ratio {ratio:.2f}"
        )
    print("  redis bytes per record (digest + record hashes) vs one JSON string per record:")
    for name, (bridge, naive) in sizes.items():
        ok &= bridge <= TARGET_BYTES_RATIO * naive
        print(f"  {name:<13} {bridge:>6.0f} vs {naive:>4.0f}  = {bridge / naive:.2f}")
    return verdict(
        "finance diffs",
        ok,
        ">= 0.5 (balances) and 0.4 (transactions) x the learner rate per record, "
        f"<= {TARGET_BYTES_RATIO:g} x the JSON bytes",
    )


if __name__ == "__main__":
    sys.exit(0 if asyncio.run(main()) else 1)
