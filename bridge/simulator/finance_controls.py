"""The `/_sim/` controls of a school's books: promises, notes and transactions, ageing and invoice runs.

Each change goes through `Finance`, so the books stay consistent (a receipt lowers the balance and pays
off open promises; the age analysis follows the transactions) and the change is recorded in
`/_sim/changes`. Transactions are addressed by the simulator's own `key`, since d6 publishes none.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any, Literal

import msgspec
from litestar import delete, get, patch, post
from litestar.exceptions import ValidationException
from litestar.params import FromPath, FromQuery, JSONBody

from bridge.simulator.controls import Sim
from bridge.simulator.finance import Finance
from bridge.simulator.ledger import (
    CREDIT_NOTE,
    DEPOSIT,
    INTERNAL_NOTE,
    PROMISE_NOTE,
    RECEIPT,
    TELEPHONIC,
    TEXT_NOTE,
    TRANSACTION_TYPES,
    Txn,
    cents_of,
    money,
)
from bridge.simulator.table import NotFound, Record

Amount = str | int | float
CREDIT_TYPES = frozenset({RECEIPT, DEPOSIT, CREDIT_NOTE})
"""Types whose `amount` is a credit; every other type's `amount` is a debit."""
SCHOOL = "/_sim/schools/{school_id:int}"
UNSET = msgspec.UNSET


