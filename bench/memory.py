"""Redis memory per tracked record: 100 schools x 1,000 debtors committed through `SnapshotStore`.

Each school's debtors are generated as the simulator seeds them, sent as d6 sends them (JSON pages of 50),
read as the poller reads a raw scan and committed as a first (silent) poll: the snapshot's digest hash
(with each record's raw digest, docs/development.md#the-diff-fast-path) and record hash, plus the school's
meta. Figure: growth of INFO `used_memory` divided by the records. Baseline, same Redis after FLUSHALL: the
same records as d6 sent them, one JSON string per record in one hash per school. Also measured, same run:
the same commit without raw digests (a decoded scan, as every scan was before the fast path): the raw
digests may cost at most 16 bytes a record more (issue 26).
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Awaitable, Callable

import msgspec
import redis.asyncio as aioredis

from bench.common import Record, make_school, private_redis, quiet_logs, verdict
from bridge.d6.pagination import Page
from bridge.d6.records import normalise, normalise_in_place, record_id
from bridge.store.keys import Keys
from bridge.store.scripts import Scripts
from bridge.sync.diff import DiffPlan, PreviousSnapshot, finish_diff, plan_diff, plan_raw_diff
from bridge.sync.events import record_events
from bridge.sync.snapshot import SnapshotStore

SCHOOLS = 100
DEBTORS = 1_000
FIRST_SCHOOL = 1000
TARGET_BYTES = 600
TARGET_GROWTH = 16
"""Bytes a record may cost more with its raw digest than without (issue 26)."""
KEYS = Keys("bench")
PAGE = 50
LABEL = "GET /v2/finplus/debtmanagement/accountablepersons"
_JSON = msgspec.json.Encoder()


async def used_memory(redis: aioredis.Redis) -> int:
    return int((await redis.info("memory"))["used_memory"])


async def per_record(redis: aioredis.Redis, key: str) -> float:
    """MEMORY USAGE of one school's hash, per debtor."""
    return (await redis.memory_usage(key, samples=0) or 0) / DEBTORS


def checked(record: Record) -> Record:
    """What the client does with a record it decodes (`D6Client._checked`)."""
    record = normalise_in_place(record)
    record_id("accountable_persons", record)
    return record


def raw_pages(school_id: int, debtors: list[Record]) -> list[Page]:
    """The debtors as d6 sends them, read as the client reads a raw scan."""
    pages = []
    for number, start in enumerate(range(0, len(debtors), PAGE), 1):
        body = _JSON.encode({"data": debtors[start : start + PAGE], "meta": {"limit": PAGE}})
        pages.append(
            Page.of_raw(
                body, number=number, limit=PAGE, transform=checked, endpoint=LABEL, school_id=school_id
            )
        )
    return pages


def raw_plan(previous: PreviousSnapshot, school_id: int, debtors: list[Record]) -> DiffPlan:
    return plan_raw_diff(previous, raw_pages(school_id, debtors), "accountable_person_id")


def plain_plan(previous: PreviousSnapshot, school_id: int, debtors: list[Record]) -> DiffPlan:
    return plan_diff(previous, [normalise(r) for r in debtors], "accountable_person_id")


async def commit_snapshot(
    store: SnapshotStore, school_id: int, debtors: list[Record], plan_of: Callable[..., DiffPlan] = raw_plan
) -> None:
    """A school's first poll: no events, every record into the snapshot."""
    previous = await store.load(school_id, "debtor")
    plan = plan_of(previous, school_id, debtors)
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

        async def fill_plain() -> None:
            for school_id, debtors in schools.items():
                await commit_snapshot(store, school_id, debtors, plain_plan)

        async def fill_naive() -> None:
            for school_id, debtors in schools.items():
                rows = {d["accountable_person_id"]: json.dumps(d) for d in debtors}
                await redis.hset(f"naive:{school_id}:debtors", mapping=rows)

        bridge = await grown_by(redis, fill_bridge) / records
        digests = await per_record(redis, KEYS.snapshot_hashes(FIRST_SCHOOL, "debtor"))
        stored = await per_record(redis, KEYS.snapshot_records(FIRST_SCHOOL, "debtor"))
        plain = await grown_by(redis, fill_plain) / records
        plain_digests = await per_record(redis, KEYS.snapshot_hashes(FIRST_SCHOOL, "debtor"))
        naive = await grown_by(redis, fill_naive) / records
    growth = bridge - plain
    print(f"redis memory, {SCHOOLS} schools x {DEBTORS:,} debtors = {records:,} records:")
    print(f"  bridge   {bridge:>7.0f} bytes/record (digest hash {digests:.0f} + record hash {stored:.0f})")
    print(f"  no raw   {plain:>7.0f} bytes/record (digest hash {plain_digests:.0f}: without raw digests)")
    print(f"  growth   {growth:>7.1f} bytes/record for the raw digests")
    print(f"  baseline {naive:>7.0f} bytes/record (one JSON string per record in a hash)")
    print(f"  ratio    {bridge / naive:>7.2f} of the baseline")
    return verdict(
        "redis memory",
        bridge <= TARGET_BYTES and growth <= TARGET_GROWTH,
        f"<= {TARGET_BYTES} bytes/record, raw digests <= {TARGET_GROWTH} bytes/record",
    )


if __name__ == "__main__":
    sys.exit(0 if asyncio.run(main()) else 1)
