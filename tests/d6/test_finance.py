"""Finance+ records: amounts compared after normalisation, balance and transaction identity, the window."""

from __future__ import annotations

import pytest

from bridge.catalogue import BY_NAME
from bridge.d6.finance import (
    balance_id,
    before_window,
    comparable,
    flatten_transactions,
    normal_amount,
    transaction_keys,
    window_start,
)
from bridge.errors import D6MalformedResponse
from bridge.sync.diff import PreviousSnapshot, diff, plan_diff

TXN = {
    "debtor_code": "1001",
    "accountable_person_id": 40,
    "transaction_date": "2026-11-02",
    "transaction_type_id": 2,
    "transaction_reference": "RCPT 88",
    "transaction_description": "Receipt - EFT",
    "debit_amount": "0.00",
    "credit_amount": "3500.00",
    "accumulated_balance": "1200.00",
}


@pytest.mark.parametrize(
    ("sent", "normal"),
    [
        ("3500.00", "3500"),
        ("3500", "3500"),
        ("3500.0", "3500"),
        ("-12.50", "-12.5"),
        ("0.00", "0"),
        ("-0", "0"),
    ],
)
def test_amounts_compare_in_one_form(sent: str, normal: str) -> None:
    assert normal_amount(sent) == normal


def test_non_amounts_and_unreadable_amounts_are_left_as_sent() -> None:
    assert normal_amount("n/a") == "n/a"
    assert normal_amount(None) is None
    record = {"debtor_code": "1001.00", "balance_current": "3500", "amount_paid": "10.10"}
    assert comparable(record) == {"debtor_code": "1001.00", "balance_current": "3500", "amount_paid": "10.1"}


def test_a_reformatted_amount_is_no_change_but_a_new_one_is_and_both_are_kept_as_sent() -> None:
    compare = BY_NAME["promises"].compare
    old = {"promise_to_pay_id": 7, "amount_promised": "3500.00", "amount_paid": "0.00"}
    snapshot = PreviousSnapshot(
        hashes=plan_diff(PreviousSnapshot(hashes={}), [old], "promise_to_pay_id", compare).digests
    )
    same = {"promise_to_pay_id": 7, "amount_promised": "3500", "amount_paid": "0"}
    assert diff(snapshot, [same], "promise_to_pay_id", {"7": old}, compare).empty
    paid = {"promise_to_pay_id": 7, "amount_promised": "3500", "amount_paid": "1000.00"}
    result = diff(snapshot, [paid], "promise_to_pay_id", {"7": old}, compare)
    (update,) = result.updated
    assert update.changes is not None and set(update.changes) == {"amount_paid"}
    assert (update.changes["amount_paid"].old, update.changes["amount_paid"].new) == ("0.00", "1000.00")
    assert update.record["amount_promised"] == "3500"  # kept as sent


def test_balance_rows_are_their_accountable_person_else_their_debtor_code() -> None:
    assert balance_id({"accountable_person_id": 40, "debtor_code": "1001"}) == "40"
    assert balance_id({"accountable_person_id": None, "debtor_code": "1001"}) == "code:1001"
    with pytest.raises(D6MalformedResponse):
        balance_id({"balance_current": "10.00"})


def test_transactions_are_a_digest_of_what_they_are_with_an_occurrence_for_exact_repeats() -> None:
    key = transaction_keys()
    first, repeat = key(dict(TXN)), key(dict(TXN))
    assert first.endswith(":1") and repeat.endswith(":2") and first[:-2] == repeat[:-2]
    # The running balance is data, never identity; an amount written differently is the same amount.
    moved = {**TXN, "accumulated_balance": "900.00", "credit_amount": "3500"}
    assert transaction_keys()(moved) == first
    assert transaction_keys()({**TXN, "credit_amount": "3600.00"}) != first
    with pytest.raises(D6MalformedResponse):
        transaction_keys()({**TXN, "transaction_date": None})


def test_grouped_transactions_are_flattened_carrying_the_family() -> None:
    grouped = [
        {
            "debtor_code": "1001",
            "accountable_person_id": 40,
            "surname": "Mokoena",
            "transactions": [
                {"transaction_date": "2026-11-01", "debit_amount": "2500.00", "credit_amount": "0.00"},
                {"transaction_date": "2026-11-02", "debit_amount": "0.00", "credit_amount": "2500.00"},
            ],
        },
        dict(TXN),
    ]
    flat = flatten_transactions(grouped)
    assert len(flat) == 3
    assert all(row["debtor_code"] == "1001" and row["accountable_person_id"] == 40 for row in flat)
    assert flat[0]["transaction_date"] == "2026-11-01" and "surname" not in flat[0]
    with pytest.raises(D6MalformedResponse):
        flatten_transactions([{"debtor_code": "1", "transactions": ["not an object"]}])


def test_the_window_is_counted_in_school_days_and_old_transactions_age_out() -> None:
    midnight_sast = 1_764_453_600.0  # 2025-11-30 00:00 SAST = 2025-11-29 22:00 UTC
    assert window_start(45, midnight_sast) == "2025-10-16"
    assert window_start(45, midnight_sast - 1) == "2025-10-15"
    assert before_window({"transaction_date": "2025-10-15"}, "2025-10-16")
    assert not before_window({"transaction_date": "2025-10-16"}, "2025-10-16")
    assert not before_window({"transaction_date": "garbage"}, "2025-10-16")
