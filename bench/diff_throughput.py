"""Diff throughput: a 10,000-learner school polled after 1% of its learners changed, end to end.

Timed, from the JSON pages d6 would send to the committed snapshot and events, as the poller does it for a
raw scan (bridge/sync/poller.py): read each page with its records left in bytes (`raw_listing`, what
`D6Client` does for the poller), plan the diff (`plan_raw_scan`: read the snapshot's raw digests as one set,
hash each record's bytes, take the ones the set knows as unchanged, decode, normalise, check and hash the
others, read their stored values and records, compare), build the events, and commit snapshot, raw digests
and events in one Lua script. Each timed poll is the first after the raw digests were written whole, so
the commit adds to them (docs/development.md#the-diff-fast-path); at 1% of changes a poll, about one poll
in seven writes them whole again (about 0.7 ms more that poll).

The decode floor, same run, same pages: `msgspec.json.decode` of every page, nothing else (what decoding
alone costs; the bridge must reach 0.4 of it). Floor and bridge take turns, one run of each a round, so a
slow spell of the shared machine falls on both (`paired_median_seconds`).

Baseline, same run, same Redis: the straightforward way: `json.loads` of each page, then per record one
HGET of its stored JSON, a compare by equality of the decoded dicts, and for a changed record one HSET and
one XADD of its event. (It detects no removals and is not atomic, so it does less than the bridge.)
"""

from __future__ import annotations

import asyncio
import json
import statistics
import sys
import time
from collections import defaultdict

import msgspec
import redis.asyncio as aioredis

from bench.common import (
    make_school,
    median_seconds,
    paired_median_seconds,
    private_redis,
    quiet_logs,
    verdict,
    with_changes,
)
from bridge.d6.pagination import Page
from bridge.d6.records import Record, normalise_in_place, record_id
from bridge.store.keys import Keys
from bridge.store.scripts import Scripts
from bridge.sync.diff import finish_diff
from bridge.sync.events import record_events
from bridge.sync.lease import Lease
from bridge.sync.poller import plan_raw_scan
from bridge.sync.snapshot import SnapshotStore

SCHOOL = 1000
LEARNERS = 10_000
CHANGES = 100
PAGE = 50
REPEATS = 11
TARGET_RATE = 100_000
TARGET_RATIO = 5.0
TARGET_FLOOR = 0.4
"""The bridge's rate as a share of the decode floor (issue 26)."""
LABEL = "GET /v2/finplus/debtmanagement/learners"
NAIVE_HASH = "naive:learners"
NAIVE_EVENTS = "naive:events"
_JSON = msgspec.json.Encoder()
_DECODE = msgspec.json.Decoder()


class Laps:
    """Seconds per stage of each run, so the report can say where the time goes."""

    def __init__(self) -> None:
        self.seconds: dict[str, list[float]] = defaultdict(list)
        self._last = time.perf_counter()

    def start(self) -> None:
        self._last = time.perf_counter()

    def __call__(self, stage: str) -> None:
        now = time.perf_counter()
        self.seconds[stage].append(now - self._last)
        self._last = now


def as_pages(records: list[Record]) -> list[bytes]:
    """The scan as d6 sends it: pages of 50 in JSON."""
    meta = {"limit": PAGE, "max_allowed_limit": PAGE}
    return [_JSON.encode({"data": records[i : i + PAGE], "meta": meta}) for i in range(0, len(records), PAGE)]


def checked(record: Record) -> Record:
    """What the client does with a record it decodes: normalise it, check its id (`D6Client._checked`)."""
    record = normalise_in_place(record)
    record_id("learners", record)
    return record


def scan(pages: list[bytes]) -> list[Page]:
    """What the client does with each page of a raw scan: check the page, keep its records' bytes."""
    scanned = []
    for number, body in enumerate(pages, 1):
        scanned.append(
            Page.of_raw(body, number=number, limit=PAGE, transform=checked, endpoint=LABEL, school_id=SCHOOL)
        )
    return scanned


def decode_floor(pages: list[bytes]) -> list[object]:
    """msgspec alone: every page decoded, nothing checked, normalised, hashed or stored."""
    return [_DECODE.decode(body) for body in pages]


