from __future__ import annotations

from typing import Any

import fakeredis
import msgspec
import pytest
import redis.asyncio as aioredis

from bridge.errors import LeaseLost, SnapshotConflict
from bridge.events.envelope import decode_event
from bridge.events.log import school_log
from bridge.store.keys import Keys
from bridge.store.scripts import Scripts
from bridge.sync.diff import diff, digest
from bridge.sync.events import record_events
from bridge.sync.lease import Lease
from bridge.sync.snapshot import SnapshotStore
from tests.sync.helpers import poll

KEYS = Keys("d6b")


def learners(n: int, start: int = 0, grade: str = "4") -> list[dict[str, Any]]:
    return [{"learner_id": i, "first_name": f"L{i}", "grade": grade} for i in range(start, start + n)]


async def dump(redis: aioredis.Redis) -> dict[bytes, Any]:
    """Every key with its full value: to prove a refused commit changed nothing."""
    out: dict[bytes, Any] = {}
    for key in sorted(await redis.keys("*")):
        kind = (await redis.type(key)).decode()
        if kind == "hash":
            out[key] = await redis.hgetall(key)
        elif kind == "string":
            out[key] = await redis.get(key)
        elif kind == "stream":
            out[key] = await redis.xrange(key)
        elif kind == "set":
            out[key] = await redis.smembers(key)
    return out


async def stream_events(redis: aioredis.Redis, school_id: int) -> list[Any]:
    return [decode_event(body) for body in await school_log(redis, KEYS, school_id)]


async def test_commit_writes_snapshot_events_and_meta(redis: aioredis.Redis) -> None:
    store, lease = SnapshotStore(redis, KEYS, Scripts(redis)), Lease(redis, KEYS, Scripts(redis))
    token = await lease.acquire(1000, "a", 30)
    committed = await poll(store, 1000, learners(25), token=token)
    assert [e.sequence for e in committed.events] == list(range(1, 26))
    previous = await store.load(1000, "learner")
    assert previous.version == 1 and previous.baseline and len(previous.hashes) == 25
    assert previous.hashes["3"] == digest(learners(25)[3])
    assert (await store.records(1000, "learner", ["3", "99"])) == {"3": learners(25)[3]}
    events = await stream_events(redis, 1000)
    assert events == committed.events
    meta = await store.meta(1000)
    assert meta.seq == 25 and meta.resources["learner"].count == 25 and meta.resources["learner"].last_polled
    assert await store.known_schools() == [1000]


async def test_sequences_are_consecutive_per_school_across_commits_and_resources(
    redis: aioredis.Redis,
) -> None:
    store = SnapshotStore(redis, KEYS, Scripts(redis))
    await poll(store, 1, learners(5), token=None)
    await poll(store, 2, learners(3), token=None)
    await poll(store, 1, learners(5, grade="5"), token=None)
    debtors = [{"accountable_person_id": i, "name": "x"} for i in range(4)]
    await poll(store, 1, debtors, token=None, resource="debtor")
    await poll(store, 1, learners(2, grade="5"), token=None)
    seqs = [e.sequence for e in await stream_events(redis, 1)]
    assert seqs == list(range(1, 18))
    assert [e.sequence for e in await stream_events(redis, 2)] == [1, 2, 3]
    entry_ids = [i for i, _ in await redis.xrange(KEYS.school_events(1))]
    assert entry_ids == [f"{n}-0".encode() for n in range(1, 18)]


async def test_wrong_or_stale_token_changes_nothing(redis: aioredis.Redis) -> None:
    store, lease = SnapshotStore(redis, KEYS, Scripts(redis)), Lease(redis, KEYS, Scripts(redis))
    token = await lease.acquire(7, "a", 30)
    assert token is not None
    await poll(store, 7, learners(5), token=token)
    before = await dump(redis)
    with pytest.raises(LeaseLost):
        await poll(store, 7, learners(6), token=token + 1)
    assert await dump(redis) == before
    await lease.release(7, token)
    with pytest.raises(LeaseLost):  # released: the old holder may not write any more
        await poll(store, 7, learners(6), token=token)
    newer = await lease.acquire(7, "b", 30)
    assert newer is not None and newer > token
    with pytest.raises(LeaseLost):
        await poll(store, 7, learners(6), token=token)
    assert await dump(redis) == before | {
        KEYS.lease(7).encode(): str(newer).encode(),
        KEYS.lease_owner(7).encode(): b"b",
        KEYS.fence(7).encode(): str(newer).encode(),
    }


async def test_version_mismatch_changes_nothing(redis: aioredis.Redis) -> None:
    store = SnapshotStore(redis, KEYS, Scripts(redis))
    await poll(store, 7, learners(5), token=None)
    previous = await store.load(7, "learner")
    old = await store.all_records(7, "learner")
    stale = diff(previous, learners(5, grade="6"), "learner_id", old)
    await poll(store, 7, learners(5, grade="5"), token=None)  # another commit wins meanwhile
    before = await dump(redis)
    events = record_events(stale, school_id=7, resource="learner")
    with pytest.raises(SnapshotConflict):
        await store.commit(7, "learner", stale, events, token=None)
    assert await dump(redis) == before


async def test_empty_commit_records_the_poll_and_hold_marker(redis: aioredis.Redis) -> None:
    store = SnapshotStore(redis, KEYS, Scripts(redis))
    await poll(store, 5, learners(30), token=None, emit_created=False)
    assert await stream_events(redis, 5) == []
    held = await poll(store, 5, learners(10), token=None)
    assert held.events == []
    previous = await store.load(5, "learner")
    assert previous.hold == frozenset(str(i) for i in range(10, 30)) and len(previous.hashes) == 30
    confirmed = await poll(store, 5, learners(10), token=None)
    assert [e.type for e in confirmed.events] == ["learner.removed"] * 20
    previous = await store.load(5, "learner")
    assert previous.hold is None and len(previous.hashes) == 10 and previous.version == 3
    assert (await store.meta(5)).resources["learner"].count == 10


async def test_commit_script_on_fakeredis() -> None:
    redis = fakeredis.FakeAsyncRedis(decode_responses=False)
    store, lease = SnapshotStore(redis, KEYS, Scripts(redis)), Lease(redis, KEYS, Scripts(redis))
    token = await lease.acquire(9, "demo", 30)
    await poll(store, 9, learners(3), token=token)
    committed = await poll(store, 9, learners(2, grade="7"), token=token)
    assert [(e.type, e.sequence) for e in committed.events] == [
        ("learner.updated", 4),
        ("learner.updated", 5),
        ("learner.removed", 6),
    ]
    assert [e.sequence for e in await stream_events(redis, 9)] == [1, 2, 3, 4, 5, 6]
    with pytest.raises(LeaseLost):
        await poll(store, 9, learners(1), token=(token or 0) + 5)
    assert msgspec.json.decode((await school_log(redis, KEYS, 9))[-1])["sequence"] == 6
    await redis.aclose()
