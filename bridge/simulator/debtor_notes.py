"""A school's debtor notes and promises to pay, and what every part of its books shares.

Notes are deleted softly, as d6 deletes them: the record stays, with `"status": "Deleted"`. Promises
belong to a note; `amount_paid` and `promise_completed` move as the family pays (`Finance` calls
`_pay_promises` for every receipt). Records are replaced, never edited in place.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from bridge.simulator.changes import ChangeLog, Kind
from bridge.simulator.ledger import COMMUNICATION_TYPES, NOTE_TYPES, cents_of, money
from bridge.simulator.table import NotFound, Record, Register, Table

DEBTOR_ID = "accountable_person_id"
PROMISE_GRACE_DAYS = 7
"""A promise lapses this many days after its date: a later payment no longer counts towards it."""


def completion(paid: int, promised: int) -> str:
    """d6's `promise_completed`: "Yes" once covered, "Partial" while part paid, else "No"."""
    if paid >= promised:
        return "Yes"
    return "Partial" if paid > 0 else "No"


class DebtorNotes:
    """The notes and promises of one school, and the recording every part of its books shares."""

    def __init__(self, school: Register, changes: ChangeLog) -> None:
        self.school = school
        self.changes = changes
        self.recording = True
        """False while a history is generated: a school's first books are its baseline, not changes."""
        self.promises = Table()
        self.notes = Table()
        self.notes_of: dict[int, set[int]] = {}
        """Debtor id -> note ids."""
        self.promises_of: dict[int, set[int]] = {}
        """Debtor id -> promise ids."""
        self.promises_of_note: dict[int, set[int]] = {}

    @property
    def school_id(self) -> int:
        return self.school.school_id

    def _record(self, resource: Any, key: int, kind: Kind, identity: dict[str, Any] | None = None) -> None:
        if self.recording:
            self.changes.record(self.school_id, resource, key, kind, identity)

    def _code(self, debtor_id: int) -> str:
        debtor = self.school.debtors.get(debtor_id)
        return str(debtor["debtor_code"]) if debtor is not None else ""

    def _debtor(self, debtor_id: int) -> Record:
        debtor = self.school.debtors.get(debtor_id)
        if debtor is None:
            raise NotFound(f"debtor {debtor_id} does not exist")
        return debtor

    # promises to pay

    def _put_promise(self, record: Record) -> None:
        self.promises.put(int(record["promise_to_pay_id"]), record)

    def _pay_promises(self, debtor_id: int, cents: int, date: str) -> None:
        """A receipt adds to `amount_paid` of the debtor's open promises, the earliest promised first.
        A promise lapses `PROMISE_GRACE_DAYS` after its date: a later payment no longer counts (it was
        broken)."""
        ids = self.promises_of.get(debtor_id)
        if not ids:
            return
        lapsed = (dt.date.fromisoformat(date) - dt.timedelta(days=PROMISE_GRACE_DAYS)).isoformat()
        records = self.promises.records
        candidates = sorted(
            (
                records[pid]
                for pid in ids
                if records[pid]["promise_completed"] != "Yes"
                and records[pid]["date_promised"] >= lapsed
                and self._live(records[pid])
            ),
            key=lambda r: (r["date_promised"], r["promise_to_pay_id"]),
        )
        left = cents
        for record in candidates:
            if not self._live(record):
                continue
            promised = cents_of(record["amount_promised"]) or 0
            paid = cents_of(record["amount_paid"]) or 0
            take = min(promised - paid, left)
            if take <= 0:
                continue
            left -= take
            paid += take
            self._put_promise(
                {**record, "amount_paid": money(paid), "promise_completed": completion(paid, promised)}
            )
            self._record("promises", int(record["promise_to_pay_id"]), "updated")
            if left <= 0:
                return

    def _live(self, promise: Record) -> bool:
        note = self.notes.get(int(promise["note_id"]))
        return note is None or note["status"] != "Deleted"

    def open_promises(self, debtor_id: int) -> list[Record]:
        records = self.promises.records
        return [
            records[pid]
            for pid in sorted(self.promises_of.get(debtor_id, ()))
            if records[pid]["promise_completed"] != "Yes"
        ]

    def add_promise(self, note_id: int, date_promised: str, cents: int) -> Record:
        note = self.notes.get(note_id)
        if note is None:
            raise NotFound(f"note {note_id} does not exist")
        debtor_id = int(note[DEBTOR_ID])
        promise_id = self.promises.allocate()
        record: Record = {
            "promise_to_pay_id": promise_id,
            "note_id": note_id,
            DEBTOR_ID: debtor_id,
            "debtor_code": self._code(debtor_id),
            "date_promised": date_promised,
            "amount_promised": money(cents),
            "amount_paid": money(0),
            "promise_completed": "No",
        }
        self._put_promise(record)
        self.promises_of.setdefault(debtor_id, set()).add(promise_id)
        self.promises_of_note.setdefault(note_id, set()).add(promise_id)
        self._record("promises", promise_id, "created")
        return record

    def update_promise(self, promise_id: int, fields: dict[str, Any]) -> Record:
        """The school corrects a promise; `promise_completed` follows the amounts unless it is given."""
        record = self.promises.get(promise_id)
        if record is None:
            raise NotFound(f"promise to pay {promise_id} does not exist")
        changed = {**record, **fields}
        if "promise_completed" not in fields:
            promised = cents_of(changed["amount_promised"]) or 0
            changed["promise_completed"] = completion(cents_of(changed["amount_paid"]) or 0, promised)
        self._put_promise(changed)
        if changed != record:
            self._record("promises", promise_id, "updated")
        return changed

    def remove_promise(self, promise_id: int) -> Record:
        record = self.promises.remove(promise_id)
        if record is None:
            raise NotFound(f"promise to pay {promise_id} does not exist")
        self.promises_of.get(int(record[DEBTOR_ID]), set()).discard(promise_id)
        self.promises_of_note.get(int(record["note_id"]), set()).discard(promise_id)
        self._record("promises", promise_id, "removed")
        return record

    # debtor notes

    def add_note(
        self,
        debtor_id: int,
        *,
        date: str,
        note_type_id: int,
        communication_type_id: int | None,
        text: str,
        promises: list[tuple[str, int]] | None = None,
    ) -> Record:
        self._debtor(debtor_id)
        note_id = self.notes.allocate()
        record: Record = {
            "note_id": note_id,
            DEBTOR_ID: debtor_id,
            "debtor_code": self._code(debtor_id),
            "date": date,
            "note_type_id": note_type_id,
            "note_type": NOTE_TYPES.get(note_type_id, "Note"),
            "communication_type_id": communication_type_id,
            "communication_type": (
                COMMUNICATION_TYPES.get(communication_type_id) if communication_type_id is not None else None
            ),
            "note": text,
            "status": "Created",
        }
        self.notes.put(note_id, record)
        self.notes_of.setdefault(debtor_id, set()).add(note_id)
        self._record("notes", note_id, "created")
        for date_promised, cents in promises or ():
            self.add_promise(note_id, date_promised, cents)
        return record

    def update_note(self, note_id: int, fields: dict[str, Any]) -> Record:
        """Change fields; `"status": "Deleted"` deletes softly, `"Created"` restores (as d6's Update Note)."""
        record = self.notes.get(note_id)
        if record is None:
            raise NotFound(f"note {note_id} does not exist")
        changed = {**record, **fields}
        if "note_type_id" in fields:
            changed["note_type"] = NOTE_TYPES.get(changed["note_type_id"], "Note")
        if "communication_type_id" in fields:
            kind = changed["communication_type_id"]
            changed["communication_type"] = COMMUNICATION_TYPES.get(kind) if kind is not None else None
        before, after = int(record[DEBTOR_ID]), int(changed[DEBTOR_ID])
        if after != before:
            self._debtor(after)
            changed["debtor_code"] = self._code(after)
            self._move(note_id, before, after)
        self.notes.put(note_id, changed)
        if changed != record:
            self._record("notes", note_id, "updated")
        return changed

    def _move(self, note_id: int, before: int, after: int) -> None:
        """A note given to another debtor takes its promises along (they are the note's)."""
        self.notes_of.get(before, set()).discard(note_id)
        self.notes_of.setdefault(after, set()).add(note_id)
        for promise_id in sorted(self.promises_of_note.get(note_id, ())):
            self.promises_of.get(before, set()).discard(promise_id)
            self.promises_of.setdefault(after, set()).add(promise_id)
            record = self.promises.records[promise_id]
            self._put_promise({**record, DEBTOR_ID: after, "debtor_code": self._code(after)})
            self._record("promises", promise_id, "updated")

    def purge_note(self, note_id: int) -> Record:
        """Gone for good, with its promises (d6 deletes softly; this is for testing `note.removed`)."""
        record = self.notes.remove(note_id)
        if record is None:
            raise NotFound(f"note {note_id} does not exist")
        self.notes_of.get(int(record[DEBTOR_ID]), set()).discard(note_id)
        for promise_id in sorted(self.promises_of_note.pop(note_id, set())):
            self.remove_promise(promise_id)
        self._record("notes", note_id, "removed")
        return record
