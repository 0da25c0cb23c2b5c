"""The diff's fast path (docs/development.md#the-diff-fast-path): a record whose bytes the snapshot knows is
taken as unchanged without being decoded; any other is decoded and compared as before, so a retyped id or
reordered keys are still no change (only the stored raw digest moves, silently), a real change is still
found, and a scan with an id twice follows the duplicate rule as before. Every test runs both ways a raw scan
is planned: against the raw digests stored as one set (`sighted`), and against every stored value (`full`).
Real Redis, real commit script."""

from __future__ import annotations

import time
from typing import Any

import msgspec
import pytest
import redis.asyncio as aioredis

from bridge.d6.pagination import Page, raw_listing
from bridge.d6.records import normalise_in_place, record_id
from bridge.errors import D6MalformedResponse
from bridge.events.envelope import FieldChange
from bridge.store.codec import as_bytes, as_text
from bridge.store.keys import META_PUBLISHED, META_SEQ, Keys, meta_baseline
from bridge.store.records import pack_record
from bridge.store.scripts import Scripts
from bridge.sync.diff import (
    DIGEST_BYTES,
    RAW_TRUST_SECONDS,
    DiffPlan,
    PreviousSnapshot,
    digest,
    finish_diff,
    plan_diff,
    plan_raw_diff,
    raw_digest,
    stored_digest,
)
from bridge.sync.events import record_events
from bridge.sync.poller import plan_raw_scan
from bridge.sync.snapshot import CommitResult, SnapshotStore, sequence_of

KEYS = Keys("d6b")
SCHOOL = 1000
LABEL = "GET /v2/finplus/debtmanagement/learners"
_JSON = msgspec.json.Encoder()


class Decoded:
    """The client's check of each record a raw page decodes, counting the ids it decoded."""

    def __init__(self) -> None:
        self.ids: list[int] = []

    def __call__(self, record: dict[str, Any]) -> dict[str, Any]:
        record = normalise_in_place(record)
        self.ids.append(record_id("learners", record))
        return record


def pages(rows: list[Any], decoded: Decoded, size: int = 3) -> list[Page]:
    """The rows as d6 sends them (JSON pages of `size`), read as the client reads a raw scan. A row that is
    bytes is sent as those bytes."""
    out = []
    for number, start in enumerate(range(0, len(rows), size), 1):
        items = [r if isinstance(r, bytes) else _JSON.encode(r) for r in rows[start : start + size]]
        body = b'{"data": [' + b", ".join(items) + b'], "meta": {"limit": %d}}' % size
        out.append(
            Page.of_raw(body, number=number, limit=size, transform=decoded, endpoint=LABEL, school_id=SCHOOL)
        )
    return out


def learners(n: int, grade: str = "4") -> list[dict[str, Any]]:
    return [{"learner_id": i, "first_name": f"L{i}", "grade": grade} for i in range(1, n + 1)]


class FullStore(SnapshotStore):
    """A store whose raw digests as one set are never taken: every raw scan planned against every value."""

    async def known_raws(self, school_id: int, resource: str) -> PreviousSnapshot | None:
        return None


@pytest.fixture(params=["sighted", "full"])
def store(redis: aioredis.Redis, request: pytest.FixtureRequest) -> SnapshotStore:
    kind = SnapshotStore if request.param == "sighted" else FullStore
    return kind(redis, KEYS, Scripts(redis))


def stored(row: dict[str, Any] | bytes) -> bytes:
    """The digest-hash value of a row d6 sent (JSON of `row`, or those bytes), before its sequence."""
    body = row if isinstance(row, bytes) else _JSON.encode(row)
    return stored_digest(digest(normalise_in_place(msgspec.json.decode(body))), raw_digest(body))


async def raw_poll(
    store: SnapshotStore, rows: list[Any], *, emit_created: bool = True, now: float | None = None
) -> tuple[DiffPlan, CommitResult | None, Decoded]:
    """One poll of a raw scan as the poller does it; an untrusted scan (an id twice) commits nothing but
    its scan digest."""
    decoded = Decoded()
    plan = await plan_raw_scan(store, SCHOOL, "learner", pages(rows, decoded), "learner_id", now=now)
    if plan.duplicated:
        await store.unsettle(SCHOOL, "learner", plan.scan_digest, 60)
        if not plan.trusted:
            return plan, None, decoded
    result = finish_diff(plan, await store.old_records(SCHOOL, "learner", plan))
    events = record_events(result, school_id=SCHOOL, resource="learner", emit_created=emit_created)
    return plan, await store.commit(SCHOOL, "learner", result, events, token=None, now=now), decoded


