"""`project_record`: one record's `data` as a subscription's `fields`, `redact` and `payload` let it out, the
way `project` cuts an envelope's `data` (the state API's hook for subscription-scoped tokens)."""

from __future__ import annotations

import msgspec

from bridge.delivery.projection import Envelope, Shape, project, project_record

LEARNER = {
    "learner_id": 51,
    "accountable_person_id": 8,
    "first_name": "Thandi",
    "grade": "7",
    "id_number": "0501015800082",
}


def test_fields_keep_the_ids_and_the_named_fields_only() -> None:
    shape = Shape(fields={"learner": frozenset({"grade"})})
    assert project_record("learner", LEARNER, shape) == {
        "learner_id": 51,
        "accountable_person_id": 8,
        "grade": "7",
    }


def test_a_resource_fields_does_not_name_keeps_its_ids_alone() -> None:
    shape = Shape(fields={"debtor": frozenset({"email_address"})})
    assert project_record("learner", LEARNER, shape) == {"learner_id": 51, "accountable_person_id": 8}


def test_redact_masks_all_but_the_last_four_characters() -> None:
    shape = Shape(redact=frozenset({"id_number", "grade"}))
    projected = project_record("learner", LEARNER, shape)
    assert projected["id_number"] == "*********0082"
    assert projected["grade"] == "*"  # a short value is masked whole
    assert projected["first_name"] == "Thandi"


def test_thin_shows_no_data() -> None:
    assert project_record("learner", LEARNER, Shape(thin=True)) == {}


def test_it_cuts_a_record_as_project_cuts_the_same_record_in_an_event() -> None:
    shape = Shape(fields={"learner": frozenset({"grade", "id_number"})}, redact=frozenset({"id_number"}))
    envelope = Envelope(
        id="evt_1",
        type="learner.created",
        timestamp="2026-11-30T10:49:14.353372Z",
        school_id=1000,
        sequence=3,
        resource="learner",
        resource_id="51",
        data=dict(LEARNER),
    )
    body = project(envelope, shape)
    assert body is not None
    assert msgspec.json.decode(body)["data"] == project_record("learner", LEARNER, shape)


def test_the_record_given_is_left_as_it_was() -> None:
    record = dict(LEARNER)
    project_record("learner", record, Shape(fields={"learner": frozenset()}, redact=frozenset({"id_number"})))
    assert record == LEARNER
