from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

import msgspec
import pytest
import redis.asyncio as aioredis

from bridge.events.envelope import Event, new_event
from bridge.events.ids import event_id_at
from bridge.events.log import EventLog
from bridge.events.outbox import Outbox
from bridge.store.keys import Keys
from bridge.store.scripts import Scripts
from bridge.sync.diff import PreviousSnapshot, diff
from bridge.sync.snapshot import SnapshotStore

KEYS = Keys("d6b")


async def commit_events(redis: aioredis.Redis, school_id: int, specs: list[tuple[str, float]]) -> list[Event]:
    """Commit events of the given (type, detection time) to a school, with an empty diff."""
    store = SnapshotStore(redis, KEYS, Scripts(redis))
    version = (await store.load(school_id, "learner")).version
    result = msgspec.structs.replace(diff(PreviousSnapshot(hashes={}), [], "learner_id", {}), version=version)
    events = [
        msgspec.structs.replace(
            new_event(
                etype,
                school_id=school_id,
                resource=etype.split(".")[0],
                resource_id=str(n),
                data={"n": n},
                now=at,
            ),
            id=event_id_at(at),  # exactly the given time, even in the past
        )
        for n, (etype, at) in enumerate(specs)
    ]
    return (await store.commit(school_id, "learner", result, events, token=None)).events


async def listing(log: EventLog, **filters: Any) -> list[Event]:
    """Walk every page."""
    out: list[Event] = []
    cursor = None
    while True:
        page, cursor = await log.list(cursor=cursor, **filters)
        out += page
        if cursor is None:
            return out


async def test_publish_then_list_and_get(redis: aioredis.Redis) -> None:
    now = time.time()
    committed = await commit_events(redis, 1, [("learner.created", now), ("debtor.updated", now + 0.001)])
    log = EventLog(redis, KEYS)
    assert await log.get(committed[0].id) is None  # not yet published
    assert await Outbox(redis, KEYS, Scripts(redis)).publish(1) == 2
    page, cursor = await log.list()
    assert [e.id for e in page] == [committed[1].id, committed[0].id] and cursor is None
    assert await log.get(committed[0].id) == committed[0]
    assert await log.get("evt_01JD7R8Q0E6W5ZJ2N9W1T8C4XK") is None
    assert await log.get("nonsense") is None


async def test_publish_twice_or_after_a_crash_adds_nothing_twice(redis: aioredis.Redis) -> None:
    now = time.time()
    await commit_events(redis, 1, [("learner.created", now + i / 1000) for i in range(7)])
    outbox = Outbox(redis, KEYS, Scripts(redis), batch=3)
    assert await outbox.publish(1) == 7
    assert await outbox.publish(1) == 0
    # A crash after the publish script and before the watermark: the watermark falls behind.
    await redis.hset(KEYS.school_meta(1), "published", 2)
    assert await outbox.pending() == {1: 5}
    assert await outbox.publish_pending() == 0
    assert await outbox.pending() == {}
    assert len(await listing(EventLog(redis, KEYS))) == 7
    deliveries = await redis.xrange(KEYS.delivery_stream())
    assert [int(f[b"sequence"]) for _, f in deliveries] == list(range(1, 8))
    assert all(f[b"school_id"] == b"1" and b"body" not in f for _, f in deliveries)  # in the school's slot


async def test_publish_pending_sweeps_every_lagging_school(redis: aioredis.Redis) -> None:
    now = time.time()
    for school in (1, 2, 3):
        await commit_events(redis, school, [("learner.created", now)] * school)
    outbox = Outbox(redis, KEYS, Scripts(redis))
    await outbox.publish(2)
    assert await outbox.pending() == {1: 1, 3: 3}
    assert await outbox.publish_pending() == 4
    assert len(await listing(EventLog(redis, KEYS))) == 6


async def test_filters_and_cursor_pagination(redis: aioredis.Redis) -> None:
    base = time.time()
    a = await commit_events(redis, 1, [("learner.created", base + i) for i in range(10)])
    b = await commit_events(redis, 2, [("debtor.removed", base + 10 + i) for i in range(5)])
    c = await commit_events(redis, 1, [("debtor.removed", base + 20 + i) for i in range(3)])
    await Outbox(redis, KEYS, Scripts(redis)).publish_pending()
    log = EventLog(redis, KEYS)
    everything = a + b + c
    newest_first = [e.id for e in reversed(everything)]

    page, cursor = await log.list(limit=4)
    assert [e.id for e in page] == newest_first[:4] and cursor == newest_first[3]
    assert [e.id for e in await listing(log, limit=4)] == newest_first
    assert [e.id for e in await listing(log, limit=18)] == newest_first

    assert {e.id for e in await listing(log, type="debtor.removed", limit=2)} == {e.id for e in b + c}
    assert [e.id for e in await listing(log, school_id=1, limit=3)] == [e.id for e in reversed(a + c)]
    assert [e.id for e in await listing(log, school_id=1, type="debtor.removed")] == [
        e.id for e in reversed(c)
    ]
    assert await listing(log, type="learner.removed") == []

    since = datetime.fromtimestamp(base + 5, UTC)
    until = datetime.fromtimestamp(base + 11, UTC)
    window = await listing(log, since=since, until=until, limit=2)
    assert [e.id for e in window] == [b[1].id, b[0].id, a[9].id, a[8].id, a[7].id, a[6].id, a[5].id]
    assert [e.id for e in await listing(log, since=base + 22)] == [c[2].id]

    with pytest.raises(ValueError, match="cursor"):
        await log.list(cursor="bogus")
    with pytest.raises(ValueError, match="limit"):
        await log.list(limit=0)


async def test_trim_removes_old_events_everywhere(redis: aioredis.Redis) -> None:
    now = time.time()
    day = 86400
    old = await commit_events(redis, 1, [("learner.created", now - 40 * day + i) for i in range(5)])
    young = await commit_events(redis, 1, [("learner.updated", now - 2 * day + i) for i in range(3)])
    other = await commit_events(redis, 2, [("debtor.created", now - 31 * day)])
    unpublished_old = await commit_events(redis, 3, [("debtor.created", now - 50 * day)])
    outbox = Outbox(redis, KEYS, Scripts(redis))
    await outbox.publish(1)
    await outbox.publish(2)
    log = EventLog(redis, KEYS)
    assert await log.trim(30, now=now) == 6
    assert [e.id for e in await listing(log)] == [e.id for e in reversed(young)]
    for event in old + other:
        assert await log.get(event.id) is None
    assert await redis.hlen(KEYS.event_locations()) == 3
    assert [f[b"id"].decode() for _, f in await redis.xrange(KEYS.school_events(1))] == [e.id for e in young]
    assert await redis.xlen(KEYS.school_events(2)) == 0
    assert await redis.xlen(KEYS.school_events(3)) == 1  # not published yet: kept
    assert await redis.zcard(KEYS.event_index(school_id=1, type="learner.created")) == 0
    assert await redis.zcard(KEYS.event_index(type="learner.updated")) == 3
    assert unpublished_old[0].sequence == 1
    # Sequences keep counting after a trim.
    more = await commit_events(redis, 2, [("debtor.created", now)])
    assert more[0].sequence == 2
