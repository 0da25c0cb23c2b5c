"""The Finance+ data generator: months of history that behave like a school (`finance_churn.py` goes on).

History is replayed day by day for each debtor through the same `Finance` calls the churn and the
controls use, so its books hold together by construction: invoices on the 1st of every month (school fees
per learner, aftercare, hostel), payments by the family's habit, the odd credit note and journal, calls
that end in promises to pay, some kept, some half kept, some broken, and notes (a few deleted). All
randomness comes from the generator passed in, so a seed gives the same books on the same date.
"""

from __future__ import annotations

import datetime as dt
import heapq
import random
from collections.abc import Callable

from bridge.simulator.data import OPEN_DATE
from bridge.simulator.finance import Finance, invoice_text
from bridge.simulator.ledger import (
    AFTERCARE,
    CREDIT_NOTE,
    EMAIL,
    INTERNAL_NOTE,
    INVOICE,
    JOURNAL,
    PROMISE_NOTE,
    RECEIPT,
    SCHOOL_FEES,
    SMS,
    SPORT,
    TELEPHONIC,
    TEXT_NOTE,
    fees_for,
    money,
    month_index,
    month_start,
)
from bridge.simulator.table import Register

HISTORY_MONTHS = 6
"""This month and the five before it are invoiced; older debt is a balance brought forward."""

HABITS: tuple[str, ...] = ("prompt", "late", "struggling", "defaulter", "ahead")
HABIT_WEIGHTS: tuple[float, ...] = (0.55, 0.2, 0.15, 0.07, 0.03)
EXTRAS: tuple[tuple[str, int, int, int], ...] = (
    ("Excursion", SPORT, 150, 450),
    ("Sport tour", SPORT, 800, 2500),
    ("Stationery pack", SCHOOL_FEES, 300, 900),
    ("Holiday club", AFTERCARE, 400, 1200),
)
PAYMENT_WORDS: tuple[str, ...] = ("EFT", "Debit order", "Cash", "Card", "SnapScan")


