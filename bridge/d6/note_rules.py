"""What d6 refuses of a debtor-note write, refused here first: a 400 naming the field, and nothing sent.

The bodies are d6's own (Create Note, Update Note), as typed structs that take no other field. The rules,
each with the fact sheet it comes from (`shared/d6-api-docs/v2/`):

- `note_type_id` is one of 1 Text note, 2 Promise to pay, 3 Internal note: get-note-types.md lists these
  three and no more (its example has no "..."). Communication types are left open: their example ends in
  "...", so any positive id may be one (get-communication-types.md).
- `communication_type_id` is required for every note type but Internal notes (create-note.md).
- A Promise to Pay note (`note_type_id` 2) must come with `promise_to_pays` (create-note.md).
- `date` lies between the start of last year and the end of next year; a promise's `date_promised` between the
  start of this year and the end of next year (create-note.md), in the school's calendar (South African time).
- `amount_promised` is numeric without a currency symbol (create-note.md: e.g. `"100.00"`): a JSON number or
  numeric text, written as plain digits (not `1E+2`), finite. It must be above zero: the sheet does not say
  so, the product contract does ("plain positive numbers"); a promise of nothing is no arrangement.
- `amount_paid` and `promise_completed` "may only be set by the school" (create-note.md): never accepted.
- Two promises alike in `date_promised` and `amount_promised` are refused (update-note.md: a duplicate of an
  existing one is refused); only those within one body can be seen here, d6 checks the rest.
- An update's new promise (no `promise_to_pay_id`) needs both `date_promised` and `amount_promised`, as
  Create Note's entries do (update-note.md: an entry without the id creates a promise).

Where the sheets are silent we accept what they allow: a note's text of any length (or none), promises on a
note of another type, more than two decimals in an amount, an update that changes nothing, an update that
clears `communication_type_id` without naming the note's type (only d6 knows the note's type). Problems
never repeat the value they were sent: a note's text is personal data.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping
from decimal import Decimal
from typing import Annotated, Any, Final, Literal, TypeVar

import msgspec

from bridge.d6.finance import SOUTH_AFRICA
from bridge.errors import InvalidRequest

TEXT_NOTE: Final = 1
PROMISE_NOTE: Final = 2
INTERNAL_NOTE: Final = 3
NOTE_TYPES: Final = frozenset({TEXT_NOTE, PROMISE_NOTE, INTERNAL_NOTE})
SCHOOL_ONLY: Final = frozenset({"amount_paid", "promise_completed"})
UNSET: Final = msgspec.UNSET

Id = Annotated[int, msgspec.Meta(ge=1)]
T = TypeVar("T")


class PromiseEntry(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """A promise to pay of a new note: both fields required (create-note.md)."""

    date_promised: dt.date
    amount_promised: Decimal


class PromiseChange(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """A promise of an update: with `promise_to_pay_id` it changes that promise, without it adds one."""

    promise_to_pay_id: Id | msgspec.UnsetType = UNSET
    date_promised: dt.date | msgspec.UnsetType = UNSET
    amount_promised: Decimal | msgspec.UnsetType = UNSET


class NoteCreate(msgspec.Struct, kw_only=True, forbid_unknown_fields=True, omit_defaults=True):
    """The body of d6's Create Note; fields left out are not sent."""

    accountable_person_id: Id
    date: dt.date
    note_type_id: Id
    communication_type_id: Id | None = None
    note: str | None = None
    promise_to_pays: list[PromiseEntry] | None = None