async def values(redis: aioredis.Redis) -> dict[str, bytes]:
    raw = await redis.hgetall(KEYS.snapshot_hashes(SCHOOL, "learner"))
    return {as_text(k): as_bytes(v) for k, v in raw.items()}


async def test_a_record_with_the_bytes_stored_is_neither_decoded_nor_told(
    store: SnapshotStore, redis: aioredis.Redis
) -> None:
    first, _, decoded = await raw_poll(store, learners(10), emit_created=False)
    assert first.skipped == 0 and sorted(decoded.ids) == list(range(1, 11))
    before = await values(redis)
    for row in learners(10):  # each value: canonical digest, 'x', the digest of the bytes d6 sent
        value = before[str(row["learner_id"])]
        assert value == digest(row) + b"x" + raw_digest(_JSON.encode(row)).to_bytes(8, "little")

    plan, committed, decoded = await raw_poll(store, learners(10))
    assert plan.skipped == 10 and decoded.ids == []  # not one record decoded
    assert committed is not None and committed.events == []
    assert plan.created == plan.changed == plan.missing == plan.retag == []
    assert await values(redis) == before


async def test_a_real_change_is_found_and_its_new_bytes_are_fast_next_time(
    store: SnapshotStore, redis: aioredis.Redis
) -> None:
    await raw_poll(store, learners(10), emit_created=False)
    changed = learners(10)
    changed[4] = {**changed[4], "grade": "5"}
    plan, committed, decoded = await raw_poll(store, changed)
    assert decoded.ids == [5] and plan.skipped == 9
    assert committed is not None
    (event,) = committed.events
    assert event.type == "learner.updated" and event.resource_id == "5"
    assert event.changes is not None and set(event.changes) == {"grade"}
    grade = event.changes["grade"]
    assert isinstance(grade, FieldChange) and grade.old == "4" and grade.new == "5"
    value = (await values(redis))["5"]
    assert sequence_of(value) == event.sequence  # told by that event, after both digests

    again, committed, decoded = await raw_poll(store, changed)
    assert again.skipped == 10 and decoded.ids == [] and committed is not None and committed.events == []


async def test_a_retyped_id_or_reordered_keys_is_no_change_and_the_next_scan_is_fast(
    store: SnapshotStore, redis: aioredis.Redis
) -> None:
    rows: list[Any] = learners(6)
    await raw_poll(store, rows, emit_created=False)
    changed = list(rows)
    changed[2] = {**changed[2], "grade": "9"}  # a real change first: learner 3 carries a sequence
    _, told, _ = await raw_poll(store, changed)
    assert told is not None and [e.resource_id for e in told.events] == ["3"]
    sequence = told.events[0].sequence

    retyped: list[Any] = list(changed)
    retyped[0] = {**changed[0], "learner_id": "1"}  # "1" for 1
    retyped[2] = {"grade": "9", "first_name": "L3", "learner_id": 3}  # the same record, keys reordered
    retyped[4] = b'{"learner_id": 5,  "first_name": "L5", "grade": "4"}'  # other spacing
    plan, committed, decoded = await raw_poll(store, retyped)
    assert sorted(decoded.ids) == [1, 3, 5] and plan.skipped == 3
    assert committed is not None and committed.events == []  # no change
    assert plan.changed == [] and sorted(plan.retag) == ["1", "3", "5"]
    after = await values(redis)
    assert sequence_of(after["3"]) == sequence  # a retag keeps the record's sequence
    assert after["1"][:DIGEST_BYTES] == digest({**rows[0]})  # the canonical digest did not move

    again, committed, decoded = await raw_poll(store, retyped)
    assert again.skipped == 6 and decoded.ids == [] and again.retag == []
    assert committed is not None and committed.events == []
    page = await store.read_records(SCHOOL, "learner")
    assert {row.resource_id: row.sequence for row in page.rows}["3"] == sequence


