"""Record normalisation, canonical bytes and hashes: "40" and 40 are no change, a reordered object neither."""

from __future__ import annotations

import pytest

from bridge.d6.records import canonical_bytes, integration_key, normalise, record_hash, record_id
from bridge.errors import D6MalformedResponse

DOC_DEBTOR = {
    "accountable_person_id": "40",
    "title": "Mr",
    "debtor_code": "1001",
    "residential_address": "Moneytow Street\r\nNow Village\r\n0123\r\nSouth Africa",
    "account_closing_date": "0000-00-00",
    "account_start_date": "2023-01-01",
    "learners": [{"learner_id": "1", "first_name": "John", "grade": "7"}],
}


def test_ids_become_integers_recursively_and_other_fields_stay_as_sent() -> None:
    record = normalise(DOC_DEBTOR)
    assert record["accountable_person_id"] == 40
    assert record["learners"][0]["learner_id"] == 1
    assert record["debtor_code"] == "1001"  # a code, not an id: kept as sent
    assert record["learners"][0]["grade"] == "7"
    assert record["residential_address"] == DOC_DEBTOR["residential_address"]
    assert record["account_start_date"] == "2023-01-01"


def test_zero_dates_become_none() -> None:
    assert normalise({"account_closing_date": "0000-00-00"}) == {"account_closing_date": None}
    assert normalise({"changed": "0000-00-00 00:00:00"}) == {"changed": None}
    assert normalise({"account_closing_date": "2024-02-29"}) == {"account_closing_date": "2024-02-29"}


def test_id_edge_cases() -> None:
    record = normalise(
        {
            "a_id": 40,
            "b_id": " 41 ",
            "c_id": "",
            "d_id": None,
            "e_id": "ABC-1",
            "f_id": True,
            "g_id": 42.0,
            "h_id": "-3",
            "nested": {"parent1_id": "7", "items": [{"x_id": "8"}, "9"]},
        }
    )
    assert record == {
        "a_id": 40,
        "b_id": 41,
        "c_id": None,
        "d_id": None,
        "e_id": "ABC-1",
        "f_id": True,
        "g_id": 42,
        "h_id": -3,
        "nested": {"parent1_id": 7, "items": [{"x_id": 8}, "9"]},
    }


def test_unknown_fields_are_kept_and_input_is_not_mutated() -> None:
    original = {"learner_id": "5", "brand_new_field": {"deep": [1, "0000-00-00"]}, "flag": False}
    copy = {"learner_id": "5", "brand_new_field": {"deep": [1, "0000-00-00"]}, "flag": False}
    record = normalise(original)
    assert record == {"learner_id": 5, "brand_new_field": {"deep": [1, None]}, "flag": False}
    assert original == copy


def test_normalise_is_idempotent() -> None:
    once = normalise(DOC_DEBTOR)
    assert normalise(once) == once


def test_string_and_integer_ids_hash_equal() -> None:
    a = {"learner_id": "40", "first_name": "Thabo", "accountable_person_id": 7}
    b = {"learner_id": 40, "first_name": "Thabo", "accountable_person_id": "7"}
    assert canonical_bytes(a) == canonical_bytes(b)
    assert record_hash(a) == record_hash(b)


def test_hash_is_order_independent_at_every_depth() -> None:
    a = {"x": 1, "y": {"p": 1, "q": 2}, "learners": [{"learner_id": 1, "grade": "3"}]}
    b = {"learners": [{"grade": "3", "learner_id": "1"}], "y": {"q": 2, "p": 1}, "x": 1}
    assert canonical_bytes(a) == canonical_bytes(b)
    assert canonical_bytes(a) == b'{"learners":[{"grade":"3","learner_id":1}],"x":1,"y":{"p":1,"q":2}}'
    assert record_hash(a) == record_hash(b)
    assert len(record_hash(a)) == 32


def test_a_real_change_changes_the_hash() -> None:
    base = {"learner_id": 1, "grade": "3"}
    assert record_hash(base) != record_hash({"learner_id": 1, "grade": "4"})
    assert record_hash(base) != record_hash({"learner_id": 1, "grade": "3", "new": None})
    # list order is data (d6 sends nested learners in its order), so it counts
    assert record_hash({"l": [1, 2]}) != record_hash({"l": [2, 1]})


def test_record_id_per_resource() -> None:
    assert record_id("learners", {"learner_id": "51"}) == 51
    assert record_id("learner", {"learner_id": 51}) == 51
    assert record_id("accountable_persons", {"accountable_person_id": "40"}) == 40
    assert record_id("debtors", {"accountable_person_id": 40}) == 40
    assert record_id("schools", {"school_id": "1000"}) == 1000
    assert integration_key({"school_id": "1000", "api_type_id": 8}) == (1000, 8)
    with pytest.raises(D6MalformedResponse):
        record_id("learners", {"first_name": "no id"})
    with pytest.raises(D6MalformedResponse):
        record_id("learners", {"learner_id": "abc"})
    with pytest.raises(ValueError):
        record_id("notes", {"note_id": 1})
