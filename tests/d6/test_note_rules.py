"""What d6 would refuse of a debtor-note write, refused before anything is sent: each rule names its field
and never repeats the value it was given."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import msgspec
import pytest

from bridge.d6.note_rules import (
    NoteCreate,
    NoteUpdate,
    decode_create,
    decode_update,
    school_today,
    validate_create,
    validate_update,
)
from bridge.errors import InvalidRequest

TODAY = dt.date(2026, 3, 14)
SECRET = "Mr Naidoo is in hospital"


def create(**fields: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "accountable_person_id": 40,
        "date": "2026-03-14",
        "note_type_id": 2,
        "communication_type_id": 3,
        "note": SECRET,
        "promise_to_pays": [{"date_promised": "2026-04-01", "amount_promised": "1500.00"}],
    }
    body.update(fields)
    return {k: v for k, v in body.items() if v is not ...}


def refused_create(body: dict[str, Any] | bytes) -> InvalidRequest:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    with pytest.raises(InvalidRequest) as raised:
        decode_create(raw, today=TODAY)
    assert SECRET not in str(raised.value)
    return raised.value


def refused_update(body: dict[str, Any]) -> InvalidRequest:
    with pytest.raises(InvalidRequest) as raised:
        decode_update(json.dumps(body).encode(), today=TODAY)
    assert SECRET not in str(raised.value)
    return raised.value


def named(error: InvalidRequest) -> tuple[str, str]:
    assert error.extra == {"field": error.field}
    return error.field, error.problem


# what passes


def test_a_good_create_passes_and_encodes_as_d6_takes_it() -> None:
    body = decode_create(json.dumps(create()).encode(), today=TODAY)
    assert isinstance(body, NoteCreate)
    assert json.loads(msgspec.json.encode(body)) == create()
    internal = decode_create(
        {"accountable_person_id": 40, "date": "2025-01-01", "note_type_id": 3}, today=TODAY
    )
    # Fields left out are not sent: no null communication type for an internal note.
    assert (
        msgspec.json.encode(internal) == b'{"accountable_person_id":40,"date":"2025-01-01","note_type_id":3}'
    )


def test_what_the_sheets_leave_open_is_accepted() -> None:
    # a text note with promises, an amount with three decimals, an amount as a JSON number, no text, any
    # communication type (the sheet's list ends in "..."), the last day of next year
    body = create(
        note_type_id=1,
        communication_type_id=42,
        note=...,
        date="2027-12-31",
        promise_to_pays=[
            {"date_promised": "2026-01-01", "amount_promised": "100.125"},
            {"date_promised": "2027-12-31", "amount_promised": 250},
        ],
    )
    decode_create(json.dumps(body).encode(), today=TODAY)
    decode_update(b"{}", today=TODAY)  # an update that changes nothing
    decode_update(b'{"communication_type_id": null}', today=TODAY)  # the note's type is d6's to know


def test_bodies_arrive_as_bytes_text_or_decoded_json() -> None:
    as_dict = decode_create(create(), today=TODAY)
    as_text = decode_create(json.dumps(create()), today=TODAY)
    assert as_dict == as_text
    assert isinstance(decode_update({"status": "Created"}, today=TODAY), NoteUpdate)


def test_today_defaults_to_the_schools_calendar() -> None:
    today = school_today()
    assert abs((today - dt.datetime.now(dt.UTC).date()).days) <= 1
    validate_create(decode_create(create(date=today.isoformat()), today=today))


# the shape: required fields, unknown fields, types


@pytest.mark.parametrize("field", ["accountable_person_id", "date", "note_type_id"])
def test_required_fields(field: str) -> None:
    assert named(refused_create(create(**{field: ...}))) == (field, "is required")


@pytest.mark.parametrize(
    ("fields", "field", "problem"),
    [
        ({"accountable_person_id": "40"}, "accountable_person_id", "must be a positive integer"),
        ({"accountable_person_id": 0}, "accountable_person_id", "must be a positive integer"),
        ({"note_type_id": True}, "note_type_id", "must be a positive integer"),
        ({"communication_type_id": -1}, "communication_type_id", "must be a positive integer"),
        ({"date": "14/03/2026"}, "date", "must be a date, YYYY-MM-DD"),
        ({"date": "2026-02-30"}, "date", "must be a date, YYYY-MM-DD"),
        ({"note": 5}, "note", "must be text"),
        ({"promise_to_pays": {"a": 1}}, "promise_to_pays", "must be a list of promises"),
        ({"promise_to_pays": ["x"]}, "promise_to_pays[0]", "must be an object"),
        (
            {"promise_to_pays": [{"date_promised": "2026-04-01", "amount_promised": "R100"}]},
            "promise_to_pays[0].amount_promised",
            "must be a number such as 100.00 (no currency symbol, no separators)",
        ),
        (
            {"promise_to_pays": [{"date_promised": "2026-04-01", "amount_promised": "1,500.00"}]},
            "promise_to_pays[0].amount_promised",
            "must be a number such as 100.00 (no currency symbol, no separators)",
        ),
        (
            {"promise_to_pays": [{"date_promised": "2026-04-01", "amount_promised": False}]},
            "promise_to_pays[0].amount_promised",
            "must be a number such as 100.00 (no currency symbol, no separators)",
        ),
        (
            {"promise_to_pays": [{"amount_promised": "100"}]},
            "promise_to_pays[0].date_promised",
            "is required",
        ),
        ({"status": "Created"}, "status", "is not a field of this call"),
        ({"school_id": 1000}, "school_id", "is not a field of this call"),
    ],
)
def test_the_shape(fields: dict[str, Any], field: str, problem: str) -> None:
    assert named(refused_create(create(**fields))) == (field, problem)


@pytest.mark.parametrize("name", ["amount_paid", "promise_completed"])
def test_what_only_the_school_sets(name: str) -> None:
    """create-note.md: "The `amount_paid` value and the `promise_completed` flag may only be set by the
    school"."""
    entry = {"date_promised": "2026-04-01", "amount_promised": "100", name: "Yes"}
    assert named(refused_create(create(promise_to_pays=[entry]))) == (
        f"promise_to_pays[0].{name}",
        "may only be set by the school (d6 Create Note)",
    )
    change = {"promise_to_pay_id": 7, name: "100.00"}
    assert named(refused_update({"promise_to_pays": [change]}))[0] == f"promise_to_pays[0].{name}"