class PromiseEntry(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    date_promised: str
    amount_promised: Amount


class NewPromise(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    accountable_person_id: int | None = None
    note_id: int | None = None
    date_promised: str | None = None
    amount_promised: Amount | None = None
    note: str | None = None


class PromiseChange(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    date_promised: str | msgspec.UnsetType = UNSET
    amount_promised: Amount | msgspec.UnsetType = UNSET
    amount_paid: Amount | msgspec.UnsetType = UNSET
    promise_completed: Literal["Yes", "No", "Partial"] | msgspec.UnsetType = UNSET


class NewNote(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    accountable_person_id: int
    date: str | None = None
    note_type_id: int = TEXT_NOTE
    communication_type_id: int | msgspec.UnsetType | None = UNSET
    note: str = ""
    promise_to_pays: list[PromiseEntry] = msgspec.field(default_factory=list)


class NoteChange(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    date: str | msgspec.UnsetType = UNSET
    note_type_id: int | msgspec.UnsetType = UNSET
    communication_type_id: int | msgspec.UnsetType | None = UNSET
    note: str | msgspec.UnsetType = UNSET
    status: Literal["Created", "Deleted"] | msgspec.UnsetType = UNSET


class NewTransaction(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    accountable_person_id: int
    transaction_type_id: int = RECEIPT
    amount: Amount | None = None
    debit_amount: Amount | None = None
    credit_amount: Amount | None = None
    transaction_date: str | None = None
    category_id: int | None = None
    learner_id: int | None = None
    transaction_reference: str | None = None
    transaction_description: str | None = None


class TransactionChange(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    transaction_date: str | msgspec.UnsetType = UNSET
    transaction_type_id: int | msgspec.UnsetType = UNSET
    debit_amount: Amount | msgspec.UnsetType = UNSET
    credit_amount: Amount | msgspec.UnsetType = UNSET
    category_id: int | msgspec.UnsetType | None = UNSET
    learner_id: int | msgspec.UnsetType | None = UNSET
    transaction_reference: str | msgspec.UnsetType = UNSET
    transaction_description: str | msgspec.UnsetType = UNSET


class AgeBody(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    months: Annotated[int, msgspec.Meta(ge=1, le=120)] = 1


def _books(sim: Sim, school_id: int) -> Finance:
    return sim.world.school(school_id).finance.ensure()


def _date(text: str | None, field: str, default: dt.date) -> str:
    if text is None:
        return default.isoformat()
    try:
        return dt.date.fromisoformat(text).isoformat()
    except ValueError:
        raise ValidationException(f"{field} must be a date, YYYY-MM-DD; got {text!r}") from None


def _cents(value: Amount | None, field: str, default: int | None = None) -> int:
    cents = cents_of(value) if value is not None else default
    if cents is None or cents < 0:
        raise ValidationException(f'{field} must be an amount of zero or more, like "3500.00"; got {value!r}')
    return cents


def _transaction_view(books: Finance, txn: Txn) -> Record:
    return {"key": txn.key, **books.row(txn)}


def _note_view(books: Finance, note: Record) -> Record:
    ids = sorted(books.promises_of_note.get(int(note["note_id"]), ()))
    return {**note, "promise_to_pays": [books.promises.records[key] for key in ids]}


# transactions


@get(f"{SCHOOL}/transactions", sync_to_thread=False)
def list_transactions(sim: Sim, school_id: FromPath[int]) -> dict[str, Any]:
    """Every transaction in capture order, each with its `key` (for PATCH and DELETE)."""
    books = _books(sim, school_id)
    return {"data": [_transaction_view(books, books.txns[key]) for key in books.txn_ids]}


@post(f"{SCHOOL}/transactions", sync_to_thread=False)
def create_transaction(sim: Sim, school_id: FromPath[int], data: JSONBody[NewTransaction]) -> Record:
    """A receipt by default: `{"accountable_person_id": 57, "amount": "1500.00"}` pays R1,500."""
    books = _books(sim, school_id)
    type_id = data.transaction_type_id
    if type_id not in TRANSACTION_TYPES:
        raise ValidationException(f"transaction_type_id must be one of {sorted(TRANSACTION_TYPES)}")
    debit = _cents(data.debit_amount, "debit_amount", 0)
    credit = _cents(data.credit_amount, "credit_amount", 0)
    if data.amount is not None:
        if type_id in CREDIT_TYPES:
            credit = _cents(data.amount, "amount")
        else:
            debit = _cents(data.amount, "amount")
    if not debit and not credit:
        raise ValidationException("give an amount (or debit_amount / credit_amount) above zero")
    txn = books.add_transaction(
        data.accountable_person_id,
        _date(data.transaction_date, "transaction_date", books.today()),
        type_id,
        debit,
        credit,
        category_id=data.category_id,
        learner_id=data.learner_id,
        reference=data.transaction_reference,
        description=data.transaction_description
        if data.transaction_description is not None
        else ("Payment received - EFT" if type_id == RECEIPT else TRANSACTION_TYPES[type_id]),
    )
    return _transaction_view(books, txn)


@patch(f"{SCHOOL}/transactions/{{key:int}}", sync_to_thread=False)
def update_transaction(
    sim: Sim, school_id: FromPath[int], key: FromPath[int], data: JSONBody[TransactionChange]
) -> Record:
    """Correct a transaction; balances and the age analysis follow (promises keep what they were paid)."""
    books = _books(sim, school_id)
    fields: dict[str, Any] = {}
    if data.transaction_date is not UNSET:
        fields["date"] = _date(data.transaction_date, "transaction_date", books.today())
    if data.transaction_type_id is not UNSET:
        fields["type_id"] = data.transaction_type_id
    if data.debit_amount is not UNSET:
        fields["debit"] = _cents(data.debit_amount, "debit_amount")
    if data.credit_amount is not UNSET:
        fields["credit"] = _cents(data.credit_amount, "credit_amount")
    for name, attribute in (
        ("category_id", "category_id"),
        ("learner_id", "learner_id"),
        ("transaction_reference", "reference"),
        ("transaction_description", "description"),
    ):
        value = getattr(data, name)
        if value is not UNSET:
            fields[attribute] = value
    return _transaction_view(books, books.update_transaction(key, fields))


@delete(f"{SCHOOL}/transactions/{{key:int}}", sync_to_thread=False)
def delete_transaction(sim: Sim, school_id: FromPath[int], key: FromPath[int]) -> None:
    _books(sim, school_id).remove_transaction(key)


# promises to pay


@get(f"{SCHOOL}/promises", sync_to_thread=False)
def list_promises(sim: Sim, school_id: FromPath[int]) -> dict[str, Any]:
    return {"data": list(_books(sim, school_id).promises.values())}


@post(f"{SCHOOL}/promises", sync_to_thread=False)
def create_promise(sim: Sim, school_id: FromPath[int], data: JSONBody[NewPromise]) -> Record:
    """A promise on an existing note (`note_id`), or on a new "Promise to pay" note for the debtor."""
    books = _books(sim, school_id)
    today = books.today()
    due = _date(data.date_promised, "date_promised", today + dt.timedelta(days=14))
    note_id = data.note_id
    if note_id is None:
        if data.accountable_person_id is None:
            raise ValidationException("give accountable_person_id (a new promise note) or note_id")
        debtor_id = data.accountable_person_id
    else:
        note = books.notes.get(note_id)
        if note is None:
            raise NotFound(f"note {note_id} does not exist")
        debtor_id = int(note["accountable_person_id"])
    owed = max(books.balance(debtor_id), 100_000)
    cents = _cents(data.amount_promised, "amount_promised", owed)
    if note_id is None:
        text = data.note or f"Promised R{money(cents)} by {due}."
        note = books.add_note(
            debtor_id,
            date=today.isoformat(),
            note_type_id=PROMISE_NOTE,
            communication_type_id=TELEPHONIC,
            text=text,
        )
        note_id = int(note["note_id"])
    return books.add_promise(note_id, due, cents)


@patch(f"{SCHOOL}/promises/{{key:int}}", sync_to_thread=False)
def update_promise(
    sim: Sim, school_id: FromPath[int], key: FromPath[int], data: JSONBody[PromiseChange]
) -> Record:
    """What the school sets: the date and amounts; `promise_completed` follows them unless given."""
    books = _books(sim, school_id)
    fields: dict[str, Any] = {}
    if data.date_promised is not UNSET:
        fields["date_promised"] = _date(data.date_promised, "date_promised", books.today())
    if data.amount_promised is not UNSET:
        fields["amount_promised"] = money(_cents(data.amount_promised, "amount_promised"))
    if data.amount_paid is not UNSET:
        fields["amount_paid"] = money(_cents(data.amount_paid, "amount_paid"))
    if data.promise_completed is not UNSET:
        fields["promise_completed"] = data.promise_completed
    return books.update_promise(key, fields)


@delete(f"{SCHOOL}/promises/{{key:int}}", sync_to_thread=False)
def delete_promise(sim: Sim, school_id: FromPath[int], key: FromPath[int]) -> None:
    """Gone, as d6's Delete Promise To Pay removes it."""
    _books(sim, school_id).remove_promise(key)


# debtor notes


@get(f"{SCHOOL}/notes", sync_to_thread=False)
def list_notes(sim: Sim, school_id: FromPath[int]) -> dict[str, Any]:
    """Every note, deleted ones included (with `"status": "Deleted"`), each with its promises."""
    books = _books(sim, school_id)
    return {"data": [_note_view(books, note) for note in books.notes.values()]}


@post(f"{SCHOOL}/notes", sync_to_thread=False)
def create_note(sim: Sim, school_id: FromPath[int], data: JSONBody[NewNote]) -> Record:
    books = _books(sim, school_id)
    communication = data.communication_type_id
    if communication is UNSET:
        communication = None if data.note_type_id == INTERNAL_NOTE else TELEPHONIC
    promises = [
        (
            _date(entry.date_promised, "date_promised", books.today()),
            _cents(entry.amount_promised, "amount_promised"),
        )
        for entry in data.promise_to_pays
    ]
    note = books.add_note(
        data.accountable_person_id,
        date=_date(data.date, "date", books.today()),
        note_type_id=data.note_type_id,
        communication_type_id=communication,
        text=data.note,
        promises=promises,
    )
    return _note_view(books, note)


@patch(f"{SCHOOL}/notes/{{key:int}}", sync_to_thread=False)
def update_note(sim: Sim, school_id: FromPath[int], key: FromPath[int], data: JSONBody[NoteChange]) -> Record:
    """Change fields; `"status": "Deleted"` deletes the note softly and `"Created"` restores it."""
    books = _books(sim, school_id)
    fields = {name: value for name, value in msgspec.structs.asdict(data).items() if value is not UNSET}
    if "date" in fields:
        fields["date"] = _date(fields["date"], "date", books.today())
    return _note_view(books, books.update_note(key, fields))


@delete(f"{SCHOOL}/notes/{{key:int}}", sync_to_thread=False)
def delete_note(
    sim: Sim, school_id: FromPath[int], key: FromPath[int], purge: FromQuery[bool] = False
) -> None:
    """Soft, as d6 deletes (the note stays, `"status": "Deleted"`); `?purge=true` removes it for good."""
    books = _books(sim, school_id)
    if purge:
        books.purge_note(key)
        return
    note = books.notes.get(key)
    if note is None or note["status"] == "Deleted":
        raise NotFound(f"note {key} does not exist or has already been deleted")
    books.update_note(key, {"status": "Deleted"})


# the age analysis, the clock, invoice runs


@get(f"{SCHOOL}/balances", sync_to_thread=False)
def list_balances(sim: Sim, school_id: FromPath[int]) -> dict[str, Any]:
    """The age analysis as `ageanalysis?all_accounts=1` sends it: one family row per debtor."""
    school = sim.world.school(school_id)
    books = school.finance.ensure()
    return {"data": [books.balance_row(debtor) for debtor in school.debtors.values()]}


@post(f"{SCHOOL}/age", status_code=200, sync_to_thread=False)
def age(sim: Sim, school_id: FromPath[int], data: JSONBody[AgeBody | None] = None) -> Record:
    """A month passes for this school: every balance moves one bucket older (`months` for more)."""
    books = _books(sim, school_id)
    changed = books.age(data.months if data is not None else 1)
    return {"school_id": school_id, "today": books.today().isoformat(), "balances_changed": changed}


@post(f"{SCHOOL}/invoice-run", status_code=200, sync_to_thread=False)
def invoice_run(sim: Sim, school_id: FromPath[int]) -> Record:
    """Month-start invoices, dated the 1st of the school's month, for every current learner not yet
    invoiced this month (so `age` then `invoice-run` is a month start)."""
    books = _books(sim, school_id)
    invoices = books.invoice_run()
    return {"school_id": school_id, "today": books.today().isoformat(), "invoices": invoices}


FINANCE_CONTROL_HANDLERS = [
    list_transactions,
    create_transaction,
    update_transaction,
    delete_transaction,
    list_promises,
    create_promise,
    update_promise,
    delete_promise,
    list_notes,
    create_note,
    update_note,
    delete_note,
    list_balances,
    age,
    invoice_run,
]