async def test_values_written_before_raw_digests_are_read_and_retagged_silently(
    store: SnapshotStore, redis: aioredis.Redis
) -> None:
    rows = learners(4)
    old = {str(r["learner_id"]): digest(r) for r in rows}
    old["2"] += b"17"  # learner 2: digest and sequence, as values were written before raw digests
    old["3"] += b"r" + bytes(8) + b"23"  # learner 3: a raw digest of the hash used before (BLAKE2b's)
    await redis.hset(KEYS.snapshot_hashes(SCHOOL, "learner"), mapping=old)
    previous = await store.load(SCHOOL, "learner")
    assert previous.raws == {} and previous.hashes["2"] == digest(rows[1])
    assert sequence_of(old["3"]) == 23
    await redis.hset(KEYS.school_meta(SCHOOL), mapping={meta_baseline("learner"): 1})

    plan, committed, decoded = await raw_poll(store, rows)
    assert sorted(decoded.ids) == [1, 2, 3, 4] and committed is not None and committed.events == []
    assert sorted(plan.retag) == ["1", "2", "3", "4"]
    after = await values(redis)
    assert sequence_of(after["2"]) == 17 and after["2"] == stored(rows[1]) + b"17"
    assert sequence_of(after["3"]) == 23 and after["3"] == stored(rows[2]) + b"23"
    assert after["1"] == stored(rows[0])
    fast, _, decoded = await raw_poll(store, rows)
    assert fast.skipped == 4 and decoded.ids == []


async def test_a_removed_and_a_created_record_are_found_on_the_fast_path(store: SnapshotStore) -> None:
    await raw_poll(store, learners(5), emit_created=False)
    rows = [*learners(5)[1:], {"learner_id": 6, "first_name": "L6", "grade": "1"}]
    plan, committed, decoded = await raw_poll(store, rows)
    assert set(decoded.ids) == {6} and plan.skipped == 4  # (a removal is planned against every value)
    assert committed is not None
    assert [(e.type, e.resource_id) for e in committed.events] == [
        ("learner.created", "6"),
        ("learner.removed", "1"),
    ]


def _plain_plan(previous: PreviousSnapshot, rows: list[dict[str, Any]]) -> DiffPlan:
    return plan_diff(previous, [normalise_in_place(dict(r)) for r in rows], "learner_id")


async def test_an_id_twice_follows_the_duplicate_rule_as_before(store: SnapshotStore) -> None:
    await raw_poll(store, learners(6), emit_created=False)
    shifted = learners(6)
    shifted = [*shifted[:3], shifted[2], *shifted[3:]]  # learner 3 repeated (its bytes twice) across pages
    plan, committed, _ = await raw_poll(store, shifted)
    assert committed is None and not plan.trusted and plan.duplicated == ("3",)
    plain = _plain_plan(await store.load(SCHOOL, "learner"), shifted)
    assert plan.scan_digest == plain.scan_digest  # the digest the rule compares, as without the fast path
    again, committed, _ = await raw_poll(store, shifted)
    assert again.trusted and committed is not None and committed.events == []

    changed = learners(6)
    moved = [*changed[:4], {**changed[3], "grade": "7"}, *changed[4:]]  # 4 twice, its last row changed
    plan, committed, _ = await raw_poll(store, moved)
    assert committed is None and plan.duplicated == ("4",)
    assert plan.scan_digest == _plain_plan(await store.load(SCHOOL, "learner"), moved).scan_digest
    plan, committed, _ = await raw_poll(store, moved)
    assert plan.trusted and committed is not None
    (event,) = committed.events  # the last row wins
    assert event.type == "learner.updated" and event.resource_id == "4" and event.data["grade"] == "7"


async def test_an_id_twice_is_found_when_a_removal_evens_out_the_count(store: SnapshotStore) -> None:
    await raw_poll(store, learners(6), emit_created=False)
    rows = learners(6)
    # learner 4 as stored and as changed (the list moved under the cursor), and learner 6 gone: as many rows
    # of stored records as the snapshot holds
    moved = [*rows[:4], {**rows[3], "grade": "7"}, rows[4]]
    plan, committed, _ = await raw_poll(store, moved)
    assert committed is None and not plan.trusted and plan.duplicated == ("4",)
    plan, committed, _ = await raw_poll(store, moved)
    assert plan.trusted and committed is not None
    assert [(e.type, e.resource_id) for e in committed.events] == [
        ("learner.updated", "4"),
        ("learner.removed", "6"),
    ]


def test_a_raw_digest_two_ids_share_is_not_taken_on_its_bytes() -> None:
    rows = learners(2)
    shared = raw_digest(_JSON.encode(rows[0]))
    previous = PreviousSnapshot(hashes={"1": digest(rows[0]), "2": digest(rows[1])}, raws={})
    decoded = Decoded()
    plan = plan_raw_diff(previous, pages(rows, decoded), "learner_id")
    assert plan.skipped == 0 and sorted(decoded.ids) == [1, 2] and plan.changed == []
    assert sorted(plan.retag) == ["1", "2"] and plan.raws["1"] == shared


