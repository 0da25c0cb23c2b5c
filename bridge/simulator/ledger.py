"""The bookkeeping under the Finance+ reports: money, the school calendar, transactions and ageing.

Amounts are whole cents internally and strings with two decimals on the wire (`"3500.00"`), as d6 sends
them. Ageing is by calendar month, the way a school's statement ages debt: a debit of this month is
current, last month's is 30 days, and so on up to 150 days and older. Credits (receipts, credit notes)
settle the oldest debits first, so what remains of each debit sits in the bucket of its month.
"""

from __future__ import annotations

import calendar as cal
import datetime as dt
from collections.abc import Iterable

SAST = dt.timezone(dt.timedelta(hours=2), "SAST")
"""d6 schools keep South African time: a school's day and month start at midnight SAST."""

BUCKETS: tuple[str, ...] = (
    "balance_current",
    "balance_30days",
    "balance_60days",
    "balance_90days",
    "balance_120days",
    "balance_150days",
)
"""The age analysis columns as d6's v1 example names them; the last holds 150 days and older."""

Buckets = tuple[int, int, int, int, int, int]
NO_BALANCE: Buckets = (0, 0, 0, 0, 0, 0)

# Transaction types: 1-4 as the Get Transaction Type(s) example shows them; 5 and 6 (its `...`) are ours.
JOURNAL, RECEIPT, PAYMENT, DEPOSIT, INVOICE, CREDIT_NOTE = 1, 2, 3, 4, 5, 6
TRANSACTION_TYPES: dict[int, str] = {
    JOURNAL: "General Journal",
    RECEIPT: "Receipt",
    PAYMENT: "Payment",
    DEPOSIT: "Deposit",
    INVOICE: "Invoice",
    CREDIT_NOTE: "Credit Note",
}
# Categories 1, 6 and 7 as the Get Transaction Category(s) example shows them; 8 is ours.
SCHOOL_FEES, HOSTEL_FEES, AFTERCARE, SPORT = 1, 6, 7, 8
CATEGORIES: dict[int, str] = {
    SCHOOL_FEES: "School Fees",
    HOSTEL_FEES: "Hostel Fees",
    AFTERCARE: "Aftercare",
    SPORT: "Sport and Culture",
}
TEXT_NOTE, PROMISE_NOTE, INTERNAL_NOTE = 1, 2, 3
NOTE_TYPES: dict[int, str] = {
    TEXT_NOTE: "Text note",
    PROMISE_NOTE: "Promise to pay",
    INTERNAL_NOTE: "Internal note",
}
SMS, EMAIL, TELEPHONIC, LETTER = 1, 2, 3, 4
COMMUNICATION_TYPES: dict[int, str] = {
    SMS: "SMS",
    EMAIL: "E-mail",
    TELEPHONIC: "Telephonic",
    LETTER: "Letter",
}


# money


def money(cents: int) -> str:
    """`350000` -> `"3500.00"`, `-5000` -> `"-50.00"`."""
    sign = "-" if cents < 0 else ""
    whole, part = divmod(abs(cents), 100)
    return f"{sign}{whole}.{part:02d}"


def cents_of(value: object) -> int | None:
    """`"3500"`, `"3500.00"`, `3500` or `3500.5` -> cents; None for anything that is not an amount."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value * 100
    if isinstance(value, float):
        return round(value * 100)
    if not isinstance(value, str):
        return None
    text = value.strip()
    negative = text.startswith("-")
    whole, _, part = text.lstrip("-").partition(".")
    if not whole.isdigit() or (part and (not part.isdigit() or len(part) > 2)):
        return None
    cents = int(whole) * 100 + int(part.ljust(2, "0") or "0")
    return -cents if negative else cents


# the calendar


def month_index(date: str | dt.date) -> int:
    """Months since year 0: `"2026-03-14"` and `date(2026, 3, 1)` give the same index."""
    if isinstance(date, str):
        return int(date[:4]) * 12 + int(date[5:7]) - 1
    return date.year * 12 + date.month - 1


def add_months(date: dt.date, months: int) -> dt.date:
    index = month_index(date) + months
    year, month = divmod(index, 12)
    return dt.date(year, month + 1, min(date.day, cal.monthrange(year, month + 1)[1]))


def month_start(index: int) -> dt.date:
    year, month = divmod(index, 12)
    return dt.date(year, month + 1, 1)


def month_name(index: int) -> str:
    start = month_start(index)
    return f"{cal.month_name[start.month]} {start.year}"


class Calendar:
    """Today's date in South Africa, or a pinned date (reproducible tests and benchmarks)."""

    def __init__(self, pinned: dt.date | None = None) -> None:
        self.pinned = pinned

    def today(self, offset_months: int = 0) -> dt.date:
        base = self.pinned or dt.datetime.now(SAST).date()
        return add_months(base, offset_months) if offset_months else base

    def period(self, offset_months: int = 0) -> int:
        return month_index(self.today()) + offset_months


