"""Kill -9 a committing poller at random instants; every invariant of the event log must still hold."""

from __future__ import annotations

import asyncio
import os
import random
import signal
import sys
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis

from bridge.events.envelope import decode_event
from bridge.events.log import EventLog, school_log
from bridge.events.outbox import Outbox
from bridge.store.keys import Keys
from bridge.store.scripts import Scripts
from bridge.sync.diff import digest
from bridge.sync.snapshot import SnapshotStore

KEYS = Keys("d6b")
SCHOOL = 4242
KILLS = 20
ROOT = Path(__file__).resolve().parents[2]


async def run_and_kill(redis_url: str, seed: int, rng: random.Random) -> int:
    """Start the killer, let it run a random while, SIGKILL it; returns the rounds it reported."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.sync.killer",
        redis_url,
        str(SCHOOL),
        str(seed),
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    assert process.stdout is not None
    line = await asyncio.wait_for(process.stdout.readline(), timeout=30)
    if line != b"ready\n":
        _out, err = await process.communicate()
        raise AssertionError(err.decode())
    # Let one round land, then kill at a random instant of the rounds that follow.
    first = await asyncio.wait_for(process.stdout.readline(), timeout=60)
    assert first == b"round\n", first
    await asyncio.sleep(rng.uniform(0.0, 0.6))
    os.kill(process.pid, signal.SIGKILL)
    out, err = await asyncio.wait_for(process.communicate(), timeout=10)
    assert process.returncode == -signal.SIGKILL, err
    return 1 + out.count(b"round")


async def test_kill_minus_nine_never_loses_or_duplicates_an_event(
    redis: aioredis.Redis, redis_url: str
) -> None:
    rng = random.Random(7)
    rounds = 0
    for n in range(KILLS):
        rounds += await run_and_kill(redis_url, 1000 + n, rng)
        await redis.delete(KEYS.lease(SCHOOL), KEYS.lease_owner(SCHOOL))  # the dead holder's lease expires
    print(f"{rounds} rounds")

    store = SnapshotStore(redis, KEYS, Scripts(redis))
    meta = await store.meta(SCHOOL)
    entries = await redis.xrange(KEYS.school_events(SCHOOL))
    # One event for every sequence, no gap, no duplicate.
    assert [entry_id for entry_id, _ in entries] == [f"{n}-0".encode() for n in range(1, meta.seq + 1)]
    events = [decode_event(body) for body in await school_log(redis, KEYS, SCHOOL)]
    assert [e.sequence for e in events] == list(range(1, meta.seq + 1))
    print(f"{meta.seq} events, {len({e.type for e in events})} types")
    assert len({e.id for e in events}) == len(events)
    assert [fields[b"id"].decode() for _, fields in entries] == [e.id for e in events]

    # Replaying the events from nothing rebuilds the snapshot exactly.
    state: dict[str, dict[str, Any]] = {}
    for event in events:
        if event.type == "learner.created":
            assert event.resource_id not in state
            state[event.resource_id] = event.data
        elif event.type == "learner.updated":
            assert event.resource_id in state and event.changes
            for field, change in event.changes.items():
                assert state[event.resource_id].get(field) == change.old
            state[event.resource_id] = event.data
        else:
            assert event.type == "learner.removed"
            assert state.pop(event.resource_id) == event.data
    records = await store.all_records(SCHOOL, "learner")
    assert records == state
    hashes = (await store.load(SCHOOL, "learner")).hashes
    assert hashes == {rid: digest(record) for rid, record in records.items()}
    assert meta.resources["learner"].count == len(records)

    # Publishing what the killed processes left behind: each event exactly once everywhere.
    await Outbox(redis, KEYS, Scripts(redis)).publish_pending()
    assert (await store.meta(SCHOOL)).published == meta.seq
    deliveries = await redis.xrange(KEYS.delivery_stream())
    assert sorted(f[b"id"].decode() for _, f in deliveries) == sorted(e.id for e in events)
    assert await redis.zcard(KEYS.event_index()) == len(events)
    newest = (await EventLog(redis, KEYS).list(limit=1))[0]
    assert newest and newest[0] == max(events, key=lambda e: e.id)
