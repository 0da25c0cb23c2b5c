"""The Finance+ endpoints over HTTP: the fact sheets' fields and formats, filters, validation, pagination."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import AsyncIterator, Callable
from decimal import Decimal
from typing import Any

import httpx
import pytest

from bridge.testing.servers import SimulatorServer
from tests.simulator.finance_helpers import (
    AGE,
    BUCKETS,
    DEBT,
    NOTES,
    PROMISES,
    TODAY,
    TRANSACTIONS,
    amount,
    total_of,
)
from tests.simulator.helpers import CREDENTIALS, DEBTORS, control, scan

ROW_FIELDS = [
    "transaction_date", "transaction_type_id", "transaction_type", "category_id", "category", "learner_id",
    "transaction_reference", "transaction_description", "debit_amount", "credit_amount",
    "accumulated_balance",
]  # fmt: skip
FAMILY_FIELDS = [
    "accountable_person_id", "debtor_code", "title", "first_name", "last_name", "opening_balance",
    "closing_balance", "transactions",
]  # fmt: skip
PROMISE_FIELDS = [
    "promise_to_pay_id", "note_id", "accountable_person_id", "debtor_code", "date_promised",
    "amount_promised", "amount_paid", "promise_completed",
]  # fmt: skip
NOTE_FIELDS = [
    "note_id", "accountable_person_id", "debtor_code", "date", "note_type_id", "note_type",
    "communication_type_id", "communication_type", "note", "status",
]  # fmt: skip


@pytest.fixture
def books(simulator_factory: Callable[..., SimulatorServer]) -> SimulatorServer:
    """Two schools of 120 learners and 90 debtors, seed 1, the calendar pinned."""
    return simulator_factory(schools=2, learners=120, debtors=90, seed=1, today=TODAY)


@pytest.fixture
async def d6(books: SimulatorServer) -> AsyncIterator[httpx.AsyncClient]:
    headers = {**CREDENTIALS, "HTTP-X-SCHOOLID": "1000"}
    async with httpx.AsyncClient(base_url=books.base_url, headers=headers, timeout=10) as client:
        yield client


async def test_age_analysis_has_one_family_row_per_debtor_with_string_amounts(d6: httpx.AsyncClient) -> None:
    rows, _ = await scan(d6, AGE, {"all_accounts": 1, "limit": 50})
    debtors, _ = await scan(d6, DEBTORS, {"all_accounts": 1, "limit": 50})
    assert [r["accountable_person_id"] for r in rows] == [d["accountable_person_id"] for d in debtors]
    assert [r["debtor_code"] for r in rows] == [d["debtor_code"] for d in debtors]
    for row in rows:
        assert list(row) == ["debtor_code", "accountable_person_id", "date", *BUCKETS, "balance_total"]
        assert isinstance(row["accountable_person_id"], str)
        assert row["date"] == "0000-00-00" or dt.date.fromisoformat(row["date"]) <= dt.date.fromisoformat(
            TODAY
        )
        assert amount(row["balance_total"]) == total_of(row)
    for bucket in BUCKETS:
        assert any(amount(r[bucket]) > 0 for r in rows), f"no debt is {bucket}"
    assert any(amount(r["balance_total"]) == 0 for r in rows)
    assert any(amount(r["balance_total"]) < 0 for r in rows), "nobody paid ahead"

    open_ids = {d["accountable_person_id"] for d in debtors if d["account_closing_date"] == "0000-00-00"}
    active, _ = await scan(d6, AGE, {"limit": 50})
    assert active == [r for r in rows if r["accountable_person_id"] in open_ids or amount(r["balance_total"])]
    assert len(active) < len(rows)

    code = rows[5]["debtor_code"]
    assert (await d6.get(AGE, params={"debtor_code": code, "all_accounts": 1})).json()["data"] == [rows[5]]
    person = rows[7]["accountable_person_id"]
    only = (await d6.get(AGE, params={"accountable_person_id": person, "all_accounts": 1})).json()["data"]
    assert only == [rows[7]]


@pytest.mark.parametrize(
    ("params", "keys"),
    [
        ({"per_learner": 1}, ["learner_id"]),
        ({"per_category": 1}, ["category_id", "category"]),
        ({"per_learner": 1, "per_category": 1}, ["learner_id", "category_id", "category"]),
    ],
)
async def test_age_analysis_per_learner_and_per_category_add_up_to_the_family(
    d6: httpx.AsyncClient, params: dict[str, Any], keys: list[str]
) -> None:
    families = {
        r["accountable_person_id"]: r for r in (await scan(d6, AGE, {"all_accounts": 1, "limit": 50}))[0]
    }
    rows, _ = await scan(d6, AGE, {**params, "all_accounts": 1, "limit": 50})
    sums: dict[str, Decimal] = {}
    for row in rows:
        assert list(row) == ["debtor_code", "accountable_person_id", *keys, "date", *BUCKETS, "balance_total"]
        sums[row["accountable_person_id"]] = sums.get(row["accountable_person_id"], Decimal(0)) + total_of(
            row
        )
    owing = {
        person: amount(r["balance_total"]) for person, r in families.items() if amount(r["balance_total"])
    }
    assert sums == owing
    if "category" in keys:
        assert {r["category"] for r in rows} >= {"School Fees"}


async def test_age_analysis_filters_by_learner_and_category(d6: httpx.AsyncClient) -> None:
    per_learner, _ = await scan(d6, AGE, {"per_learner": 1, "all_accounts": 1, "limit": 50})
    learner = next(r for r in per_learner if r["learner_id"] and amount(r["balance_total"]) > 0)
    rows = (await d6.get(AGE, params={"learner_id": learner["learner_id"], "all_accounts": 1})).json()["data"]
    assert rows == [learner]
    fees, _ = await scan(d6, AGE, {"category_id": 1, "all_accounts": 1, "limit": 50})
    assert fees and all(r["category_id"] == "1" for r in fees)


async def test_transactions_are_grouped_by_family_with_running_balances(d6: httpx.AsyncClient) -> None:
    families, pages = await scan(d6, TRANSACTIONS, {"all_accounts": 1, "limit": 50})
    assert len(pages) >= 2
    balances = {
        r["accountable_person_id"]: r for r in (await scan(d6, AGE, {"all_accounts": 1, "limit": 50}))[0]
    }
    types = set()
    for family in families:
        assert list(family) == FAMILY_FIELDS
        assert family["opening_balance"] == "0.00"
        running = amount(family["opening_balance"])
        dates = []
        for row in family["transactions"]:
            assert list(row) == ROW_FIELDS, "a transaction carries no id: d6 publishes none"
            running += amount(row["debit_amount"]) - amount(row["credit_amount"])
            assert amount(row["accumulated_balance"]) == running
            assert (amount(row["debit_amount"]) == 0) != (amount(row["credit_amount"]) == 0)
            dates.append(row["transaction_date"])
            types.add(row["transaction_type"])
        assert dates == sorted(dates)
        assert amount(family["closing_balance"]) == running
        assert running == amount(balances[family["accountable_person_id"]]["balance_total"])
    assert types == {"Invoice", "Receipt", "Credit Note", "General Journal"}
    invoices = [r for f in families for r in f["transactions"] if r["transaction_type"] == "Invoice"]
    assert {r["transaction_date"][8:] for r in invoices} == {"01"}, "invoices go out on the 1st"
    assert all(r["learner_id"] and r["category"] for r in invoices)
    receipts = [r for f in families for r in f["transactions"] if r["transaction_type"] == "Receipt"]
    assert len({r["transaction_date"][8:] for r in receipts}) > 10, "payments come on all sorts of days"


async def test_transactions_between_two_dates(d6: httpx.AsyncClient) -> None:
    everything, _ = await scan(d6, TRANSACTIONS, {"all_accounts": 1, "limit": 50})
    february, _ = await scan(
        d6,
        TRANSACTIONS,
        {"all_accounts": 1, "limit": 50, "start_date": "2026-02-01", "end_date": "2026-02-28"},
    )
    full = {f["accountable_person_id"]: f["transactions"] for f in everything}
    assert february
    for family in february:
        rows = family["transactions"]
        assert all("2026-02-01" <= r["transaction_date"] <= "2026-02-28" for r in rows)
        history = full[family["accountable_person_id"]]
        assert rows == [r for r in history if "2026-02-01" <= r["transaction_date"] <= "2026-02-28"]
        before = [r for r in history if r["transaction_date"] < "2026-02-01"]
        assert family["opening_balance"] == (before[-1]["accumulated_balance"] if before else "0.00")
    expected = [f["accountable_person_id"] for f in everything if any(
        "2026-02-01" <= r["transaction_date"] <= "2026-02-28" for r in f["transactions"])]  # fmt: skip
    assert [f["accountable_person_id"] for f in february] == expected
    since, _ = await scan(d6, TRANSACTIONS, {"all_accounts": 1, "limit": 50, "start_date": "2026-03-01"})
    assert all(r["transaction_date"] >= "2026-03-01" for f in since for r in f["transactions"])


@pytest.mark.parametrize(
    ("params", "errors"),
    [
        (
            {"end_date": "2026-02-28"},
            {"start_date": "The Start date field is required when End date is present."},
        ),
        (
            {"start_date": "2026-02-30"},
            {"start_date": "The Start date is not valid date format. Expected format is 'Y-m-d'."},
        ),
        (
            {"start_date": "14/03/2026", "limit": 51},
            {
                "start_date": "The Start date is not valid date format. Expected format is 'Y-m-d'.",
                "limit": "The Limit maximum is 50",
            },
        ),
        (
            {"start_date": "2026-03-01", "end_date": "2026-02-01"},
            {"end_date": "The End date must be a date after or equal to Start date."},
        ),
        ({"all_accounts": "maybe"}, {"all_accounts": "The All accounts must be a boolean"}),
        ({"category_id": "fees"}, {"category_id": "The Category id must be integer"}),
    ],
)
async def test_transaction_parameters_are_validated(
    d6: httpx.AsyncClient, params: dict[str, Any], errors: dict[str, str]
) -> None:
    response = await d6.get(TRANSACTIONS, params=params)
    assert response.status_code == 400
    assert response.json() == {"success": False, "message": "Validation Failed", "validation_errors": errors}


async def test_transactions_per_learner(d6: httpx.AsyncClient) -> None:
    families, _ = await scan(d6, TRANSACTIONS, {"all_accounts": 1, "limit": 50, "per_learner": 1})
    for family in families:
        own = [r for r in family["transactions"] if r["learner_id"]]
        nested = [row for learner in family["learners"] for row in learner["transactions"]]
        assert sorted(own, key=json.dumps) == sorted(nested, key=json.dumps)
        for learner in family["learners"]:
            assert list(learner) == ["learner_id", "first_name", "last_name", "grade", "transactions"]
            assert {r["learner_id"] for r in learner["transactions"]} == {learner["learner_id"]}
    learner_id = families[0]["learners"][0]["learner_id"]
    only, _ = await scan(d6, TRANSACTIONS, {"all_accounts": 1, "learner_id": learner_id})
    assert [r["learner_id"] for f in only for r in f["transactions"]] == [learner_id] * len(
        families[0]["learners"][0]["transactions"]
    )


async def test_transactions_as_flat_rows(simulator_factory: Callable[..., SimulatorServer]) -> None:
    """`transactions_shape="flat"`: the same transactions, one row each, with the family's two ids."""
    grouped = simulator_factory(schools=1, learners=60, debtors=40, seed=4, today=TODAY)
    flat = simulator_factory(
        schools=1, learners=60, debtors=40, seed=4, today=TODAY, transactions_shape="flat"
    )
    headers = {**CREDENTIALS, "HTTP-X-SCHOOLID": "1000"}
    params = {"all_accounts": 1, "limit": 50, "start_date": "2026-01-01"}
    async with httpx.AsyncClient(base_url=grouped.base_url, headers=headers) as client:
        families, _ = await scan(client, TRANSACTIONS, params)
    async with httpx.AsyncClient(base_url=flat.base_url, headers=headers) as client:
        rows, pages = await scan(client, TRANSACTIONS, params)
    assert all(list(row) == ["accountable_person_id", "debtor_code", *ROW_FIELDS] for row in rows)
    assert len(pages) == -(-len(rows) // 50)
    expected = [
        {"accountable_person_id": f["accountable_person_id"], "debtor_code": f["debtor_code"], **row}
        for f in families
        for row in f["transactions"]
    ]
    assert sorted(rows, key=json.dumps) == sorted(expected, key=json.dumps)


async def test_promises_to_pay(d6: httpx.AsyncClient) -> None:
    promises, _ = await scan(d6, PROMISES, {"limit": 50})
    assert len(promises) > 10
    for promise in promises:
        assert list(promise) == PROMISE_FIELDS
        assert isinstance(promise["promise_to_pay_id"], int)
        assert amount(promise["amount_paid"]) <= amount(promise["amount_promised"])
        paid = amount(promise["amount_paid"])
        expected = "Yes" if paid == amount(promise["amount_promised"]) else ("Partial" if paid else "No")
        assert promise["promise_completed"] == expected
    lapsed = str(dt.date.fromisoformat(TODAY) - dt.timedelta(days=7))
    assert any(p["promise_completed"] == "Yes" for p in promises)
    assert any(p["promise_completed"] != "Yes" and p["date_promised"] < lapsed for p in promises), (
        "none broken"
    )

    partial = (await scan(d6, PROMISES, {"promise_completed": "partial", "limit": 50}))[0]
    assert partial == [p for p in promises if p["promise_completed"] == "Partial"]
    person = promises[0]["accountable_person_id"]
    mine = (await scan(d6, PROMISES, {"accountable_person_id": person}))[0]
    assert mine == [p for p in promises if p["accountable_person_id"] == person]
    assert (await scan(d6, PROMISES, {"year_promised": 2019}))[0] == []

    single = await d6.get(f"{PROMISES}/{promises[0]['promise_to_pay_id']}", params={"include_debtor_note": 1})
    assert single.status_code == 200
    body = single.json()
    assert {k: v for k, v in body.items() if k != "debtor_note"} == promises[0]
    assert body["debtor_note"]["note_id"] == promises[0]["note_id"]
    assert body["debtor_note"]["note_type"] == "Promise to pay"
    missing = await d6.get(f"{PROMISES}/99999")
    assert missing.status_code == 404
    assert missing.json() == {"success": False, "message": "The Promise To Pay does not exist"}
    wrong = await d6.get(PROMISES, params={"promise_completed": "maybe", "year_promised": "last"})
    assert wrong.json()["validation_errors"] == {
        "promise_completed": "The selected Promise completed is invalid.",
        "year_promised": "The Year promised must be integer",
    }


async def test_deleted_notes_only_with_include_deleted(d6: httpx.AsyncClient) -> None:
    shown, _ = await scan(d6, NOTES, {"limit": 50})
    every, _ = await scan(d6, NOTES, {"limit": 50, "include_deleted": 1})
    assert all(list(note) == NOTE_FIELDS for note in every)
    assert {note["status"] for note in every} == {"Created", "Deleted"}
    assert shown == [note for note in every if note["status"] == "Created"]
    assert {note["note_type"] for note in every} == {"Text note", "Promise to pay", "Internal note"}
    assert all(n["communication_type_id"] is None for n in every if n["note_type"] == "Internal note")

    deleted = next(note for note in every if note["status"] == "Deleted")
    hidden = await d6.get(f"{NOTES}/{deleted['note_id']}")
    assert hidden.status_code == 404
    assert hidden.json() == {"success": False, "message": "The note does not exist."}
    assert (await d6.get(f"{NOTES}/{deleted['note_id']}", params={"include_deleted": 1})).json() == deleted

    with_promises, _ = await scan(d6, NOTES, {"limit": 50, "include_promise_to_pays": 1, "note_type_id": 2})
    promises = {p["promise_to_pay_id"]: p for p in (await scan(d6, PROMISES, {"limit": 50}))[0]}
    assert with_promises
    for note in with_promises:
        assert note["note_type_id"] == 2
        assert note["promise_to_pays"]
        assert all(promises[p["promise_to_pay_id"]] == p for p in note["promise_to_pays"])
    this_year, _ = await scan(d6, NOTES, {"limit": 50, "year": 2026, "include_deleted": 1})
    assert this_year == [n for n in every if n["date"].startswith("2026-")]


@pytest.mark.parametrize("path", [AGE, TRANSACTIONS, PROMISES, NOTES])
async def test_finance_calls_need_the_school_header(
    books: SimulatorServer, http: httpx.AsyncClient, path: str
) -> None:
    url = books.base_url + path
    missing = await http.get(url, headers=CREDENTIALS)
    assert missing.status_code == 400
    assert missing.json()["validation_errors"] == {"school_id": "The School id field is required"}
    unknown = await http.get(url, headers={**CREDENTIALS, "HTTP-X-SCHOOLID": "4242"})
    assert unknown.status_code == 401
    assert unknown.json() == {"success": False, "message": "Client has not authorised access"}
    wrong = await http.get(url, headers={**CREDENTIALS, "HTTP-X-PASSWORD": "nope", "HTTP-X-SCHOOLID": "1000"})
    assert wrong.status_code == 401
    assert wrong.json()["error"] == "Unauthorized"
    # No finance read takes a PUT (Create Note is a POST of the notes path: test_note_writes.py).
    assert (await http.put(url, headers={**CREDENTIALS, "HTTP-X-SCHOOLID": "1000"})).status_code == 405


async def test_pagination_as_everywhere_else(d6: httpx.AsyncClient) -> None:
    rows, pages = await scan(d6, AGE, {"all_accounts": 1, "limit": 50})
    assert [len(p["data"]) for p in pages] == [50, 40]
    assert pages[0]["meta"]["limit"] == 50
    assert pages[0]["meta"]["max_allowed_limit"] == 50
    assert isinstance(pages[0]["meta"]["next_cursor"], str)
    assert "next_cursor" not in pages[-1]["meta"]
    first = (await d6.get(AGE, params={"all_accounts": 1})).json()
    assert len(first["data"]) == 10
    assert first["meta"]["limit"] == 10
    backwards, _ = await scan(d6, AGE, {"all_accounts": 1, "limit": 50, "reverse_order": 1})
    assert backwards == rows[::-1]
    notes, note_pages = await scan(d6, NOTES, {"limit": 7, "include_deleted": 1})
    assert len({n["note_id"] for n in notes}) == len(notes)
    assert all(len(p["data"]) == 7 for p in note_pages[:-1])
    bad = await d6.get(PROMISES, params={"cursor": "nope"})
    assert bad.json()["validation_errors"] == {"cursor": "The Cursor is invalid"}


async def test_lookups(d6: httpx.AsyncClient) -> None:
    types = (await d6.get(f"{DEBT}/transactiontypes")).json()
    assert types["data"][:4] == [
        {"id": "1", "name": "General Journal"},
        {"id": "2", "name": "Receipt"},
        {"id": "3", "name": "Payment"},
        {"id": "4", "name": "Deposit"},
    ]
    assert (await d6.get(f"{DEBT}/transactiontypes/2")).json() == {"id": 2, "name": "Receipt"}
    categories = (await d6.get(f"{DEBT}/transactioncategories")).json()["data"]
    assert categories[:3] == [
        {"id": "1", "name": "School Fees"},
        {"id": "6", "name": "Hostel Fees"},
        {"id": "7", "name": "Aftercare"},
    ]
    notes = (await d6.get(f"{DEBT}/debtornotes/notetypes")).json()["data"]
    assert notes == [
        {"id": 1, "name": "Text note"},
        {"id": 2, "name": "Promise to pay"},
        {"id": 3, "name": "Internal note"},
    ]
    ways = (await d6.get(f"{DEBT}/debtornotes/communicationtypes/3")).json()
    assert ways == {"id": 3, "name": "Telephonic"}
    missing = await d6.get(f"{DEBT}/transactioncategories/2")
    assert missing.status_code == 404
    assert missing.json() == {"success": False, "message": "The transaction category does not exist"}


async def test_the_same_seed_and_date_give_the_same_books(
    books: SimulatorServer, simulator_factory: Callable[..., SimulatorServer], http: httpx.AsyncClient
) -> None:
    again = simulator_factory(schools=2, learners=120, debtors=90, seed=1, today=TODAY)
    other = simulator_factory(schools=2, learners=120, debtors=90, seed=2, today=TODAY)
    for resource in ("balances", "transactions", "promises", "notes"):
        first = await control(http, "GET", f"{books.control_url}/schools/1001/{resource}")
        second = await control(http, "GET", f"{again.control_url}/schools/1001/{resource}")
        third = await control(http, "GET", f"{other.control_url}/schools/1001/{resource}")
        assert first == second
        assert first != third


async def test_faults_reach_the_finance_calls(
    books: SimulatorServer, d6: httpx.AsyncClient, http: httpx.AsyncClient
) -> None:
    await control(
        http, "POST", f"{books.control_url}/faults", {"fail_on_page": 2, "endpoint": "financialtransactions"}
    )
    first = await d6.get(TRANSACTIONS, params={"all_accounts": 1, "limit": 20})
    assert first.status_code == 200
    second = await d6.get(
        TRANSACTIONS, params={"all_accounts": 1, "limit": 20, "cursor": first.json()["meta"]["next_cursor"]}
    )
    assert second.status_code == 500
    assert (await scan(d6, AGE, {"all_accounts": 1, "limit": 20}))[0], "other endpoints are untouched"
    stats = await control(http, "GET", f"{books.control_url}/stats")
    assert stats["by_endpoint"]["GET /v2/finplus/debtmanagement/financialtransactions"] == 2
    assert stats["by_endpoint"]["GET /v2/finplus/debtmanagement/ageanalysis"] == 5
