"""The Finance+ churn: one change at a time of the kind a school's finance office makes.

Payments (by families that owe: what they promised, about a month's fees, now and then everything),
reminders and internal notes, calls that end in promises to pay, notes deleted and restored, invoices
outside the month-start run, credit notes and journals. Each goes through `Finance`, so the books stay
consistent and the change is recorded.
"""

from __future__ import annotations

import datetime as dt
import random

from bridge.simulator.finance import Finance
from bridge.simulator.finance_data import EXTRAS, receipt_description, round_down
from bridge.simulator.ledger import (
    CREDIT_NOTE,
    EMAIL,
    INTERNAL_NOTE,
    INVOICE,
    JOURNAL,
    PROMISE_NOTE,
    RECEIPT,
    SMS,
    TELEPHONIC,
    TEXT_NOTE,
    cents_of,
    fees_for,
    money,
)


def finance_change(finance: Finance, rng: random.Random) -> bool:
    """One change a school's finance office makes; False when the school has no debtor to make it on."""
    debtors = finance.school.debtors.ids
    if not debtors:
        return False
    debtor_id = debtors[rng.randrange(len(debtors))]
    today = finance.today().isoformat()
    roll = rng.random()
    if roll < 0.45:
        _churn_payment(finance, rng, _owing(finance, rng, debtor_id), today)
    elif roll < 0.57:
        _churn_note(finance, rng, debtor_id, today)
    elif roll < 0.7:
        _churn_promise(finance, rng, _owing(finance, rng, debtor_id), today)
    elif roll < 0.8:
        _churn_delete_note(finance, rng, debtor_id, today)
    elif roll < 0.92:
        _churn_invoice(finance, rng, debtor_id, today)
    elif rng.random() < 0.5:
        cents = rng.randint(10, 80) * 1_000
        finance.add_transaction(debtor_id, today, CREDIT_NOTE, 0, cents, description="Fee adjustment")
    else:
        finance.add_transaction(debtor_id, today, JOURNAL, 15_000, 0, description="Returned debit order fee")
    return True


def _owing(finance: Finance, rng: random.Random, debtor_id: int) -> int:
    """A debtor who owes something, when a few tries find one (payments and promises need one)."""
    debtors = finance.school.debtors.ids
    for _ in range(4):
        if finance.balance(debtor_id) > 0:
            return debtor_id
        debtor_id = debtors[rng.randrange(len(debtors))]
    return debtor_id


def _churn_payment(finance: Finance, rng: random.Random, debtor_id: int, today: str) -> None:
    """Families pay what they promised, or about a month's fees, now and then everything they owe; a
    family that owes nothing pays nothing (the office writes a note instead)."""
    balance = finance.balance(debtor_id)
    if balance <= 0:
        _churn_note(finance, rng, debtor_id, today)
        return
    promises = finance.open_promises(debtor_id)
    monthly = monthly_charge(finance, debtor_id) or balance
    roll = rng.random()
    if promises and roll < 0.5:
        first = promises[0]
        cents = cents_or_zero(first["amount_promised"]) - cents_or_zero(first["amount_paid"])
    elif roll < 0.8:
        cents = min(balance, monthly)
    elif roll < 0.9:
        cents = round_down(min(balance, monthly) * rng.randint(30, 90) // 100)
    else:
        cents = balance
    finance.add_transaction(
        debtor_id, today, RECEIPT, 0, max(cents, 1_000), description=receipt_description(rng)
    )


def monthly_charge(finance: Finance, debtor_id: int) -> int:
    """What the family is invoiced at a month start."""
    school = finance.school
    learners = school.learners.records
    return sum(
        cents
        for key in school.learner_ids_of(debtor_id)
        for _, cents in fees_for(school.school_id, learners[key])
    )


def cents_or_zero(amount: object) -> int:
    return cents_of(amount) or 0


def _churn_note(finance: Finance, rng: random.Random, debtor_id: int, today: str) -> None:
    balance = finance.balance(debtor_id)
    if balance > 0 and rng.random() < 0.6:
        finance.add_note(
            debtor_id,
            date=today,
            note_type_id=TEXT_NOTE,
            communication_type_id=rng.choice((SMS, EMAIL)),
            text=f"Reminder sent: the account is R{money(balance)} in arrears.",
        )
    else:
        finance.add_note(
            debtor_id,
            date=today,
            note_type_id=INTERNAL_NOTE,
            communication_type_id=None,
            text=rng.choice(
                (
                    "Account holder asked for a copy of the statement.",
                    "Account holder updated banking details for the debit order.",
                    "New contact number captured.",
                )
            ),
        )


def _churn_promise(finance: Finance, rng: random.Random, debtor_id: int, today: str) -> None:
    balance = finance.balance(debtor_id)
    promised = (
        round_down(balance * rng.randint(30, 100) // 100) if balance > 0 else rng.randint(2, 10) * 50_000
    )
    due = (dt.date.fromisoformat(today) + dt.timedelta(days=rng.randint(3, 21))).isoformat()
    finance.add_note(
        debtor_id,
        date=today,
        note_type_id=PROMISE_NOTE,
        communication_type_id=TELEPHONIC,
        text=f"Called about the account; promised R{money(promised)} by {due}.",
        promises=[(due, promised)],
    )


def _churn_delete_note(finance: Finance, rng: random.Random, debtor_id: int, today: str) -> None:
    """Mostly deletes a note (softly, as d6 does); now and then a deleted note is restored."""
    ids = finance.notes.ids
    if not ids:
        _churn_note(finance, rng, debtor_id, today)
        return
    note_id = ids[rng.randrange(len(ids))]
    deleted = finance.notes.records[note_id]["status"] == "Deleted"
    finance.update_note(note_id, {"status": "Created" if deleted else "Deleted"})


def _churn_invoice(finance: Finance, rng: random.Random, debtor_id: int, today: str) -> None:
    """An invoice outside the month-start run: an excursion, a tour, stationery, a holiday club."""
    learners = finance.school.learner_ids_of(debtor_id)
    if not learners:
        finance.add_transaction(debtor_id, today, JOURNAL, 15_000, 0, description="Returned debit order fee")
        return
    learner_id = rng.choice(learners)
    learner = finance.school.learners.records[learner_id]
    item, category_id, low, high = rng.choice(EXTRAS)
    finance.add_transaction(
        debtor_id,
        today,
        INVOICE,
        rng.randint(low, high) * 100,
        0,
        category_id=category_id,
        learner_id=learner_id,
        description=f"{item} - {learner['first_name']}",
    )
