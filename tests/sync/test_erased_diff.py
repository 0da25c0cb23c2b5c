"""A record erased on request (`POST /v1/erasure`) keeps only its digest in the snapshot: later scans
neither re-create it, nor tell its changes, nor remove it with an event (sync/diff.py `finish_diff`)."""

from __future__ import annotations

from typing import Any

from bridge.sync.diff import PreviousSnapshot, diff, digest


def learner(n: int, **fields: Any) -> dict[str, Any]:
    return {"learner_id": n, "first_name": f"L{n}", "grade": "4", **fields}


def test_a_digest_without_its_record_stays_erased() -> None:
    records = [learner(n) for n in range(1, 4)]
    prev = PreviousSnapshot(hashes={str(r["learner_id"]): digest(r) for r in records}, version=3)
    kept = {"1": records[0], "3": records[2]}  # "2" was erased: its digest alone is left

    same = diff(prev, records, "learner_id", kept)
    assert same.empty and not same.upserts and not same.deletes

    changed = diff(prev, [records[0], learner(2, grade="5"), records[2]], "learner_id", kept)
    assert changed.empty and not changed.upserts  # not told, not stored again

    gone = diff(prev, [records[0], records[2]], "learner_id", kept)
    assert gone.empty and gone.deletes == ["2"]  # leaves the snapshot silently

    both = diff(prev, [learner(1, grade="6")], "learner_id", kept)
    assert [c.id for c in both.updated] == ["1"] and [c.id for c in both.removed] == ["3"]
    assert sorted(both.deletes) == ["2", "3"]