class NoteUpdate(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """The body of d6's Update Note: every field optional; `status` "Created" restores a deleted note."""

    accountable_person_id: Id | msgspec.UnsetType = UNSET
    date: dt.date | msgspec.UnsetType = UNSET
    note_type_id: Id | msgspec.UnsetType = UNSET
    communication_type_id: Id | msgspec.UnsetType | None = UNSET
    note: str | msgspec.UnsetType = UNSET
    status: Literal["Created", "Deleted"] | msgspec.UnsetType = UNSET
    promise_to_pays: list[PromiseChange] | msgspec.UnsetType = UNSET


# the rules


def school_today() -> dt.date:
    """Today in the schools' calendar: d6's year windows are counted in it."""
    return dt.datetime.now(SOUTH_AFRICA).date()


def validate_create(body: NoteCreate, *, today: dt.date | None = None) -> None:
    """Raise `InvalidRequest(field, problem)` for the first thing d6 would refuse in this Create Note."""
    today = today or school_today()
    _note_type(body.note_type_id)
    if body.communication_type_id is None and body.note_type_id != INTERNAL_NOTE:
        raise InvalidRequest("communication_type_id", "is required unless the note is an internal note (3)")
    if body.note_type_id == PROMISE_NOTE and not body.promise_to_pays:
        raise InvalidRequest(
            "promise_to_pays", "is required for a promise-to-pay note (2): give at least one"
        )
    _note_date(body.date, today)
    seen: set[tuple[dt.date, Decimal]] = set()
    for index, entry in enumerate(body.promise_to_pays or ()):
        _promise(index, entry.date_promised, entry.amount_promised, today, seen)


def validate_update(body: NoteUpdate, *, today: dt.date | None = None) -> None:
    """Raise `InvalidRequest(field, problem)` for the first thing d6 would refuse in this Update Note
    (what depends on the note as it is in d6 is d6's to check)."""
    today = today or school_today()
    if body.note_type_id is not UNSET:
        _note_type(body.note_type_id)
        if body.communication_type_id is None and body.note_type_id != INTERNAL_NOTE:
            raise InvalidRequest(
                "communication_type_id", "is required unless the note is an internal note (3)"
            )
    if body.date is not UNSET:
        _note_date(body.date, today)
    if body.promise_to_pays is UNSET:
        return
    seen: set[tuple[dt.date, Decimal]] = set()
    for index, entry in enumerate(body.promise_to_pays):
        date = entry.date_promised if entry.date_promised is not UNSET else None
        amount = entry.amount_promised if entry.amount_promised is not UNSET else None
        if entry.promise_to_pay_id is UNSET:
            for name, value in (("date_promised", date), ("amount_promised", amount)):
                if value is None:
                    raise InvalidRequest(
                        f"promise_to_pays[{index}].{name}",
                        "is required for a new promise (one without promise_to_pay_id)",
                    )
        _promise(index, date, amount, today, seen)


def _note_type(note_type_id: int) -> None:
    if note_type_id not in NOTE_TYPES:
        raise InvalidRequest("note_type_id", "must be 1 (text note), 2 (promise to pay) or 3 (internal note)")


def _window(field: str, day: dt.date, first: dt.date, last: dt.date) -> None:
    if not first <= day <= last:
        raise InvalidRequest(field, f"must lie between {first.isoformat()} and {last.isoformat()}")


def _note_date(day: dt.date, today: dt.date) -> None:
    _window("date", day, dt.date(today.year - 1, 1, 1), dt.date(today.year + 1, 12, 31))


def _promise(
    index: int,
    day: dt.date | None,
    amount: Decimal | None,
    today: dt.date,
    seen: set[tuple[dt.date, Decimal]],
) -> None:
    where = f"promise_to_pays[{index}]"
    if day is not None:
        _window(f"{where}.date_promised", day, dt.date(today.year, 1, 1), dt.date(today.year + 1, 12, 31))
    if amount is not None:
        field = f"{where}.amount_promised"
        if not amount.is_finite():
            raise InvalidRequest(field, "must be a number such as 100.00")
        exponent = amount.as_tuple().exponent
        if isinstance(exponent, int) and exponent > 0:
            raise InvalidRequest(field, "must be written as plain digits, such as 100.00")
        if amount <= 0:
            raise InvalidRequest(field, "must be above zero")
    if day is not None and amount is not None:
        if (day, amount) in seen:  # Decimal equality: 100 and 100.00 are one amount
            raise InvalidRequest(where, "repeats another promise's date_promised and amount_promised")
        seen.add((day, amount))


# bodies from the wire


def decode_create(raw: bytes | str | Mapping[str, Any], *, today: dt.date | None = None) -> NoteCreate:
    """A Create Note body from JSON (or decoded JSON), checked: `InvalidRequest` naming the field."""
    body = _decode(raw, NoteCreate)
    validate_create(body, today=today)
    return body


def decode_update(raw: bytes | str | Mapping[str, Any], *, today: dt.date | None = None) -> NoteUpdate:
    """An Update Note body from JSON (or decoded JSON), checked: `InvalidRequest` naming the field."""
    body = _decode(raw, NoteUpdate)
    validate_update(body, today=today)
    return body


_AT = re.compile(r" - at `\$(?P<path>[^`]*)`$")
_FIELD = re.compile(r"field `(?P<name>[^`]+)`")
PROBLEMS: Final = {
    "accountable_person_id": "must be a positive integer",
    "note_type_id": "must be a positive integer",
    "communication_type_id": "must be a positive integer",
    "promise_to_pay_id": "must be a positive integer",
    "date": "must be a date, YYYY-MM-DD",
    "date_promised": "must be a date, YYYY-MM-DD",
    "amount_promised": "must be a number such as 100.00 (no currency symbol, no separators)",
    "note": "must be text",
    "status": 'must be "Created" or "Deleted"',
    "promise_to_pays": "must be a list of promises",
}


def _decode(raw: bytes | str | Mapping[str, Any], kind: type[T]) -> T:
    try:
        if isinstance(raw, bytes | str):
            return msgspec.json.decode(raw, type=kind)
        return msgspec.convert(raw, kind)
    except msgspec.ValidationError as error:
        field, problem = _named(str(error))
        raise InvalidRequest(field, problem) from None
    except msgspec.DecodeError:
        raise InvalidRequest("body", "is not valid JSON") from None


def _named(message: str) -> tuple[str, str]:
    """(field, problem) of msgspec's error, worded here: msgspec's own text may quote the value sent."""
    at = _AT.search(message)
    path = at.group("path").lstrip(".") if at else ""
    named = _FIELD.search(message)
    if named is not None and message.startswith(("Object missing required field", "Object contains unknown")):
        name = named.group("name")
        field = f"{path}.{name}" if path else name
        if message.startswith("Object missing"):
            return field, "is required"
        if name in SCHOOL_ONLY:
            return field, "may only be set by the school (d6 Create Note)"
        return field, "is not a field of this call"
    if not path:
        return "body", "must be a JSON object"
    last = re.sub(r"\[\d+\]$", "", path.rsplit(".", 1)[-1])
    if path.endswith("]"):
        return path, "must be an object"
    return path, PROBLEMS.get(last, "has the wrong type")
