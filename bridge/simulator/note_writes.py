"""d6's write calls of the debtor notes: Create, Update and Delete Note, Delete Promise To Pay.

As the fact sheets describe them (`shared/d6-api-docs/v2/create-note.md`, `update-note.md`,
`delete-note.md`, `delete-promise-to-pay.md`): the request bodies, the validation with its `validation_errors`
by field, 201 with the new `note_id`, soft delete, restore through `"status": "Created"`, and the 400/404
bodies the sheets show. Where the sheets show no wording (a date outside its window, a duplicate promise, the
update's answers) the wording is ours, in d6's style ("The Date is not valid date format ...").

Every change goes through the school's `Finance`, so Get Note(s), Get Promise To Pay(s) and `/_sim/changes`
see it exactly as they see the churn's. Pure functions of the books and a parsed request; the HTTP plumbing
(credentials, the school header, faults, counters) stays in `api.py`.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from bridge.simulator.endpoints import Reply, failure, invalid
from bridge.simulator.finance import Finance
from bridge.simulator.ledger import (
    COMMUNICATION_TYPES,
    INTERNAL_NOTE,
    NOTE_TYPES,
    PROMISE_NOTE,
    cents_of,
    money,
)
from bridge.simulator.validation import as_int, body_amount, body_date, body_integer, label

DEBTOR_ID = "accountable_person_id"
PROMISES = "promise_to_pays"
SCHOOL_ONLY = ("amount_paid", "promise_completed")
"""Create Note's warning: "The `amount_paid` value and the `promise_completed` flag may only be set by the
school"."""
STATUSES = ("Created", "Deleted")
NOTE_ID_REQUIRED = "The Note ID is required"
NOTE_MISSING = "The note does not exist."
NOTE_GONE = "The note does not exist or has already been deleted."
PROMISE_ID_REQUIRED = "The Promise To Pay ID is required"
PROMISE_MISSING = "The Promise To Pay does not exist"
DUPLICATE = "A promise to pay with this date and amount already exists."
COMMUNICATION_REQUIRED = "The Communication type id field is required unless it is an internal note"
PROMISES_REQUIRED = "The Promise to pays field is required when Note type id is 2."

Promise = tuple[str, int]
"""(date promised, cents): what makes two promises duplicates (update-note.md)."""


def _windows(today: dt.date) -> tuple[tuple[dt.date, dt.date], tuple[dt.date, dt.date]]:
    """create-note.md: a note's date lies between the start of last year and the end of next year; a promise's
    between the start of this year and the end of next year (the school's year)."""
    end = dt.date(today.year + 1, 12, 31)
    return (dt.date(today.year - 1, 1, 1), end), (dt.date(today.year, 1, 1), end)


def _date_in(value: Any, key: str, window: tuple[dt.date, dt.date], errors: dict[str, str]) -> str | None:
    day = body_date(value, key, errors)
    if day is None:
        return None
    first, last = window
    if not first <= day <= last:
        name = label(key.rsplit(".", 1)[-1])
        errors[key] = f"The {name} must be a date between {first.isoformat()} and {last.isoformat()}."
        return None
    return day.isoformat()


def _optional_id(
    body: dict[str, Any], name: str, known: dict[int, str], errors: dict[str, str]
) -> int | None:
    """A lookup id that may be left out (or null): a known one, else d6's "is invalid"."""
    value = body.get(name)
    if value is None:
        return None
    number = value if isinstance(value, int) and not isinstance(value, bool) else None
    if isinstance(value, str):
        number = as_int(value.strip())
    if number is None:
        errors[name] = f"The {label(name)} must be integer"
    elif number not in known:
        errors[name] = f"The {name} is invalid"
    return number


