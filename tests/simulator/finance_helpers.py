"""What the Finance+ tests share: the paths, a pinned calendar, the invariants of a school's books."""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Any

from bridge.simulator.finance import Finance
from bridge.simulator.ledger import buckets_of, cents_of, outstanding

DEBT = "/v2/finplus/debtmanagement"
AGE = f"{DEBT}/ageanalysis"
TRANSACTIONS = f"{DEBT}/financialtransactions"
PROMISES = f"{DEBT}/debtornotes/promisetopays"
NOTES = f"{DEBT}/debtornotes/notes"
TODAY = "2026-03-14"
"""Every Finance+ test pins the schools' calendar, so the books are the same on every run."""

BUCKETS = [
    "balance_current",
    "balance_30days",
    "balance_60days",
    "balance_90days",
    "balance_120days",
    "balance_150days",
]
AMOUNT = re.compile(r"-?\d+\.\d\d")


def amount(text: str) -> Decimal:
    assert isinstance(text, str) and AMOUNT.fullmatch(text), f"not a d6 amount: {text!r}"
    return Decimal(text)


def total_of(row: dict[str, Any]) -> Decimal:
    return sum((amount(row[name]) for name in BUCKETS), Decimal(0))


def assert_books_hold_together(books: Finance) -> None:
    """Running balances, ledger order, cached ageing and promise amounts all agree with the transactions."""
    assert books.txn_ids == sorted(books.txns)
    assert sum(len(ledger) for ledger in books.ledgers.values()) == len(books.txns)
    for debtor_id, ledger in books.ledgers.items():
        assert ledger == sorted(ledger, key=lambda txn: txn.order)
        balance = 0
        for txn in ledger:
            balance += txn.debit - txn.credit
            assert txn.balance == balance
            assert txn.debtor_id == debtor_id
        assert books.ageing_of(debtor_id)[1] == buckets_of(outstanding(ledger, books.period))
    for promise in books.promises.values():
        paid = cents_of(promise["amount_paid"]) or 0
        promised = cents_of(promise["amount_promised"]) or 0
        assert 0 <= paid <= promised or promise["promise_completed"] == "Yes"
        assert promise["promise_to_pay_id"] in books.promises_of[promise["accountable_person_id"]]
    for note in books.notes.values():
        assert note["status"] in ("Created", "Deleted")
        assert note["note_id"] in books.notes_of[note["accountable_person_id"]]