# transactions and ageing


class Txn:
    """One transaction of a debtor's ledger; `balance` is the accumulated balance after it."""

    __slots__ = (
        "balance",
        "category_id",
        "credit",
        "date",
        "debit",
        "debtor_id",
        "description",
        "key",
        "learner_id",
        "reference",
        "type_id",
    )

    def __init__(
        self,
        key: int,
        debtor_id: int,
        date: str,
        type_id: int,
        debit: int,
        credit: int,
        *,
        category_id: int | None = None,
        learner_id: int | None = None,
        reference: str = "",
        description: str = "",
    ) -> None:
        self.key = key
        self.debtor_id = debtor_id
        self.date = date
        self.type_id = type_id
        self.debit = debit
        self.credit = credit
        self.category_id = category_id
        self.learner_id = learner_id
        self.reference = reference
        self.description = description
        self.balance = 0

    @property
    def order(self) -> tuple[str, int]:
        """Ledger order: by date, then by capture."""
        return (self.date, self.key)


Piece = tuple[int | None, int | None, int, int]
"""What remains of one debit: (learner id, category id, bucket 0-5, cents). A credit balance is one
negative piece in the current bucket, with no learner and no category."""


def bucket_of(period: int, date: str) -> int:
    return min(max(period - month_index(date), 0), len(BUCKETS) - 1)


def outstanding(ledger: Iterable[Txn], period: int) -> list[Piece]:
    """Credits settle the oldest debits first (balance-forward ageing); what is left, bucket by bucket."""
    entries = list(ledger)
    credits = sum(txn.credit for txn in entries)
    pieces: list[Piece] = []
    for txn in entries:
        if not txn.debit:
            continue
        settled = min(credits, txn.debit)
        credits -= settled
        left = txn.debit - settled
        if left:
            pieces.append((txn.learner_id, txn.category_id, bucket_of(period, txn.date), left))
    if credits:
        pieces.append((None, None, 0, -credits))
    return pieces


def buckets_of(pieces: Iterable[Piece]) -> Buckets:
    amounts = [0] * len(BUCKETS)
    for _, _, bucket, cents in pieces:
        amounts[bucket] += cents
    return (amounts[0], amounts[1], amounts[2], amounts[3], amounts[4], amounts[5])


# the fee schedule

_FEES_BY_GRADE: dict[str, int] = {
    "R": 265_000,
    **dict.fromkeys(("1", "2", "3"), 320_000),
    **dict.fromkeys(("4", "5", "6", "7"), 350_000),
    **dict.fromkeys(("8", "9"), 410_000),
    **dict.fromkeys(("10", "11", "12"), 440_000),
}
HOSTEL_FEE = 520_000
AFTERCARE_FEE = 95_000


def fees_for(school_id: int, learner: dict[str, object]) -> list[tuple[int, int]]:
    """A learner's monthly charges, (category, cents): school fees by grade; some young learners stay for
    aftercare and some older ones board. Who does is fixed by the learner's id, so every run agrees."""
    grade = str(learner.get("grade", ""))
    charges = [(SCHOOL_FEES, _FEES_BY_GRADE.get(grade, 350_000))]
    learner_id = learner.get("learner_id")
    draw = (learner_id * 2_654_435_761 + school_id * 40_503) % 100 if isinstance(learner_id, int) else 99
    if grade in ("R", "1", "2", "3") and draw < 30:
        charges.append((AFTERCARE, AFTERCARE_FEE))
    elif grade in ("8", "9", "10", "11", "12") and draw < 8:
        charges.append((HOSTEL_FEES, HOSTEL_FEE))
    return charges
