from __future__ import annotations

from typing import Any

import pytest

from bridge.errors import D6MalformedResponse
from bridge.events.envelope import FieldChange
from bridge.sync.diff import DiffResult, PreviousSnapshot, diff, digest
from bridge.sync.events import integration_events, integration_id, record_events

Record = dict[str, Any]


def learner(i: int, **extra: Any) -> Record:
    return {"learner_id": i, "first_name": f"L{i}", "grade": "4", **extra}


def snapshot_of(
    records: list[Record], hold: frozenset[str] | None = None
) -> tuple[PreviousSnapshot, dict[str, Record]]:
    by_id = {str(r["learner_id"]): r for r in records}
    return PreviousSnapshot(hashes={k: digest(v) for k, v in by_id.items()}, hold=hold, version=3), by_id


def apply(records: dict[str, Record], result: DiffResult) -> dict[str, Record]:
    """The snapshot after the commit, as the store would have it."""
    after = dict(records)
    for rid, _digest, record in result.upserts:
        after[rid] = record
    for rid in result.deletes:
        del after[rid]
    return after


def test_created_updated_removed_with_exact_changes() -> None:
    prev, old = snapshot_of([learner(1), learner(2, parent1_id=7), learner(3)])
    scan = [
        learner(1),
        {"learner_id": 2, "first_name": "L2", "grade": "5", "gender": "F"},  # grade changed, field swap
        learner(4),
    ]
    result = diff(prev, scan, "learner_id", old)
    assert [c.id for c in result.created] == ["4"]
    assert [c.id for c in result.removed] == ["3"]
    assert result.removed[0].record == learner(3)
    assert [c.id for c in result.updated] == ["2"]
    assert result.updated[0].record == scan[1]
    assert result.updated[0].changes == {
        "grade": FieldChange(old="4", new="5"),
        "gender": FieldChange(old=None, new="F"),
        "parent1_id": FieldChange(old=7, new=None),
    }
    assert result.held_back == 0 and result.hold is None and result.version == 3
    assert sorted(r for r, _, _ in result.upserts) == ["2", "4"]
    assert result.deletes == ["3"]


def test_reordered_objects_and_normalised_values_are_no_change() -> None:
    prev, old = snapshot_of([learner(1, address={"line1": "a", "city": "b"}, tags=[1, 2])])
    scan = [
        {
            "tags": [1, 2],
            "address": {"city": "b", "line1": "a"},
            "grade": "4",
            "first_name": "L1",
            "learner_id": 1,
        }
    ]
    result = diff(prev, scan, "learner_id", old)
    assert result.empty and not result.upserts and not result.deletes


def test_nested_change_is_reported_at_top_level() -> None:
    prev, old = snapshot_of([learner(1, address={"city": "a"})])
    result = diff(prev, [learner(1, address={"city": "b"})], "learner_id", old)
    assert result.updated[0].changes == {"address": FieldChange(old={"city": "a"}, new={"city": "b"})}


def test_order_of_the_scan_does_not_matter() -> None:
    prev, old = snapshot_of([learner(i) for i in range(10)])
    scan = [learner(i, grade="5" if i % 3 == 0 else "4") for i in range(12)]
    a = diff(prev, scan, "learner_id", old)
    b = diff(prev, list(reversed(scan)), "learner_id", old)
    assert sorted(c.id for c in a.updated) == sorted(c.id for c in b.updated) == ["0", "3", "6", "9"]
    assert sorted(c.id for c in a.created) == sorted(c.id for c in b.created) == ["10", "11"]


def test_mass_removal_is_held_back_then_confirmed_by_the_next_scan() -> None:
    prev, old = snapshot_of([learner(i) for i in range(40)])
    scan = [learner(i) for i in range(15)] + [learner(100), learner(1, grade="9")]
    first = diff(prev, scan, "learner_id", old)
    assert first.held_back == 25 and first.removed == [] and first.deletes == []
    assert first.hold == frozenset(str(i) for i in range(15, 40))
    assert [c.id for c in first.created] == ["100"] and [c.id for c in first.updated] == ["1"]

    after = apply(old, first)  # held records stay in the snapshot
    assert len(after) == 41
    prev2 = PreviousSnapshot(hashes={k: digest(v) for k, v in after.items()}, hold=first.hold, version=4)
    second = diff(prev2, scan, "learner_id", after)
    assert sorted(int(c.id) for c in second.removed) == list(range(15, 40))
    assert second.held_back == 0 and second.hold is None
    assert second.removed[0].record == after[second.removed[0].id]
    assert len(apply(after, second)) == 16