def test_not_json() -> None:
    assert named(refused_create(b"{not json")) == ("body", "is not valid JSON")
    assert named(refused_create(b"[1, 2]")) == ("body", "must be a JSON object")


# the rules of the fact sheets


def test_note_types_are_the_three_d6_lists() -> None:
    """get-note-types.md: 1 Text note, 2 Promise to pay, 3 Internal note (no "..." in the list)."""
    problem = "must be 1 (text note), 2 (promise to pay) or 3 (internal note)"
    assert named(refused_create(create(note_type_id=4))) == ("note_type_id", problem)
    assert named(refused_update({"note_type_id": 9})) == ("note_type_id", problem)


def test_a_communication_type_is_required_but_for_internal_notes() -> None:
    """create-note.md: `communication_type_id` "*required for all note types except Internal notes"."""
    problem = "is required unless the note is an internal note (3)"
    for note_type in (1, 2):
        assert named(refused_create(create(note_type_id=note_type, communication_type_id=...))) == (
            "communication_type_id",
            problem,
        )
    assert named(refused_create(create(note_type_id=1, communication_type_id=None))) == (
        "communication_type_id",
        problem,
    )
    decode_create(create(note_type_id=3, communication_type_id=..., promise_to_pays=...), today=TODAY)
    assert named(refused_update({"note_type_id": 1, "communication_type_id": None})) == (
        "communication_type_id",
        problem,
    )
    decode_update({"note_type_id": 3, "communication_type_id": None}, today=TODAY)


def test_a_promise_to_pay_note_needs_promises() -> None:
    """create-note.md: `promise_to_pays` "*must be given for a Promise to Pay note (`note_type_id: 2`)"."""
    problem = "is required for a promise-to-pay note (2): give at least one"
    assert named(refused_create(create(promise_to_pays=...))) == ("promise_to_pays", problem)
    assert named(refused_create(create(promise_to_pays=[]))) == ("promise_to_pays", problem)


@pytest.mark.parametrize(("date", "ok"), [("2025-01-01", True), ("2024-12-31", False), ("2028-01-01", False)])
def test_the_note_date_window(date: str, ok: bool) -> None:
    """create-note.md: the date "must be between the start of last year and the end of next year"."""
    if ok:
        decode_create(create(date=date), today=TODAY)
        decode_update({"date": date}, today=TODAY)
        return
    problem = "must lie between 2025-01-01 and 2027-12-31"
    assert named(refused_create(create(date=date))) == ("date", problem)
    assert named(refused_update({"date": date})) == ("date", problem)