async def test_two_records_of_one_raw_digest_keep_no_set_and_are_still_told_apart(
    store: SnapshotStore, redis: aioredis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A collision of the 64-bit raw digest between two records, forced: the set, whose digests must each
    name one record, is not stored, and without it (nor the time of the last scan that decoded every record)
    every scan decodes every record; a change of either is told."""
    real = raw_digest
    one, two = _JSON.encode(learners(2)[0]), _JSON.encode(learners(2)[1])

    def colliding(row: Any) -> int:
        return real(one) if bytes(row) in (one, two) else real(row)

    monkeypatch.setattr("bridge.sync.diff.raw_digest", colliding)
    rows = learners(5)
    await raw_poll(store, rows, emit_created=False)
    assert not await redis.exists(*KEYS.snapshot_raws(SCHOOL, "learner"))
    rows[4] = {**rows[4], "grade": "6"}
    plan, committed, decoded = await raw_poll(store, rows)
    assert sorted(decoded.ids) == [1, 2, 3, 4, 5] and plan.skipped == 0
    assert committed is not None and [e.resource_id for e in committed.events] == ["5"]
    assert not await redis.exists(*KEYS.snapshot_raws(SCHOOL, "learner"))
    rows[1] = {**rows[1], "grade": "7"}  # no longer the colliding bytes: the set is kept again
    plan, committed, decoded = await raw_poll(store, rows)
    assert committed is not None and [e.resource_id for e in committed.events] == ["2"]
    assert await redis.exists(KEYS.snapshot_raws(SCHOOL, "learner")[0])
    plan, committed, decoded = await raw_poll(store, rows)
    assert plan.skipped == 5 and decoded.ids == [] and committed is not None and committed.events == []


async def test_load_leaves_out_a_raw_digest_two_ids_share(
    store: SnapshotStore, redis: aioredis.Redis
) -> None:
    value = stored(learners(1)[0])
    await redis.hset(
        KEYS.snapshot_hashes(SCHOOL, "learner"), mapping={"1": value, "9": value, "2": value + b"5"}
    )
    previous = await store.load(SCHOOL, "learner")
    assert previous.raws == {} and set(previous.hashes) == {"1", "2", "9"}


async def test_the_raw_digests_are_stored_as_one_set_valid_at_their_version_only(
    store: SnapshotStore, redis: aioredis.Redis
) -> None:
    rows = learners(6)
    await raw_poll(store, rows, emit_created=False)
    known = await SnapshotStore(redis, KEYS, Scripts(redis)).known_raws(SCHOOL, "learner")
    assert known is not None and known.count == 6
    assert known.known is not None
    assert set(known.known.base) == {raw_digest(_JSON.encode(row)) for row in rows}

    # an erasure moves the version: the set is not taken, and the next scan, planned against every value,
    # stores it again
    plan, committed, _ = await raw_poll(store, [*rows[:2], {**rows[2], "grade": "5"}, *rows[3:]])
    assert committed is not None
    seq = int(await redis.hget(KEYS.school_meta(SCHOOL), META_SEQ) or 0)
    await redis.hset(KEYS.school_meta(SCHOOL), META_PUBLISHED, seq)  # an erasure waits for publishing
    assert await store.erase(SCHOOL, "learner", "3", seq=seq, events=[]) is not None
    assert await store.known_raws(SCHOOL, "learner") is None
    plan, committed, decoded = await raw_poll(store, [*rows[:2], {**rows[2], "grade": "5"}, *rows[3:]])
    assert plan.skipped == 6 and decoded.ids == [] and committed is not None and committed.events == []
    assert (await SnapshotStore(redis, KEYS, Scripts(redis)).known_raws(SCHOOL, "learner")) is not None

    # a scan with an id twice: none stored while it is not trusted, then the set of its records
    now = [*rows[:2], {**rows[2], "grade": "5"}, *rows[3:]]
    twice = [*now, now[0]]
    plan, committed, _ = await raw_poll(store, twice)
    assert not plan.trusted and committed is None
    plan, committed, _ = await raw_poll(store, twice)
    assert plan.trusted and plan.duplicated == ("1",) and committed is not None
    known = await SnapshotStore(redis, KEYS, Scripts(redis)).known_raws(SCHOOL, "learner")
    assert known is not None and known.known is not None
    digests = {raw_digest(_JSON.encode(row)) for row in now}
    assert known.known.unknown(digests) == set()
    plan, _, decoded = await raw_poll(store, now)
    assert plan.skipped == 6 and decoded.ids == []

    # the erased record, changed by d6: no event, its old digest stays, and its new bytes are not known
    plan, committed, decoded = await raw_poll(store, rows)
    assert decoded.ids == [3] and committed is not None and committed.events == []
    known = await SnapshotStore(redis, KEYS, Scripts(redis)).known_raws(SCHOOL, "learner")
    assert known is not None and known.known is not None
    unknown = known.known.unknown({raw_digest(_JSON.encode(row)) for row in rows})
    assert unknown == {raw_digest(_JSON.encode(rows[2]))}


async def test_the_set_is_added_to_and_written_whole_again_when_its_log_grows(
    store: SnapshotStore, redis: aioredis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("bridge.sync.diff.RAW_LOG_MIN", 6)
    rows = learners(8)
    await raw_poll(store, rows, emit_created=False)
    base, added, removed = KEYS.snapshot_raws(SCHOOL, "learner")
    whole = await redis.get(base)
    grades = ["5", "4", "5", "6"]  # learner 2 changes, changes back (its old bytes again), and again
    for n, grade in enumerate(grades, 1):
        rows[1] = {**rows[1], "grade": grade}
        plan, committed, decoded = await raw_poll(store, rows)
        assert committed is not None and [e.resource_id for e in committed.events] == ["2"]
        assert set(decoded.ids) == {2} and plan.skipped == 7
        if n <= 3:  # two digests a change in the log: added to, the whole set untouched
            assert await redis.get(base) == whole
            assert len(await redis.get(added) or b"") == len(await redis.get(removed) or b"") == 8 * n
        else:  # the log would pass 6: written whole, the log emptied
            assert await redis.get(base) != whole and not await redis.exists(added, removed)
    again, committed, decoded = await raw_poll(store, rows)
    assert again.skipped == 8 and decoded.ids == [] and committed is not None and committed.events == []


async def test_every_record_is_decoded_again_once_a_day_so_a_change_its_bytes_hid_is_found(
    store: SnapshotStore, redis: aioredis.Redis
) -> None:
    rows = learners(5)
    await raw_poll(store, rows, emit_created=False)
    # What a collision of the raw digest would leave: the snapshot holds learner 4 in grade 3, and the raw
    # digest of the bytes d6 sends now (grade 4), so those bytes are taken as unchanged.
    older = {**rows[3], "grade": "3"}
    await redis.hset(
        KEYS.snapshot_hashes(SCHOOL, "learner"),
        "4",
        stored(older)[:DIGEST_BYTES] + stored(rows[3])[DIGEST_BYTES:],
    )
    await redis.hset(KEYS.snapshot_records(SCHOOL, "learner"), "4", pack_record(older))
    plan, committed, decoded = await raw_poll(store, rows)
    assert plan.skipped == 5 and committed is not None and committed.events == []

    later = time.time() + RAW_TRUST_SECONDS + 60
    plan, committed, decoded = await raw_poll(store, rows, now=later)
    assert plan.skipped == 0 and sorted(decoded.ids) == [1, 2, 3, 4, 5] and plan.retag == []
    assert committed is not None
    (event,) = committed.events
    assert event.type == "learner.updated" and event.resource_id == "4"
    assert event.changes is not None and event.changes["grade"].new == "4"
    plan, committed, decoded = await raw_poll(store, rows, now=later + 1)  # trusted again for a day
    assert plan.skipped == 5 and decoded.ids == []


async def test_a_record_that_cannot_be_read_fails_the_scan_and_nothing_is_committed(
    store: SnapshotStore, redis: aioredis.Redis
) -> None:
    await raw_poll(store, learners(4), emit_created=False)
    before = await values(redis)
    for bad, said in (
        ({"first_name": "X", "grade": "4"}, "record without a usable learner_id (got null) (page 2)"),
        (b"[1, 2]", "record 1 is not an object (got list)"),
    ):
        rows: list[Any] = [*learners(4), bad]
        with pytest.raises(D6MalformedResponse) as caught:
            await raw_poll(store, rows)
        assert said in str(caught.value)
        assert await values(redis) == before


@pytest.mark.parametrize(
    ("body", "said"),
    [
        (b"[]", "expected a JSON object with data and meta, got list"),
        (b'{"data": {}, "meta": {}}', "`data` is not a list (got dict)"),
        (b'{"data": []}', "`meta` is missing or not an object (got NoneType)"),
        (b'{"data": [], "meta": {"next_cursor": 5}}', "`meta.next_cursor` is not text (got int)"),
        (b'{"data": [', "body is not valid JSON"),
    ],
)
def test_a_raw_page_of_the_wrong_shape_fails_as_a_decoded_one_does(body: bytes, said: str) -> None:
    with pytest.raises(D6MalformedResponse) as caught:
        raw_listing(body, endpoint=LABEL, school_id=SCHOOL)
    assert said in str(caught.value)
