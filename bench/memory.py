"""Redis memory per tracked record: 100 schools x 1,000 debtors committed through `SnapshotStore`.

Each school's debtors are generated as the simulator seeds them, normalised as the client does, and
committed as a first (silent) poll: the snapshot's digest hash and record hash, plus the school's meta.
Figure: growth of INFO `used_memory` divided by the records. Baseline, same Redis after FLUSHALL: the
same records as d6 sent them, one JSON string per record in one hash per school.
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Awaitable, Callable

import redis.asyncio as aioredis

from bench.common import Record, make_school, private_redis, quiet_logs, verdict
from bridge.d6.records import normalise
from bridge.store.keys import Keys
from bridge.store.scripts import Scripts
from bridge.sync.diff import finish_diff, plan_diff
from bridge.sync.events import record_events
from bridge.sync.snapshot import SnapshotStore

SCHOOLS = 100
DEBTORS = 1_000
FIRST_SCHOOL = 1000
TARGET_BYTES = 600
KEYS = Keys("bench")


async def used_memory(redis: aioredis.Redis) -> int:
    return int((await redis.info("memory"))["used_memory"])


async def per_record(redis: aioredis.Redis, key: str) -> float:
    """MEMORY USAGE of one school's hash, per debtor."""
    return (await redis.memory_usage(key, samples=0) or 0) / DEBTORS


async def commit_snapshot(store: SnapshotStore, school_id: int, debtors: list[Record]) -> None:
    """A school's first poll: no events, every record into the snapshot."""
    previous = await store.load(school_id, "debtor")
    plan = plan_diff(previous, [normalise(r) for r in debtors], "accountable_person_id")
    result = finish_diff(plan, {})
    events = record_events(result, school_id=school_id, resource="debtor", emit_created=False)
    await store.commit(school_id, "debtor", result, events, token=None)


async def grown_by(redis: aioredis.Redis, fill: Callable[[], Awaitable[None]]) -> int:
    """Bytes that `fill` adds to an empty Redis."""
    await redis.flushall()
    before = await used_memory(redis)
    await fill()
    return await used_memory(redis) - before


async def main() -> bool:
    quiet_logs()
    schools = {
        school_id: list(make_school(school_id, debtors=DEBTORS).debtors.records.values())
        for school_id in range(FIRST_SCHOOL, FIRST_SCHOOL + SCHOOLS)
    }
    records = SCHOOLS * DEBTORS
    async with private_redis() as redis:
        store = SnapshotStore(redis, KEYS, Scripts(redis))

        async def fill_bridge() -> None:
            for school_id, debtors in schools.items():
                await commit_snapshot(store, school_id, debtors)

        async def fill_naive() -> None:
            for school_id, debtors in schools.items():
                rows = {d["accountable_person_id"]: json.dumps(d) for d in debtors}
                await redis.hset(f"naive:{school_id}:debtors", mapping=rows)

        bridge = await grown_by(redis, fill_bridge) / records
        digests = await per_record(redis, KEYS.snapshot_hashes(FIRST_SCHOOL, "debtor"))
        stored = await per_record(redis, KEYS.snapshot_records(FIRST_SCHOOL, "debtor"))
        naive = await grown_by(redis, fill_naive) / records
    print(f"redis memory, {SCHOOLS} schools x {DEBTORS:,} debtors = {records:,} records:")
    print(f"  bridge   {bridge:>7.0f} bytes/record (digest hash {digests:.0f} + record hash {stored:.0f})")
    print(f"  baseline {naive:>7.0f} bytes/record (one JSON string per record in a hash)")
    print(f"  ratio    {bridge / naive:>7.2f} of the baseline")
    return verdict("redis memory", bridge <= TARGET_BYTES, f"<= {TARGET_BYTES} bytes/record")


if __name__ == "__main__":
    sys.exit(0 if asyncio.run(main()) else 1)
