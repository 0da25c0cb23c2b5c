"""Errors raised while reading d6 answers name the field and the record, never a value
(docs/personal-data.md): their text reaches the `poll failed` log line and `/v1/schools` `last_error`."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from bridge.catalogue import BY_NAME
from bridge.d6.client import D6Client
from bridge.d6.endpoints import LEARNERS
from bridge.d6.finance import TransactionKeys, balance_id, flatten_transactions
from bridge.d6.records import integration_key, record_id
from bridge.errors import D6MalformedResponse
from bridge.sync.diff import PreviousSnapshot, plan_diff

SECRET = "Zanele-8012245009087"
"""A name and an id number: what must never be in an error."""


def _message(call: Callable[[], Any]) -> str:
    with pytest.raises(D6MalformedResponse) as caught:
        call()
    return str(caught.value)


def test_a_transaction_without_a_date_names_the_field_and_its_debtor_not_its_values() -> None:
    row = {"accountable_person_id": 40, "debtor_code": "1001", "transaction_description": SECRET}
    text = _message(lambda: TransactionKeys([[row]]))
    assert SECRET not in text
    assert "transaction_date" in text and "accountable_person_id 40" in text


def test_an_age_analysis_row_without_ids_names_the_fields_not_its_values() -> None:
    text = _message(lambda: balance_id({"first_name": SECRET, "balance_total": "10.00"}))
    assert SECRET not in text and "accountable_person_id" in text and "debtor_code" in text


def test_a_family_group_with_a_bad_transaction_names_the_family_not_the_item() -> None:
    text = _message(lambda: flatten_transactions([{"accountable_person_id": 40, "transactions": [SECRET]}]))
    assert SECRET not in text and "accountable_person_id 40" in text


def test_a_record_without_a_usable_id_names_the_field_not_its_value() -> None:
    text = _message(lambda: record_id(LEARNERS, {"learner_id": SECRET, "first_name": SECRET}))
    assert SECRET not in text and "learner_id" in text


def test_a_client_integration_without_ids_names_the_fields_and_the_id_it_has() -> None:
    text = _message(
        lambda: integration_key({"school_id": 1000, "api_type_id": SECRET, "school_name": SECRET})
    )
    assert SECRET not in text and "api_type_id" in text and "school_id 1000" in text


def test_the_diff_names_the_id_field_not_its_value() -> None:
    text = _message(
        lambda: plan_diff(PreviousSnapshot(hashes={}), [{"note_id": {"text": SECRET}}], "note_id")
    )
    assert SECRET not in text and "note_id" in text


def test_a_checked_record_says_where_it_was_not_what_it_held() -> None:
    text = _message(lambda: D6Client._checked(LEARNERS, {"learner_id": SECRET}, 1000))
    assert SECRET not in text and "learner_id" in text and "school 1000" in text


def test_the_catalogue_identities_say_nothing_of_values() -> None:
    balance = BY_NAME["balances"].identity
    assert callable(balance)
    assert SECRET not in _message(lambda: balance({"debtor_code": None, "surname": SECRET}))
