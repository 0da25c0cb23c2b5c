"""Data written before the `bodies` hash (a deployment upgraded in place): event stream entries that carry
their envelope, an event erased the old way (its entry deleted, its stand-in in `erased`), a hand-off entry
with a body. It still reads; retention deletes bodies with their entries; and the first erasure rewrites
the stream so that no byte of a deleted entry is left in it (a stream keeps them until a whole node goes).
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

import msgspec
import pytest
import redis.asyncio as aioredis

from bridge.events.envelope import encode_event, new_event
from bridge.events.log import EventLog, erased_body, school_log
from bridge.events.outbox import Outbox
from bridge.store.keys import META_BODIES, META_PUBLISHED, META_SEQ, Keys
from bridge.store.scripts import Scripts
from bridge.sync.snapshot import SnapshotStore
from tests.delivery.test_retention import DAY, commit_events

KEYS = Keys("d6b")
SCHOOL = 7


@pytest.fixture
async def raw_dumps(redis: aioredis.Redis) -> AsyncIterator[None]:
    """DUMP without LZF, so a value in it is there byte for byte."""
    before = (await redis.config_get("rdbcompression"))["rdbcompression"]
    await redis.config_set("rdbcompression", "no")
    yield
    await redis.config_set("rdbcompression", before or "yes")


async def _legacy(redis: aioredis.Redis) -> list[bytes]:
    """Three events of learners 1, 2, 1 as the bridge wrote them before: envelopes in the stream, the
    second erased the old way, all published; returns the envelopes."""
    bodies = []
    for seq, learner in ((1, 1), (2, 2), (3, 1)):
        event = new_event(
            "learner.created" if seq < 3 else "learner.updated",
            school_id=SCHOOL,
            resource="learner",
            resource_id=str(learner),
            data={"learner_id": learner, "id_number": f"ID-{learner}-{seq}-secret"},
        )
        body = encode_event(msgspec.structs.replace(event, sequence=seq))
        bodies.append(body)
        await redis.xadd(
            KEYS.school_events(SCHOOL), {"id": event.id, "type": event.type, "body": body}, f"{seq}-0"
        )
        await redis.hset(KEYS.event_locations(), event.id, f"{SCHOOL}:{seq}:{event.type}")
        await redis.zadd(KEYS.event_index(), {event.id: 0})
    await redis.xdel(KEYS.school_events(SCHOOL), "2-0")
    await redis.hset(KEYS.school_erased(SCHOOL), "2", erased_body(bodies[1]))
    await redis.hset(KEYS.school_meta(SCHOOL), mapping={META_SEQ: 3, META_PUBLISHED: 3})
    await redis.sadd(KEYS.known_schools(), str(SCHOOL))
    return bodies


@pytest.mark.usefixtures("raw_dumps")
async def test_old_data_reads_and_its_first_erasure_leaves_no_byte_of_it(redis: aioredis.Redis) -> None:
    bodies = await _legacy(redis)
    log = EventLog(redis, KEYS)
    ids = [msgspec.json.decode(b)["id"] for b in bodies]
    assert await log.raw(ids) == [bodies[0], erased_body(bodies[1]), bodies[2]]
    assert await school_log(redis, KEYS, SCHOOL) == [bodies[0], bodies[2]]
    assert b"ID-2-2-secret" in (await redis.dump(KEYS.school_events(SCHOOL)) or b"")  # deleted, still there

    seq, live, erased = await log.events_of_record(SCHOOL, "learner", "1")
    assert (seq, [(s, i) for s, i, _b in live], erased) == (3, [(1, ids[0]), (3, ids[2])], [])
    assert [b for _s, _i, b in live] == [bodies[0], bodies[2]]
    done = await SnapshotStore(redis, KEYS, Scripts(redis)).erase(
        SCHOOL, "learner", "1", seq=seq, events=[(s, i, erased_body(b)) for s, i, b in live]
    )
    assert done is not None and done.events == 2

    assert await redis.hget(KEYS.school_meta(SCHOOL), META_BODIES) == b"1"
    entries = await redis.xrange(KEYS.school_events(SCHOOL)) or []
    assert [e for e, _f in entries] == [b"1-0", b"3-0"] and all(b"body" not in (f or {}) for _e, f in entries)
    stream = await redis.dump(KEYS.school_events(SCHOOL)) or b""
    assert b"secret" not in stream
    assert not any(b"secret" in v for v in await redis.hvals(KEYS.school_bodies(SCHOOL)))
    assert [e.data for e in await log._bodies(ids)] == [{"erased": True}] * 3
    assert sorted((await log.events_of_record(SCHOOL, "learner", "1"))[2]) == sorted([ids[0], ids[2]])


async def test_retention_deletes_the_bodies_with_their_entries(redis: aioredis.Redis) -> None:
    now = time.time()
    committed = await commit_events(
        redis,
        3,
        [("learner.created", now - 40 * DAY), ("learner.updated", now - 39 * DAY), ("learner.created", now)],
    )
    await Outbox(redis, KEYS, Scripts(redis)).publish(3)
    assert sorted(await redis.hkeys(KEYS.school_bodies(3))) == [b"1", b"2", b"3"]
    await EventLog(redis, KEYS).trim(30, now=now)
    assert await redis.hkeys(KEYS.school_bodies(3)) == [b"3"]
    assert (await EventLog(redis, KEYS).get(committed[2].id)) is not None
