"""One school's Finance+ books: transactions and the age analysis they imply (notes and promises in
`debtor_notes.py`).

Every change goes through `Finance`, which keeps the books consistent and records the change: a
transaction moves its debtor's accumulated balances and age-analysis row, a receipt pays off the debtor's
open promises (oldest first), a month passing ages every balance by one bucket. Transactions are kept
once, as small objects, and rendered as d6 rows when asked for.
"""

from __future__ import annotations

import bisect
import datetime as dt
import sys
from collections.abc import Callable
from typing import Any

from bridge.simulator.changes import ChangeLog, Kind
from bridge.simulator.data import OPEN_DATE
from bridge.simulator.debtor_notes import DEBTOR_ID, DebtorNotes
from bridge.simulator.ledger import (
    BUCKETS,
    CATEGORIES,
    INVOICE,
    NO_BALANCE,
    RECEIPT,
    TRANSACTION_TYPES,
    Buckets,
    Calendar,
    Txn,
    buckets_of,
    fees_for,
    money,
    month_name,
    month_start,
    outstanding,
)
from bridge.simulator.table import NotFound, Record, Register

REFERENCE_PREFIXES = {1: "JNL", 2: "RCT", 3: "PAY", 4: "DEP", 5: "INV", 6: "CRN"}
IDENTITY_FIELDS = (
    "debtor_code",
    "transaction_date",
    "transaction_type_id",
    "transaction_reference",
    "transaction_description",
    "debit_amount",
    "credit_amount",
)


def invoice_text(category_id: int, period: int, learner: Record) -> str:
    return f"{CATEGORIES[category_id]} {month_name(period)} - {learner.get('first_name', '')}"


