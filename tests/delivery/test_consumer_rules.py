"""Rule 3 of docs/consumers.md as the reference consumer (bridge/testing/consumer.py) applies it: at
`resync.completed` a held record not told since `resync.started` is deleted only if nothing newer than the
snapshot told of it."""

from __future__ import annotations

from typing import Any

from bridge.testing.consumer import Materialiser

SCHOOL = 1000


def _event(type_: str, sequence: int, resource_id: str, **data: Any) -> dict[str, Any]:
    resource = "resync" if type_.startswith("resync.") else type_.split(".")[0]
    return {
        "type": type_,
        "school_id": SCHOOL,
        "sequence": sequence,
        "resource": resource,
        "resource_id": resource_id,
        "data": data,
    }


def test_a_record_created_after_the_snapshot_was_taken_survives_its_resync() -> None:
    consumer = Materialiser()
    consumer.apply(_event("learner.created", 3, "3", learner_id=3))  # gone from d6 before the snapshot
    for sequence, rid in ((4, "5"), (5, "6")):
        consumer.apply(_event("learner.created", sequence, rid, learner_id=int(rid)))
    # Created after the snapshot's as_of_sequence (10), told before resync.started reached this consumer
    # (a retry of the marker, or queued in the moment the ids were frozen): in no snapshot event.
    consumer.apply(_event("learner.created", 11, "7", learner_id=7))
    marker = {"resync_id": "rsy_1", "resource": "learners"}
    consumer.apply(_event("resync.started", 10, "rsy_1", as_of_sequence=10, count=2, **marker))
    consumer.apply(_event("learner.snapshot", 4, "5", learner_id=5))
    consumer.apply(_event("learner.snapshot", 5, "6", learner_id=6))
    consumer.apply(_event("resync.completed", 10, "rsy_1", count=2, **marker))
    assert sorted(consumer.records[(SCHOOL, "learner")]) == ["5", "6", "7"]
