"""The per-record sequence (docs/events.md#per-record-sequence) and `read_records`, on a real Redis."""

from __future__ import annotations

from typing import Any

import redis.asyncio as aioredis

from bridge.events.envelope import decode_event
from bridge.events.log import school_log
from bridge.store.keys import Keys
from bridge.store.records import pack_record
from bridge.store.scripts import Scripts
from bridge.sync.diff import digest, finish_diff, plan_diff
from bridge.sync.events import record_events
from bridge.sync.snapshot import RecordsPage, SnapshotStore
from tests.sync.helpers import poll

KEYS = Keys("d6b")
SCHOOL = 1000


def learners(n: int, grade: str = "4") -> list[dict[str, Any]]:
    return [{"learner_id": i, "first_name": f"L{i}", "grade": grade} for i in range(1, n + 1)]


def store_of(redis: aioredis.Redis) -> SnapshotStore:
    return SnapshotStore(redis, KEYS, Scripts(redis))


async def sequences(store: SnapshotStore, resource: str = "learner") -> dict[str, int]:
    page = await store.read_records(SCHOOL, resource, limit=5000)
    assert page.next_after is None
    return {row.resource_id: row.sequence for row in page.rows}


async def told(redis: aioredis.Redis) -> dict[str, int]:
    """Record id -> the sequence of the last event of the school's log about it."""
    return {e.resource_id: e.sequence for e in map(decode_event, await school_log(redis, KEYS, SCHOOL))}


async def test_a_silent_baseline_gives_every_record_sequence_zero(redis: aioredis.Redis) -> None:
    store = store_of(redis)
    await poll(store, SCHOOL, learners(30), token=None, emit_created=False)
    assert await sequences(store) == {str(i): 0 for i in range(1, 31)}
    # and a store reset's silent baseline starts again at 0, whatever the records had before
    await poll(store, SCHOOL, learners(30, grade="5"), token=None)
    assert set((await sequences(store)).values()) == set(range(1, 31))
    await redis.flushdb()
    await poll(store, SCHOOL, learners(30, grade="5"), token=None, emit_created=False)
    assert set((await sequences(store)).values()) == {0}


async def test_a_change_gives_the_record_its_event_sequence_and_leaves_the_others(
    redis: aioredis.Redis,
) -> None:
    store = store_of(redis)
    await poll(store, SCHOOL, learners(30), token=None, emit_created=False)
    await poll(store, 2000, learners(3), token=None)  # another school's sequences are its own
    scan = learners(30)
    scan[4]["grade"] = "9"  # learner 5 updated
    del scan[6]  # learner 7 removed
    scan.append({"learner_id": 99, "first_name": "New", "grade": "1"})
    committed = await poll(store, SCHOOL, scan, token=None)
    assert [(e.type, e.resource_id) for e in committed.events] == [
        ("learner.created", "99"),
        ("learner.updated", "5"),
        ("learner.removed", "7"),
    ]
    log = await told(redis)
    assert log == {"99": 1, "5": 2, "7": 3}
    now = await sequences(store)
    assert now["5"] == log["5"] == 2 and now["99"] == log["99"] == 1
    assert "7" not in now
    assert {rid: seq for rid, seq in now.items() if rid not in ("5", "99")} == {
        str(i): 0 for i in range(1, 31) if i not in (5, 7)
    }

    # a scan with nothing new: no event, and every record keeps its sequence (the diff sees digests only)
    assert plan_diff(await store.load(SCHOOL, "learner"), scan, "learner_id").changed == []
    again = await poll(store, SCHOOL, scan, token=None)
    assert again.events == [] and await sequences(store) == now
    scan[0]["grade"] = "8"
    third = await poll(store, SCHOOL, scan, token=None)
    assert [e.sequence for e in third.events] == [4]
    assert await sequences(store) == {**now, "1": 4}


async def test_with_the_initial_snapshot_each_record_has_its_created_sequence(redis: aioredis.Redis) -> None:
    store = store_of(redis)
    await poll(store, SCHOOL, [{"accountable_person_id": 1, "name": "a"}], token=None, resource="debtor")
    committed = await poll(store, SCHOOL, learners(40), token=None)
    created = {e.resource_id: e.sequence for e in committed.events}
    assert set(created.values()) == set(range(2, 42))  # the debtor took sequence 1
    assert await sequences(store) == created
    assert await sequences(store, "debtor") == {"1": 1}


async def test_a_change_no_event_tells_keeps_the_sequence(redis: aioredis.Redis) -> None:
    """Transactions have no `updated` event: a changed one is stored silently and keeps its sequence."""
    store = store_of(redis)

    async def commit(rows: list[dict[str, Any]]) -> list[int]:
        previous = await store.load(SCHOOL, "transaction")
        plan = plan_diff(previous, rows, lambda r: f"t{r['n']}:1")
        result = finish_diff(plan, await store.records(SCHOOL, "transaction", plan.need_old))
        events = record_events(result, school_id=SCHOOL, resource="transaction")
        committed = await store.commit(SCHOOL, "transaction", result, events, token=None)
        return [e.sequence for e in committed.events]

    await poll(store, SCHOOL, learners(2), token=None)  # sequences 1 and 2
    rows = [{"n": n, "amount": "10.00"} for n in range(3)]
    assert await commit(rows) == [3, 4, 5]
    rows[1]["amount"] = "11.00"
    assert await commit(rows) == []
    assert await sequences(store, "transaction") == {"t0:1": 3, "t1:1": 4, "t2:1": 5}
    page = await store.read_records(SCHOOL, "transaction", ids=["t1:1"])
    assert page.rows[0].data == {"n": 1, "amount": "11.00"}