@pytest.mark.parametrize(("date", "ok"), [("2026-01-01", True), ("2025-12-31", False), ("2028-01-01", False)])
def test_the_promise_date_window(date: str, ok: bool) -> None:
    """create-note.md: `date_promised` "a date between the start of this year and the end of next year"."""
    entry = {"date_promised": date, "amount_promised": "100"}
    if ok:
        decode_create(create(promise_to_pays=[entry]), today=TODAY)
        return
    problem = "must lie between 2026-01-01 and 2027-12-31"
    assert named(refused_create(create(promise_to_pays=[entry]))) == (
        "promise_to_pays[0].date_promised",
        problem,
    )
    change = {"promise_to_pay_id": 3, "date_promised": date}
    assert named(refused_update({"promise_to_pays": [change]})) == (
        "promise_to_pays[0].date_promised",
        problem,
    )


@pytest.mark.parametrize(
    ("amount", "problem"),
    [
        ("0", "must be above zero"),
        ("0.00", "must be above zero"),
        (-5, "must be above zero"),
        ("NaN", "must be a number such as 100.00"),
        ("Infinity", "must be a number such as 100.00"),
        ("1E+3", "must be written as plain digits, such as 100.00"),
        (1e3, None),  # a JSON number written 1000.0 is plain
    ],
)
def test_amounts_are_plain_positive_numbers(amount: Any, problem: str | None) -> None:
    """create-note.md: `amount_promised` "numeric without currency symbol (e.g. "100.00")"; positive: the
    product contract."""
    entry = {"date_promised": "2026-04-01", "amount_promised": amount}
    if problem is None:
        decode_create(create(promise_to_pays=[entry]), today=TODAY)
        return
    assert named(refused_create(create(promise_to_pays=[entry]))) == (
        "promise_to_pays[0].amount_promised",
        problem,
    )


def test_duplicate_promises_are_refused() -> None:
    """update-note.md: a promise with the same `date_promised` and `amount_promised` as another is refused."""
    twins = [
        {"date_promised": "2026-04-01", "amount_promised": "100"},
        {"date_promised": "2026-04-02", "amount_promised": "100"},
        {"date_promised": "2026-04-01", "amount_promised": 100.0},
    ]
    problem = "repeats another promise's date_promised and amount_promised"
    assert named(refused_create(create(promise_to_pays=twins))) == ("promise_to_pays[2]", problem)
    assert named(refused_update({"promise_to_pays": twins})) == ("promise_to_pays[2]", problem)


def test_a_new_promise_in_an_update_needs_date_and_amount() -> None:
    """update-note.md: an entry without `promise_to_pay_id` creates a promise, which needs both fields."""
    problem = "is required for a new promise (one without promise_to_pay_id)"
    assert named(refused_update({"promise_to_pays": [{"amount_promised": "100"}]})) == (
        "promise_to_pays[0].date_promised",
        problem,
    )
    assert named(refused_update({"promise_to_pays": [{"date_promised": "2026-04-01"}]})) == (
        "promise_to_pays[0].amount_promised",
        problem,
    )
    decode_update({"promise_to_pays": [{"promise_to_pay_id": 3, "amount_promised": "90"}]}, today=TODAY)
    decode_update({"promise_to_pays": [{"promise_to_pay_id": 3}]}, today=TODAY)


def test_update_status_and_fields() -> None:
    """update-note.md: `status` is "Created" (restore) or "Deleted"; the fields are Create Note's."""
    for status in ("Created", "Deleted"):
        assert decode_update({"status": status}, today=TODAY).status == status
    assert named(refused_update({"status": "Restored"})) == ("status", 'must be "Created" or "Deleted"')
    assert named(refused_update({"note_id": 5})) == ("note_id", "is not a field of this call")
    assert named(refused_update({"promise_to_pays": [{"promise_to_pay_id": 0}]})) == (
        "promise_to_pays[0].promise_to_pay_id",
        "must be a positive integer",
    )


def test_validate_takes_structs_as_the_api_decodes_them() -> None:
    body = msgspec.convert(create(date="2030-01-01"), NoteCreate)
    with pytest.raises(InvalidRequest) as raised:
        validate_create(body, today=TODAY)
    assert raised.value.field == "date"
    update = msgspec.convert({"note_type_id": 5}, NoteUpdate)
    with pytest.raises(InvalidRequest):
        validate_update(update, today=TODAY)