class NoteWrites:
    """The four write endpoints over one school's books; each returns the `Reply` d6 would send."""

    def __init__(self, books: Finance) -> None:
        self.books = books
        self.note_window, self.promise_window = _windows(books.today())

    # create

    def create(self, body: Any) -> Reply:
        """`POST .../debtornotes/notes`: 201 with the new `note_id`, or 400 with every field's problem."""
        fields: dict[str, Any] = body if isinstance(body, dict) else {}
        errors: dict[str, str] = {}
        person = self._person(fields, errors, required=True)
        date = _date_in(fields.get("date"), "date", self.note_window, errors)
        note_type = body_integer(fields, "note_type_id", errors)
        if note_type is not None and note_type not in NOTE_TYPES:
            errors["note_type_id"] = "The note_type_id is invalid"
        communication = _optional_id(fields, "communication_type_id", COMMUNICATION_TYPES, errors)
        if communication is None and "communication_type_id" not in errors and note_type != INTERNAL_NOTE:
            # "*required for all note types except Internal notes"
            errors["communication_type_id"] = COMMUNICATION_REQUIRED
        text = self._text(fields, errors)
        promises = self._new_promises(fields.get(PROMISES), errors)
        if note_type == PROMISE_NOTE and not promises and PROMISES not in errors:
            errors[PROMISES] = PROMISES_REQUIRED  # "*must be given for a Promise to Pay note"
        if errors or person is None or date is None or note_type is None:
            return invalid(errors)
        note = self.books.add_note(
            person,
            date=date,
            note_type_id=note_type,
            communication_type_id=communication,
            text=text or "",
            promises=promises,
        )
        data = {"note_id": note["note_id"]}
        return Reply(201, {"success": True, "message": "Note created successfully", "data": data})

    def _person(self, fields: dict[str, Any], errors: dict[str, str], *, required: bool) -> int | None:
        if not required and fields.get(DEBTOR_ID) is None:
            return None
        person = body_integer(fields, DEBTOR_ID, errors)
        if person is not None and self.books.school.debtors.get(person) is None:
            errors[DEBTOR_ID] = "The accountable_person_id is invalid"  # errors-and-bad-requests.md
            return None
        return person

    @staticmethod
    def _text(fields: dict[str, Any], errors: dict[str, str]) -> str | None:
        text = fields.get("note")
        if text is not None and not isinstance(text, str):
            errors["note"] = "The Note must be a string."
            return None
        return text

    def _new_promises(self, value: Any, errors: dict[str, str]) -> list[Promise]:
        """Create Note's `promise_to_pays`: each entry needs `date_promised` and `amount_promised`."""
        if value is None:
            return []
        if not isinstance(value, list):
            errors[PROMISES] = "The Promise to pays must be an array."
            return []
        promises: list[Promise] = []
        for index, entry in enumerate(value):
            found = self._promise(entry, f"{PROMISES}.{index}", errors, new=True)
            if found is None:
                continue
            date, cents = found
            if date is None or cents is None:
                continue
            if (date, cents) in promises:
                errors[f"{PROMISES}.{index}"] = DUPLICATE
                continue
            promises.append((date, cents))
        return promises

    def _promise(
        self, entry: Any, key: str, errors: dict[str, str], *, new: bool
    ) -> tuple[str | None, int | None] | None:
        """(date, cents) of one entry; None when it is not an object. Fields left out of an update of an
        existing promise are None."""
        if not isinstance(entry, dict):
            errors[key] = f"The {key} must be an object."
            return None
        for name in SCHOOL_ONLY:
            if name in entry:
                errors[f"{key}.{name}"] = f"The {label(name)} may only be set by the school."
        date = cents = None
        if new or entry.get("date_promised") is not None:
            date = _date_in(entry.get("date_promised"), f"{key}.date_promised", self.promise_window, errors)
        if new or entry.get("amount_promised") is not None:
            cents = body_amount(entry.get("amount_promised"), f"{key}.amount_promised", errors)
        return date, cents

    # update

    def update(self, note_id: int | None, body: Any) -> Reply:
        """`PATCH .../debtornotes/notes/{id}`: every field optional; `"status": "Created"` restores a deleted
        note. An entry of `promise_to_pays` with its `promise_to_pay_id` changes that promise, one without
        adds a promise; a duplicate (same date and amount) is refused."""
        if note_id is None:
            return failure(400, NOTE_ID_REQUIRED)
        books = self.books
        note = books.notes.get(note_id)
        if note is None:
            return failure(404, NOTE_MISSING)
        fields: dict[str, Any] = body if isinstance(body, dict) else {}
        errors: dict[str, str] = {}
        changes: dict[str, Any] = {}
        person = self._person(fields, errors, required=False)
        if person is not None:
            changes[DEBTOR_ID] = person
        if fields.get("date") is not None:
            changes["date"] = _date_in(fields["date"], "date", self.note_window, errors)
        if fields.get("note_type_id") is not None:
            changes["note_type_id"] = _optional_id(fields, "note_type_id", NOTE_TYPES, errors)
        if "communication_type_id" in fields:
            changes["communication_type_id"] = _optional_id(
                fields, "communication_type_id", COMMUNICATION_TYPES, errors
            )
        if "note" in fields:
            changes["note"] = self._text(fields, errors) or ""
        status = fields.get("status")
        if status is not None:
            if status not in STATUSES:
                errors["status"] = "The selected Status is invalid."
            changes["status"] = status
        edits, added = self._promise_changes(note_id, fields.get(PROMISES), errors)
        merged = {**note, **changes}
        if not errors:
            if merged["note_type_id"] != INTERNAL_NOTE and merged["communication_type_id"] is None:
                errors["communication_type_id"] = COMMUNICATION_REQUIRED
            promised = books.promises_of_note.get(note_id, set())
            if merged["note_type_id"] == PROMISE_NOTE and not promised and not added:
                errors[PROMISES] = PROMISES_REQUIRED
        if errors:
            return invalid(errors)
        restored = note["status"] == "Deleted" and changes.get("status") == "Created"
        books.update_note(note_id, changes)
        for promise_id, promise_fields in edits.items():
            books.update_promise(promise_id, promise_fields)
        for date, cents in added:
            books.add_promise(note_id, date, cents)
        message = "Note restored successfully" if restored else "Note updated successfully"
        return Reply(200, {"success": True, "message": message, "data": {"note_id": note_id}})

    def _promise_changes(
        self, note_id: int, value: Any, errors: dict[str, str]
    ) -> tuple[dict[int, dict[str, Any]], list[Promise]]:
        """(changes to the note's promises by id, new promises), checked so that no two of the note's
        promises are alike in date and amount once the update is done."""
        if value is None:
            return {}, []
        if not isinstance(value, list):
            errors[PROMISES] = "The Promise to pays must be an array."
            return {}, []
        records = self.books.promises.records
        own = self.books.promises_of_note.get(note_id, set())
        after: dict[int, Promise] = {
            pid: (records[pid]["date_promised"], cents_of(records[pid]["amount_promised"]) or 0)
            for pid in own
        }
        edits: dict[int, dict[str, Any]] = {}
        added: list[Promise] = []
        for index, entry in enumerate(value):
            key = f"{PROMISES}.{index}"
            promise_id = _promise_id(entry)
            if promise_id is not None and promise_id not in own:
                errors[f"{key}.promise_to_pay_id"] = "The promise_to_pay_id is invalid"
                continue
            found = self._promise(entry, key, errors, new=promise_id is None)
            if found is None or (promise_id is None and None in found):
                continue
            date, cents = found
            was = after.get(promise_id) if promise_id is not None else None
            now = (date or (was[0] if was else ""), cents or (was[1] if was else 0))
            others = [p for pid, p in after.items() if pid != promise_id] + added
            if now != was and now in others:
                errors[key] = DUPLICATE
                continue
            if promise_id is None:
                added.append(now)
                continue
            after[promise_id] = now
            change = edits.setdefault(promise_id, {})
            if date is not None:
                change["date_promised"] = date
            if cents is not None:
                change["amount_promised"] = money(cents)
        return edits, added

    # delete

    def delete(self, note_id: int | None) -> Reply:
        """`DELETE .../debtornotes/notes/{id}`: a soft delete; a second one answers 404 (delete-note.md)."""
        if note_id is None:
            return failure(400, NOTE_ID_REQUIRED)
        note = self.books.notes.get(note_id)
        if note is None or note["status"] == "Deleted":
            return failure(404, NOTE_GONE)
        self.books.update_note(note_id, {"status": "Deleted"})
        return Reply(200, {"status": "Deleted"})

    def delete_promise(self, promise_id: int | None) -> Reply:
        """`DELETE .../debtornotes/promisetopays/{id}`: the promise is gone (its note stays)."""
        if promise_id is None:
            return failure(400, PROMISE_ID_REQUIRED)
        if self.books.promises.get(promise_id) is None:
            return failure(404, PROMISE_MISSING)  # v2's body is not visible; v1's wording
        self.books.remove_promise(promise_id)
        return Reply(200, {"status": "Deleted"})


def _promise_id(entry: Any) -> int | None:
    """The `promise_to_pay_id` of an update's entry (an integer, or integer text), -1 when it names none."""
    value = entry.get("promise_to_pay_id") if isinstance(entry, dict) else None
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    number = as_int(value.strip()) if isinstance(value, str) else None
    return number if number is not None else -1