async def test_a_snapshot_written_without_sequences_reads_as_zero_and_diffs_as_before(
    redis: aioredis.Redis,
) -> None:
    store = store_of(redis)
    records = learners(5)
    await redis.hset(
        KEYS.snapshot_hashes(SCHOOL, "learner"), mapping={str(r["learner_id"]): digest(r) for r in records}
    )
    await redis.hset(
        KEYS.snapshot_records(SCHOOL, "learner"),
        mapping={str(r["learner_id"]): pack_record(r) for r in records},
    )
    await redis.hset(KEYS.school_meta(SCHOOL), mapping={"seq": 7, "ver:learner": 1, "baseline:learner": 1})
    page = await store.read_records(SCHOOL, "learner")
    assert [(row.resource_id, row.sequence, row.data) for row in page.rows] == [
        (str(r["learner_id"]), 0, r) for r in records
    ]
    assert page.as_of_sequence == 7
    records[2]["grade"] = "7"
    committed = await poll(store, SCHOOL, records, token=None)
    assert [(e.type, e.resource_id, e.sequence) for e in committed.events] == [("learner.updated", "3", 8)]
    assert await sequences(store) == {"1": 0, "2": 0, "3": 8, "4": 0, "5": 0}


def in_order(ids: list[str]) -> list[str]:
    """The documented order: integer ids (no leading zero, at most 15 digits) by value, then text order."""

    def integer(rid: str) -> bool:
        return rid == "0" or (len(rid) <= 15 and rid.isdigit() and rid[0] != "0")

    return sorted(ids, key=lambda rid: (0, int(rid), "") if integer(rid) else (1, 0, rid))


async def test_pages_cover_every_record_once_in_id_order(redis: aioredis.Redis) -> None:
    store = store_of(redis)
    ids = [str(n) for n in (0, 2, 7, 10, 100, 11, 1, 999_999_999_999_999)]
    ids += ["007", "-5", "1234567890123456", "abc:1", "abc:10", "abc:2", "b", "A"]
    rows = [{"note_id": rid, "text": f"note {rid}"} for rid in ids]
    previous = await store.load(SCHOOL, "note")
    result = finish_diff(plan_diff(previous, rows, lambda r: r["note_id"]), {})
    await store.commit(
        SCHOOL, "note", result, record_events(result, school_id=SCHOOL, resource="note"), token=None
    )
    expected = in_order(ids)
    assert expected[:8] == ["0", "1", "2", "7", "10", "11", "100", "999999999999999"]
    for limit in (1, 3, 4, len(ids), 100):
        seen: list[str] = []
        after: str | None = None
        pages = 0
        while True:
            page = await store.read_records(SCHOOL, "note", after=after, limit=limit)
            pages += 1
            assert pages <= len(ids), "paging does not end"
            assert len(page.rows) <= limit and page.as_of_sequence == len(ids)
            seen += [row.resource_id for row in page.rows]
            assert all(
                row.data == {"note_id": row.resource_id, "text": f"note {row.resource_id}"}
                for row in page.rows
            )
            if page.next_after is None:
                break
            assert page.next_after == page.rows[-1].resource_id
            after = page.next_after
        assert seen == expected, limit
        assert pages == -(-len(ids) // limit)  # a full last page says it is the last


async def test_ids_give_exactly_the_records_that_exist_in_that_order(redis: aioredis.Redis) -> None:
    store = store_of(redis)
    await poll(store, SCHOOL, learners(10), token=None)
    page = await store.read_records(SCHOOL, "learner", ids=["7", "missing", "3", "7", "10"])
    assert [(row.resource_id, row.sequence) for row in page.rows] == [("7", 7), ("3", 3), ("10", 10)]
    assert page.rows[0].data == learners(10)[6] and page.next_after is None
    assert page.as_of_sequence == 10
    empty = await store.read_records(SCHOOL, "learner", ids=[])
    assert empty == RecordsPage(rows=[], as_of_sequence=10, next_after=None)


async def test_as_of_sequence_is_the_school_sequence_and_a_resource_without_snapshot_is_empty(
    redis: aioredis.Redis,
) -> None:
    store = store_of(redis)
    assert await store.read_records(SCHOOL, "learner") == RecordsPage(
        rows=[], as_of_sequence=0, next_after=None
    )
    await poll(store, SCHOOL, learners(4), token=None)
    await poll(store, SCHOOL, [{"accountable_person_id": 1, "name": "a"}], token=None, resource="debtor")
    seq = (await store.meta(SCHOOL)).seq
    assert seq == 5
    assert (await store.read_records(SCHOOL, "learner", limit=2)).as_of_sequence == seq
    assert await store.read_records(SCHOOL, "note") == RecordsPage(
        rows=[], as_of_sequence=seq, next_after=None
    )
    last = await store.read_records(SCHOOL, "learner", after="4")
    assert last == RecordsPage(rows=[], as_of_sequence=seq, next_after=None)