def round_down(cents: int, step: int = 5_000) -> int:
    """Amounts people promise and pay: whole R50s, at least one."""
    return max(step, cents // step * step)


def receipt_description(rng: random.Random) -> str:
    return f"Payment received - {rng.choice(PAYMENT_WORDS)}"


# history


class _Replay:
    """One debtor's months, replayed in date order; events may schedule later events (a promise kept)."""

    def __init__(self, finance: Finance, rng: random.Random, debtor_id: int, today: dt.date) -> None:
        self.finance = finance
        self.rng = rng
        self.debtor_id = debtor_id
        self.today = today
        self.queue: list[tuple[dt.date, int, Callable[[dt.date], object]]] = []
        self.sequence = 0

    def at(self, date: dt.date, action: Callable[[dt.date], object]) -> None:
        if date <= self.today:
            self.sequence += 1
            heapq.heappush(self.queue, (date, self.sequence, action))

    def run(self) -> None:
        while self.queue:
            date, _, action = heapq.heappop(self.queue)
            action(date)

    def balance(self) -> int:
        return self.finance.balance(self.debtor_id)

    def pay(self, date: dt.date, cents: int) -> None:
        if cents > 0:
            self.finance.add_transaction(
                self.debtor_id, date.isoformat(), RECEIPT, 0, cents, description=receipt_description(self.rng)
            )


def books_for(school: Register, rng: random.Random) -> Callable[[Finance], None]:
    """The generator of a school's history, for `Finance.pending`: it covers the debtors and learners the
    school has now, whenever it runs (records added later start with empty books)."""
    debtors_before = school.debtors.next_id
    learners_before = school.learners.next_id

    def generate(finance: Finance) -> None:
        seed_books(finance, rng, debtors_before, learners_before)

    return generate


def seed_books(finance: Finance, rng: random.Random, debtors_before: int, learners_before: int) -> None:
    """Generate the school's history up to today, silently (a seeded school's books are its baseline)."""
    school = finance.school
    finance.recording = False
    today = finance.today()
    first = finance.period - (HISTORY_MONTHS - 1)
    for debtor_id in school.debtors.ids:
        if debtor_id >= debtors_before:
            break
        _seed_debtor(finance, rng, debtor_id, first, today, learners_before)
    for debtor_id in list(finance.ledgers):
        finance.ageing_of(debtor_id)
    finance.recording = True
    finance.invoiced_period = finance.period


def _seed_debtor(
    finance: Finance, rng: random.Random, debtor_id: int, first: int, today: dt.date, learners_before: int
) -> None:
    school = finance.school
    debtor = school.debtors.records[debtor_id]
    learners = [
        school.learners.records[key] for key in school.learner_ids_of(debtor_id) if key < learners_before
    ]
    habit = rng.choices(HABITS, HABIT_WEIGHTS)[0]
    closing = str(debtor.get("account_closing_date", OPEN_DATE))
    last = month_index(today) if closing == OPEN_DATE else min(month_index(today), month_index(closing))
    replay = _Replay(finance, rng, debtor_id, today)
    if (habit == "defaulter" and rng.random() < 0.7) or (last < first and rng.random() < 0.25):
        amount = rng.randrange(10, 120) * 10_000
        replay.at(
            month_start(first - 1),
            lambda date: finance.add_transaction(
                debtor_id, date.isoformat(), JOURNAL, amount, 0, description="Balance brought forward"
            ),
        )
    charges = [(learner, fees_for(school.school_id, learner)) for learner in learners]
    monthly = sum(cents for _, fees in charges for _, cents in fees)
    for period in range(first, last + 1):
        start = month_start(period)
        for learner, fees in charges:
            replay.at(start, _invoice(finance, debtor_id, learner, fees, period))
        if monthly:
            _month_of(replay, habit, start, monthly, period >= month_index(today) - 2)
    replay.run()
    _seed_notes(replay, habit)


def _invoice(
    finance: Finance, debtor_id: int, learner: dict[str, object], fees: list[tuple[int, int]], period: int
) -> Callable[[dt.date], None]:
    def invoice(date: dt.date) -> None:
        learner_id = int(str(learner["learner_id"]))
        finance.invoiced[learner_id] = max(finance.invoiced.get(learner_id, -1), period)
        for category_id, cents in fees:
            finance.add_transaction(
                debtor_id,
                date.isoformat(),
                INVOICE,
                cents,
                0,
                category_id=category_id,
                learner_id=learner_id,
                description=invoice_text(category_id, period, learner),
            )

    return invoice


def _month_of(replay: _Replay, habit: str, start: dt.date, monthly: int, recent: bool) -> None:
    """One month of a family's paying, and, when it falls behind lately, the school's calls."""
    rng = replay.rng
    finance = replay.finance
    day = start.replace

    if habit == "prompt" and rng.random() < 0.97:
        replay.at(day(day=rng.randint(1, 7)), lambda date: replay.pay(date, monthly))
    elif habit == "late" and rng.random() < 0.8:
        replay.at(day(day=rng.randint(15, 28)), lambda date: replay.pay(date, replay.balance()))
    elif habit == "struggling" and rng.random() < 0.65:
        part = round_down(monthly * rng.randint(40, 80) // 100)
        replay.at(day(day=rng.randint(5, 28)), lambda date: replay.pay(date, part))
    elif habit == "defaulter" and rng.random() < 0.15:
        replay.at(day(day=rng.randint(5, 28)), lambda date: replay.pay(date, rng.randint(5, 20) * 10_000))
    elif habit == "ahead" and rng.random() < 0.5:
        replay.at(day(day=rng.randint(1, 5)), lambda date: replay.pay(date, 2 * monthly))
    if rng.random() < 0.04:
        cents = rng.randint(10, 80) * 1_000
        replay.at(
            day(day=rng.randint(2, 27)),
            lambda date: finance.add_transaction(
                replay.debtor_id, date.isoformat(), CREDIT_NOTE, 0, cents, description="Fee adjustment"
            ),
        )
    if rng.random() < 0.03:
        replay.at(
            day(day=rng.randint(2, 27)),
            lambda date: finance.add_transaction(
                replay.debtor_id, date.isoformat(), JOURNAL, 15_000, 0, description="Returned debit order fee"
            ),
        )
    if recent and habit != "prompt" and rng.random() < 0.5:
        replay.at(day(day=rng.randint(8, 12)), lambda date: _call(replay, date, monthly))


def _call(replay: _Replay, date: dt.date, monthly: int) -> None:
    """The school phones a family in arrears; most promise to pay, and keep it, half keep it, or forget."""
    rng = replay.rng
    arrears = replay.balance()
    if arrears <= monthly // 2:
        return
    finance = replay.finance
    if rng.random() < 0.3:
        finance.add_note(
            replay.debtor_id,
            date=date.isoformat(),
            note_type_id=TEXT_NOTE,
            communication_type_id=SMS,
            text=f"Reminder sent: the account is R{money(arrears)} in arrears.",
        )
        return
    promised = round_down(arrears * rng.randint(30, 100) // 100)
    due = date + dt.timedelta(days=rng.randint(5, 20))
    finance.add_note(
        replay.debtor_id,
        date=date.isoformat(),
        note_type_id=PROMISE_NOTE,
        communication_type_id=TELEPHONIC,
        text=f"Called about R{money(arrears)} in arrears; promised R{money(promised)} by {due.isoformat()}.",
        promises=[(due.isoformat(), promised)],
    )
    outcome = rng.random()
    if outcome < 0.55:
        replay.at(due - dt.timedelta(days=rng.randint(0, 3)), lambda when: replay.pay(when, promised))
    elif outcome < 0.75:
        replay.at(due, lambda when: replay.pay(when, round_down(promised // 2)))


def _seed_notes(replay: _Replay, habit: str) -> None:
    """Everyday notes on some accounts; about one note in ten was later deleted."""
    rng = replay.rng
    finance = replay.finance
    if rng.random() < (0.15 if habit == "prompt" else 0.35):
        date = replay.today - dt.timedelta(days=rng.randint(1, 150))
        if rng.random() < 0.5:
            finance.add_note(
                replay.debtor_id,
                date=date.isoformat(),
                note_type_id=TEXT_NOTE,
                communication_type_id=EMAIL,
                text="Statement e-mailed to the account holder.",
            )
        else:
            finance.add_note(
                replay.debtor_id,
                date=date.isoformat(),
                note_type_id=INTERNAL_NOTE,
                communication_type_id=None,
                text="Account holder updated banking details for the debit order.",
            )
    for note_id in sorted(finance.notes_of.get(replay.debtor_id, ())):
        if rng.random() < 0.1:
            finance.update_note(note_id, {"status": "Deleted"})