async def bridge_poll(store: SnapshotStore, token: int, pages: list[bytes], lap: Laps) -> int:
    """One poll as the school poller does it (bridge/sync/poller.py); returns the events committed."""
    lap.start()
    scanned = scan(pages)
    lap("read pages")
    plan = await plan_raw_scan(store, SCHOOL, "learner", scanned, "learner_id")
    lap("plan (raw digests, hash, compare)")
    result = finish_diff(plan, await store.old_records(SCHOOL, "learner", plan))
    events = record_events(result, school_id=SCHOOL, resource="learner", emit_created=plan.previous.baseline)
    lap("old records + events")
    committed = await store.commit(SCHOOL, "learner", result, events, token=token)
    lap("commit")
    return len(committed.events)


async def naive_poll(redis: aioredis.Redis, pages: list[bytes]) -> int:
    changed = 0
    for body in pages:
        for record in json.loads(body)["data"]:
            rid = str(record["learner_id"])
            old = await redis.hget(NAIVE_HASH, rid)
            if old is None or json.loads(old) != record:
                await redis.hset(NAIVE_HASH, rid, json.dumps(record))
                await redis.xadd(NAIVE_EVENTS, {"type": "learner.updated", "body": json.dumps(record)})
                changed += 1
    return changed


async def main() -> bool:
    quiet_logs()
    school = make_school(SCHOOL, learners=LEARNERS, debtors=LEARNERS * 4 // 5)
    learners = list(school.learners.records.values())
    before, after = as_pages(learners), as_pages(with_changes(learners, CHANGES))
    laps = Laps()
    async with private_redis() as redis:
        keys = Keys("bench")
        store, lease = SnapshotStore(redis, keys, Scripts(redis)), Lease(redis, keys, Scripts(redis))
        token = 0

        async def bridge_before() -> None:
            nonlocal token
            await redis.flushdb()
            token = await lease.acquire(SCHOOL, "bench", ttl=600) or 0
            await bridge_poll(store, token, before, Laps())

        async def bridge_after() -> None:
            assert await bridge_poll(store, token, after, laps) == CHANGES

        async def naive_before() -> None:
            await redis.flushdb()
            await redis.hset(NAIVE_HASH, mapping={str(r["learner_id"]): json.dumps(r) for r in learners})

        async def naive_after() -> None:
            assert await naive_poll(redis, after) == CHANGES

        decoded: list[object] = []

        async def nothing() -> None:
            decoded.clear()  # the last run's pages go before the next is timed, as a poll's records do

        async def floor_run() -> None:
            decoded.append(decode_floor(after))

        floor_seconds, bridge_seconds = await paired_median_seconds(
            REPEATS, (nothing, floor_run), (bridge_before, bridge_after)
        )
        floor, bridge = LEARNERS / floor_seconds, LEARNERS / bridge_seconds
        naive = LEARNERS / await median_seconds(REPEATS, naive_before, naive_after)
    ratio = bridge / naive
    share = bridge / floor
    print(f"diff throughput, {LEARNERS:,} learners, {CHANGES} changed, median of {REPEATS}:")
    print(f"  bridge   {bridge:>9,.0f} records/s")
    print(f"  floor    {floor:>9,.0f} records/s (msgspec.json.decode of the same pages, nothing else)")
    print(f"  share    {share:>9.2f} of the floor")
    print(f"  baseline {naive:>9,.0f} records/s (json.loads + HGET per record, HSET + XADD per change)")
    print(f"  ratio    {ratio:>9.1f}x")
    print(
        "  bridge stages, median ms: "
        + ", ".join(f"{stage} {statistics.median(times) * 1000:.1f}" for stage, times in laps.seconds.items())
    )
    return verdict(
        "diff throughput",
        bridge >= TARGET_RATE and ratio >= TARGET_RATIO and share >= TARGET_FLOOR,
        f">= {TARGET_RATE:,} records/s, >= {TARGET_RATIO:g}x the baseline, >= {TARGET_FLOOR:g} of the floor",
    )


if __name__ == "__main__":
    sys.exit(0 if asyncio.run(main()) else 1)