def test_hold_back_not_confirmed_when_the_records_come_back() -> None:
    records = [learner(i) for i in range(40)]
    prev, old = snapshot_of(records)
    first = diff(prev, records[:10], "learner_id", old)
    assert first.held_back == 30
    prev2 = PreviousSnapshot(hashes=prev.hashes, hold=first.hold, version=4)
    second = diff(prev2, records, "learner_id", old)
    assert second.empty and second.hold is None and second.held_back == 0


def test_partly_back_judges_the_rest_again() -> None:
    records = [learner(i) for i in range(40)]
    prev, old = snapshot_of(records)
    first = diff(prev, records[:10], "learner_id", old)
    # Most came back; 3 still missing: ordinary removals.
    second = diff(PreviousSnapshot(hashes=prev.hashes, hold=first.hold), records[:37], "learner_id", old)
    assert [c.id for c in second.removed] == ["37", "38", "39"] and second.hold is None
    # Some came back but still a mass removal: a fresh hold, nothing removed.
    third = diff(PreviousSnapshot(hashes=prev.hashes, hold=first.hold), records[:15], "learner_id", old)
    assert third.removed == [] and third.hold == frozenset(str(i) for i in range(15, 40))


def test_small_snapshots_and_half_exactly_are_not_held() -> None:
    prev, old = snapshot_of([learner(i) for i in range(19)])
    assert len(diff(prev, [], "learner_id", old).removed) == 19
    prev, old = snapshot_of([learner(i) for i in range(40)])
    result = diff(prev, [learner(i) for i in range(20)], "learner_id", old)
    assert len(result.removed) == 20 and result.held_back == 0


def test_records_without_an_id_make_the_scan_malformed() -> None:
    prev, old = snapshot_of([])
    with pytest.raises(D6MalformedResponse):
        diff(prev, [{"first_name": "x"}], "learner_id", old)


def test_record_events_and_silent_baseline() -> None:
    prev, old = snapshot_of([learner(1), learner(2)])
    result = diff(prev, [learner(1, grade="5"), learner(3)], "learner_id", old)
    events = record_events(result, school_id=1000, resource="learner", now=1_800_000_000.0)
    assert [(e.type, e.resource_id) for e in events] == [
        ("learner.created", "3"),
        ("learner.updated", "1"),
        ("learner.removed", "2"),
    ]
    assert events[1].changes == {"grade": FieldChange(old="4", new="5")}
    assert events[2].data == learner(2)
    assert len({e.id for e in events}) == 3
    silent = record_events(result, school_id=1000, resource="learner", emit_created=False)
    assert [e.type for e in silent] == ["learner.updated", "learner.removed"]


def test_integration_events() -> None:
    def pair(api: int, activated: str, **extra: Any) -> Record:
        return {"school_id": 1000, "api_type_id": api, "activated_by_integrator": activated, **extra}

    old_records = {"1000:8": pair(8, "No"), "1000:9": pair(9, "Yes"), "1000:10": pair(10, "Yes")}
    prev = PreviousSnapshot(hashes={k: digest(v) for k, v in old_records.items()})
    scan = [pair(8, "Yes"), pair(9, "No"), pair(11, "No"), pair(10, "Yes", name="renamed")]
    result = diff(prev, scan, integration_id, old_records)
    events = integration_events(result, school_id=1000)
    assert sorted((e.type, e.resource_id) for e in events) == [
        ("integration.activated", "1000:8"),
        ("integration.authorised", "1000:11"),
        ("integration.deactivated", "1000:9"),
    ]
    assert len(result.upserts) == 4  # the rename is stored, silently
