"""Transaction identity (docs/events.md): a digest of what a transaction is, its values normalised as ids
and amounts are, twins paired by their whole row before their order, and exact repeats across pages are
repeats of one row (issue 21, item 7)."""

from __future__ import annotations

from typing import Any

from bridge.d6.finance import TransactionKeys, identity_digest
from bridge.sync.diff import PreviousSnapshot, finish_diff, plan_diff

Record = dict[str, Any]

INVOICE = {
    "accountable_person_id": 40,
    "debtor_code": "1005",
    "transaction_date": "2026-03-01",
    "transaction_type_id": 5,
    "transaction_reference": "INV 7",
    "transaction_description": "School Fees March",
    "debit_amount": "3500.00",
    "credit_amount": "0.00",
}


def _poll(
    pages: list[list[Record]], previous: PreviousSnapshot, stored: dict[str, Record]
) -> tuple[Any, Any, PreviousSnapshot, dict[str, Record]]:
    """One poll as the poller makes it: keys, plan, old records, result, and the snapshot after it."""
    keyer = TransactionKeys(pages)
    old = {k: stored[k] for k in keyer.to_read(previous.hashes) if k in stored}
    keys = keyer.keys(previous.hashes, old)
    plan = plan_diff(previous, keyer.rows, "transaction digest", keys=keys)
    result = finish_diff(plan, {k: stored[k] for k in plan.need_old if k in stored})
    hashes = {k: v for k, v in previous.hashes.items() if k not in result.deletes}
    records = {k: v for k, v in stored.items() if k not in result.deletes}
    for rid, digest, record in result.upserts:
        hashes[rid], records[rid] = digest, record
    return plan, result, PreviousSnapshot(hashes=hashes, version=previous.version + 1), records


def test_a_debtor_code_sent_as_text_then_as_a_number_is_the_same_transaction() -> None:
    empty = PreviousSnapshot(hashes={})
    _, _, snapshot, stored = _poll([[dict(INVOICE)]], empty, {})
    _, result, _, _ = _poll([[{**INVOICE, "debtor_code": 1005, "debit_amount": "3500"}]], snapshot, stored)
    assert not result.created and not result.removed


def test_each_way_d6_may_type_a_code_gives_one_identity_and_text_stays_text() -> None:
    """The forms a code may come in (the digits alone are the usual one, read on a shorter path than the
    rest): integer-like text and numbers name one transaction; text that only looks numeric does not."""
    same = [
        {**INVOICE, "debtor_code": code, "transaction_reference": reference}
        for code, reference in [
            ("1005", "7"),
            (1005, 7),
            (" 1005 ", "+7"),
            ("01005", "007"),
            (1005.0, "\u0667"),  # an Arabic-Indic seven: a digit as int() and \d read it
            ("\u0661\u0660\u0660\u0665", " 7"),
        ]
    ]
    assert len({identity_digest(r) for r in same}) == 1
    # A superscript two is a digit to str.isdigit, not to int(); a letter first is never a number.
    texts = ["\u00b2", "2", "INV 7", "7 INV", "", " "]
    digests = {identity_digest({**INVOICE, "transaction_reference": t}) for t in texts}
    assert len(digests) == len(texts)
    # The digest of the usual row is the one snapshots already hold: a change of the normalising would
    # re-key every stored transaction (all removed, all created).
    assert identity_digest(INVOICE) == "8c9a137b090d91c2b081"  # as the release before computed it


def test_twins_are_paired_by_their_whole_row_so_the_right_one_is_removed() -> None:
    first = {**INVOICE, "learner_id": 101, "accumulated_balance": "3500.00"}
    second = {**INVOICE, "learner_id": 102, "accumulated_balance": "7000.00"}
    _, _, snapshot, stored = _poll([[first, second]], PreviousSnapshot(hashes={}), {})
    # 101's invoice is reversed: 102's row is left, its running balance moved.
    _, result, _, _ = _poll([[{**second, "accumulated_balance": "3500.00"}]], snapshot, stored)
    assert not result.created
    (removed,) = result.removed
    assert removed.record["learner_id"] == 101


def test_twins_paired_by_their_row_whatever_their_order() -> None:
    first = {**INVOICE, "learner_id": 101}
    second = {**INVOICE, "learner_id": 102}
    _, _, snapshot, stored = _poll([[first, second]], PreviousSnapshot(hashes={}), {})
    _, result, _, _ = _poll([[second, first]], snapshot, stored)
    assert result.empty and not result.upserts


def test_two_identical_rows_on_one_page_are_two_transactions() -> None:
    plan, result, _, _ = _poll([[dict(INVOICE), dict(INVOICE)]], PreviousSnapshot(hashes={}), {})
    assert len(result.created) == 2 and not plan.duplicated


def test_the_same_row_on_two_pages_is_one_row_repeated_not_a_second_transaction() -> None:
    other = {**INVOICE, "transaction_reference": "INV 8"}
    _, _, snapshot, stored = _poll([[dict(INVOICE), other]], PreviousSnapshot(hashes={}), {})
    plan, result, _, _ = _poll([[other, dict(INVOICE)], [dict(INVOICE)]], snapshot, stored)
    assert plan.duplicated  # a repeat across pages makes the scan suspicious
    assert result.empty  # and, once trusted, it is the one row it always was


def test_a_new_twin_takes_a_new_number_and_the_old_keeps_its_own() -> None:
    first = {**INVOICE, "learner_id": 101, "accumulated_balance": "3500.00"}
    _, _, snapshot, stored = _poll([[first]], PreviousSnapshot(hashes={}), {})
    twin = {**INVOICE, "learner_id": 102, "accumulated_balance": "3500.00"}
    _, result, _, _ = _poll([[twin, {**first, "accumulated_balance": "7000.00"}]], snapshot, stored)
    (created,) = result.created
    assert created.record["learner_id"] == 102 and not result.removed