class Finance(DebtorNotes):
    """The books of one school: transactions and the age analysis, with its notes and promises.

    A school added with finance data gets its history on first use (`ensure`), not when it is added: a
    simulator of 2,500 schools that is never asked for Finance+ data pays nothing for it. From then on
    `seeded` is true and the churn makes finance changes in this school too.
    """

    def __init__(self, school: Register, changes: ChangeLog, calendar: Calendar) -> None:
        super().__init__(school, changes)
        self.calendar = calendar
        self.pending: Callable[[Finance], None] | None = None
        """The generator of this school's history, until it has run."""
        self.seeded = False
        self.offset = 0
        """Months this school's clock runs ahead of the calendar (each `age` adds one)."""
        self.period = calendar.period()
        """The month the balances are aged for."""
        self.invoiced_period = self.period
        self.invoiced: dict[int, int] = {}
        """Learner id -> the last month that learner was invoiced for."""
        self.txns: dict[int, Txn] = {}
        """Every transaction by its internal key (d6 publishes none); `txn_ids` keeps the keys in order."""
        self.txn_ids: list[int] = []
        self.next_key = 1
        self.ledgers: dict[int, list[Txn]] = {}
        self.ageing: dict[int, tuple[str, Buckets]] = {}
        self.numbers: dict[int, int] = {}

    @property
    def state(self) -> str:
        """One of "none" (no finance data), "pending" (generated on first use) and "seeded"."""
        return "seeded" if self.seeded else ("pending" if self.pending is not None else "none")

    def ensure(self) -> Finance:
        """Generate the history now if it is still pending; every reader and writer calls this first."""
        self.refresh()
        generate = self.pending
        if generate is not None:
            self.pending = None
            generate(self)
            self.seeded = True
        return self

    def today(self) -> dt.date:
        return self.calendar.today(self.offset)

    def next_reference(self, type_id: int) -> str:
        number = self.numbers.get(type_id, 0) + 1
        self.numbers[type_id] = number
        return f"{REFERENCE_PREFIXES.get(type_id, 'TRN')}{number:06d}"

    # the clock and the age analysis

    def refresh(self) -> int:
        """Age every balance when this school's month has moved on; returns how many rows changed."""
        period = self.calendar.period(self.offset)
        if period == self.period:
            return 0
        self.period = period
        return sum(1 for debtor_id in list(self.ledgers) if self._reage(debtor_id))

    def age(self, months: int = 1) -> int:
        """Move this school's clock on by whole months: every balance moves that many buckets older."""
        self.offset += months
        return self.refresh()

    def _reage(self, debtor_id: int) -> bool:
        ledger = self.ledgers.get(debtor_id)
        new = (
            (ledger[-1].date, buckets_of(outstanding(ledger, self.period)))
            if ledger
            else (OPEN_DATE, NO_BALANCE)
        )
        old = self.ageing.get(debtor_id)
        self.ageing[debtor_id] = new
        if old is None or old == new:
            return False
        self._record("balances", debtor_id, "updated")
        return True

    def ageing_of(self, debtor_id: int) -> tuple[str, Buckets]:
        found = self.ageing.get(debtor_id)
        if found is None:
            self._reage(debtor_id)
            found = self.ageing[debtor_id]
        return found

    def balance(self, debtor_id: int) -> int:
        ledger = self.ledgers.get(debtor_id)
        return ledger[-1].balance if ledger else 0

    def balance_row(self, debtor: Record) -> Record:
        """The debtor's family row of the age analysis, as d6's example orders it."""
        date, buckets = self.ageing_of(int(debtor[DEBTOR_ID]))
        row: Record = {"debtor_code": debtor["debtor_code"], DEBTOR_ID: str(debtor[DEBTOR_ID]), "date": date}
        for name, cents in zip(BUCKETS, buckets, strict=True):
            row[name] = money(cents)
        row["balance_total"] = money(sum(buckets))
        return row

    # transactions

    def row(self, txn: Txn, family: bool = True) -> Record:
        """A transaction as the report shows it; a flat row (`family`) starts with the family's two ids."""
        category_id = txn.category_id
        row: Record = (
            {DEBTOR_ID: str(txn.debtor_id), "debtor_code": self._code(txn.debtor_id)} if family else {}
        )
        row.update(
            {
                "transaction_date": txn.date,
                "transaction_type_id": str(txn.type_id),
                "transaction_type": TRANSACTION_TYPES.get(txn.type_id, "Other"),
                "category_id": str(category_id) if category_id is not None else None,
                "category": CATEGORIES.get(category_id) if category_id is not None else None,
                "learner_id": str(txn.learner_id) if txn.learner_id is not None else None,
                "transaction_reference": txn.reference,
                "transaction_description": txn.description,
                "debit_amount": money(txn.debit),
                "credit_amount": money(txn.credit),
                "accumulated_balance": money(txn.balance),
            }
        )
        return row

    def identity(self, txn: Txn) -> dict[str, Any]:
        row = self.row(txn)
        return {name: row[name] for name in IDENTITY_FIELDS}

    def _record_txn(self, txn: Txn, kind: Kind) -> None:
        if self.recording:
            self.changes.record(self.school_id, "transactions", txn.key, kind, self.identity(txn))

    def _rebalance(self, debtor_id: int, start: int) -> None:
        """Accumulated balances from ledger position `start` on."""
        ledger = self.ledgers.get(debtor_id, [])
        balance = ledger[start - 1].balance if start > 0 else 0
        for txn in ledger[start:]:
            balance += txn.debit - txn.credit
            txn.balance = balance

    def _insert(self, txn: Txn) -> int:
        ledger = self.ledgers.setdefault(txn.debtor_id, [])
        if not ledger or ledger[-1].order <= txn.order:
            ledger.append(txn)
            return len(ledger) - 1
        index = bisect.bisect_left(ledger, txn.order, key=lambda entry: entry.order)
        ledger.insert(index, txn)
        return index

    def _unlink(self, txn: Txn) -> int:
        ledger = self.ledgers[txn.debtor_id]
        index = bisect.bisect_left(ledger, txn.order, key=lambda entry: entry.order)
        del ledger[index]
        if not ledger:
            del self.ledgers[txn.debtor_id]
        return index

    def _forget(self, txn: Txn) -> None:
        del self.txns[txn.key]
        del self.txn_ids[bisect.bisect_left(self.txn_ids, txn.key)]

    def add_transaction(
        self,
        debtor_id: int,
        date: str,
        type_id: int,
        debit: int,
        credit: int,
        *,
        category_id: int | None = None,
        learner_id: int | None = None,
        reference: str | None = None,
        description: str = "",
    ) -> Txn:
        """Capture one transaction; a receipt also pays off the debtor's open promises."""
        self._debtor(debtor_id)
        key = self.next_key
        self.next_key += 1
        txn = Txn(
            key,
            debtor_id,
            sys.intern(date),
            type_id,
            debit,
            credit,
            category_id=category_id,
            learner_id=learner_id,
            reference=reference if reference is not None else self.next_reference(type_id),
            description=sys.intern(description),
        )
        self.txns[key] = txn
        self.txn_ids.append(key)
        self._rebalance(debtor_id, self._insert(txn))
        self._record_txn(txn, "created")
        if type_id == RECEIPT and credit > 0:
            self._pay_promises(debtor_id, credit, date)
        if self.recording:
            self._reage(debtor_id)
        return txn

    def update_transaction(self, key: int, fields: dict[str, Any]) -> Txn:
        """Correct a captured transaction (date, type, amounts, texts); balances follow, promises do not."""
        txn = self.txns.get(key)
        if txn is None:
            raise NotFound(f"transaction {key} does not exist")
        start = self._unlink(txn)
        for name, value in fields.items():
            setattr(txn, name, value)
        start = min(start, self._insert(txn))
        self._rebalance(txn.debtor_id, start)
        self._record_txn(txn, "updated")
        self._reage(txn.debtor_id)
        return txn

    def remove_transaction(self, key: int) -> Txn:
        """A reversal that leaves no trace: the transaction vanishes from the report."""
        txn = self.txns.get(key)
        if txn is None:
            raise NotFound(f"transaction {key} does not exist")
        self._record_txn(txn, "removed")
        self._forget(txn)
        self._rebalance(txn.debtor_id, self._unlink(txn))
        self._reage(txn.debtor_id)
        return txn

    def invoice_run(self) -> int:
        """Month-start invoices: every current learner not yet invoiced this month, dated the 1st."""
        self.refresh()
        period = self.period
        date = month_start(period).isoformat()
        school = self.school
        count = 0
        for debtor_id in list(school.debtors.ids):
            if school.debtors.records[debtor_id].get("account_closing_date") != OPEN_DATE:
                continue
            for learner_id in school.learner_ids_of(debtor_id):
                if self.invoiced.get(learner_id, -1) >= period:
                    continue
                self.invoiced[learner_id] = period
                learner = school.learners.records[learner_id]
                for category_id, cents in fees_for(self.school_id, learner):
                    self.add_transaction(
                        debtor_id,
                        date,
                        INVOICE,
                        cents,
                        0,
                        category_id=category_id,
                        learner_id=learner_id,
                        description=invoice_text(category_id, period, learner),
                    )
                    count += 1
        self.invoiced_period = max(self.invoiced_period, period)
        return count

    # the debtors the books belong to

    def debtor_created(self, debtor_id: int) -> None:
        self.ageing[debtor_id] = (OPEN_DATE, NO_BALANCE)
        self._record("balances", debtor_id, "created")

    def debtor_code_changed(self, debtor_id: int) -> None:
        """Every record that carries the code follows it (d6 joins it in each report)."""
        code = self._code(debtor_id)
        self._record("balances", debtor_id, "updated")
        for txn in self.ledgers.get(debtor_id, []):
            self._record_txn(txn, "updated")
        for table, ids, resource in (
            (self.notes, self.notes_of.get(debtor_id, set()), "notes"),
            (self.promises, self.promises_of.get(debtor_id, set()), "promises"),
        ):
            for key in sorted(ids):
                table.put(key, {**table.records[key], "debtor_code": code})
                self._record(resource, key, "updated")

    def debtor_removed(self, debtor_id: int) -> None:
        """A debtor that vanishes takes its books along."""
        for txn in self.ledgers.get(debtor_id, []):
            self._record_txn(txn, "removed")
            self._forget(txn)
        self.ledgers.pop(debtor_id, None)
        for note_id in sorted(self.notes_of.pop(debtor_id, set())):
            self.purge_note(note_id)
        self.promises_of.pop(debtor_id, None)
        self.ageing.pop(debtor_id, None)
        self._record("balances", debtor_id, "removed")
