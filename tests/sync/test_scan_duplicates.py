"""A scan in which an id appears twice is not trusted at once (docs/guarantees.md): the plan says which ids,
and a digest of the scan that the next scan must match before it is diffed, the last row of an id winning."""

from __future__ import annotations

from bridge.sync.diff import PreviousSnapshot, digest, finish_diff, plan_diff


def _learner(learner_id: int, grade: str = "5") -> dict[str, object]:
    return {"learner_id": learner_id, "grade": grade}


def test_a_clean_scan_is_trusted_and_has_no_scan_digest() -> None:
    plan = plan_diff(PreviousSnapshot(hashes={}), [_learner(1), _learner(2)], "learner_id")
    assert plan.trusted and plan.duplicated == () and plan.scan_digest is None


def test_a_scan_with_an_id_twice_is_not_trusted_until_the_next_agrees() -> None:
    stored = {str(n): _learner(n) for n in (1, 2, 3)}
    previous = PreviousSnapshot(hashes={k: digest(v) for k, v in stored.items()})
    shifted = [_learner(1), _learner(2), _learner(2, "6")]  # 3 missed, 2 repeated (and changed)
    plan = plan_diff(previous, shifted, "learner_id")
    assert not plan.trusted and plan.duplicated == ("2",) and plan.scan_digest is not None
    again = plan_diff(
        PreviousSnapshot(hashes=previous.hashes, unsettled=plan.scan_digest), list(shifted), "learner_id"
    )
    assert again.trusted
    result = finish_diff(again, stored)
    (updated,) = result.updated  # the last row of an id wins
    assert updated.id == "2" and updated.record["grade"] == "6"
    assert [r.id for r in result.removed] == ["3"]


def test_a_different_suspicious_scan_does_not_agree() -> None:
    first = plan_diff(PreviousSnapshot(hashes={}), [_learner(1), _learner(1)], "learner_id")
    for other in (
        [_learner(1), _learner(1, "6")],  # same duplicates, other content
        [_learner(2), _learner(2)],  # other duplicates
        [_learner(1, "6"), _learner(1)],  # the same rows, another last row
    ):
        plan = plan_diff(PreviousSnapshot(hashes={}, unsettled=first.scan_digest), other, "learner_id")
        assert not plan.trusted
    same = plan_diff(
        PreviousSnapshot(hashes={}, unsettled=first.scan_digest), [_learner(1), _learner(1)], "learner_id"
    )
    assert same.trusted
