"""The `/_sim/` controls of the books: payments lower balances and complete promises, ageing, invoice runs,
notes, and `/_sim/changes` recording every change they make."""

from __future__ import annotations

import itertools
import time
from collections.abc import AsyncIterator, Callable
from decimal import Decimal
from typing import Any

import httpx
import pytest

from bridge.testing.servers import SimulatorServer
from tests.simulator.finance_helpers import AGE, BUCKETS, NOTES, PROMISES, TODAY, TRANSACTIONS, amount
from tests.simulator.helpers import CREDENTIALS, control, scan


@pytest.fixture
def books(simulator_factory: Callable[..., SimulatorServer]) -> SimulatorServer:
    return simulator_factory(schools=2, learners=120, debtors=90, seed=1, today=TODAY)


@pytest.fixture
async def d6(books: SimulatorServer) -> AsyncIterator[httpx.AsyncClient]:
    headers = {**CREDENTIALS, "HTTP-X-SCHOOLID": "1000"}
    async with httpx.AsyncClient(base_url=books.base_url, headers=headers, timeout=10) as client:
        yield client


async def balance_of(d6: httpx.AsyncClient, person: str) -> dict[str, Any]:
    rows = (await d6.get(AGE, params={"accountable_person_id": person, "all_accounts": 1})).json()["data"]
    assert len(rows) == 1
    row: dict[str, Any] = rows[0]
    return row


async def an_owing_debtor(d6: httpx.AsyncClient) -> dict[str, Any]:
    rows, _ = await scan(d6, AGE, {"limit": 50})
    return next(r for r in rows if amount(r["balance_current"]) > 0 and amount(r["balance_total"]) > 2000)


async def test_a_payment_lowers_the_balance_and_completes_the_promise(
    books: SimulatorServer, d6: httpx.AsyncClient, http: httpx.AsyncClient
) -> None:
    base = f"{books.control_url}/schools/1000"
    debtor = await an_owing_debtor(d6)
    person = debtor["accountable_person_id"]
    owed = amount(debtor["balance_total"])
    promise = await control(
        http,
        "POST",
        f"{base}/promises",
        {"accountable_person_id": int(person), "amount_promised": "1000", "date_promised": "2026-03-20"},
    )
    assert promise["amount_promised"] == "1000.00"
    assert (promise["amount_paid"], promise["promise_completed"]) == ("0.00", "No")
    served = (await d6.get(f"{PROMISES}/{promise['promise_to_pay_id']}")).json()
    assert served == promise
    note = (await d6.get(f"{NOTES}/{promise['note_id']}", params={"include_promise_to_pays": 1})).json()
    assert note["note_type"] == "Promise to pay"
    assert note["promise_to_pays"] == [promise]

    paid = await control(
        http, "POST", f"{base}/transactions", {"accountable_person_id": int(person), "amount": "600.00"}
    )
    assert paid["transaction_type"] == "Receipt"
    assert (paid["credit_amount"], paid["debit_amount"], paid["transaction_date"]) == (
        "600.00",
        "0.00",
        TODAY,
    )
    assert amount(paid["accumulated_balance"]) == owed - 600
    assert amount((await balance_of(d6, person))["balance_total"]) == owed - 600
    partial = (await d6.get(f"{PROMISES}/{promise['promise_to_pay_id']}")).json()
    assert (partial["amount_paid"], partial["promise_completed"]) == ("600.00", "Partial")

    await control(http, "POST", f"{base}/transactions", {"accountable_person_id": int(person), "amount": 700})
    done = (await d6.get(f"{PROMISES}/{promise['promise_to_pay_id']}")).json()
    assert (done["amount_paid"], done["promise_completed"]) == ("1000.00", "Yes")
    row = await balance_of(d6, person)
    assert amount(row["balance_total"]) == owed - 1300
    assert row["date"] == TODAY
    families = (
        await d6.get(TRANSACTIONS, params={"accountable_person_id": person, "start_date": TODAY})
    ).json()
    assert [r["credit_amount"] for r in families["data"][0]["transactions"]] == ["600.00", "700.00"]


async def test_a_transaction_control_moves_balances(
    books: SimulatorServer, d6: httpx.AsyncClient, http: httpx.AsyncClient
) -> None:
    base = f"{books.control_url}/schools/1000"
    debtor = await an_owing_debtor(d6)
    person = debtor["accountable_person_id"]
    before = await balance_of(d6, person)
    invoice = await control(
        http,
        "POST",
        f"{base}/transactions",
        {
            "accountable_person_id": int(person),
            "transaction_type_id": 5,
            "amount": "450.00",
            "category_id": 8,
            "transaction_date": "2026-01-20",
            "transaction_description": "Excursion",
        },
    )
    assert (invoice["transaction_type"], invoice["category"], invoice["debit_amount"]) == (
        "Invoice",
        "Sport and Culture",
        "450.00",
    )
    after = await balance_of(d6, person)
    assert amount(after["balance_total"]) == amount(before["balance_total"]) + 450
    assert amount(after["balance_60days"]) >= amount(before["balance_60days"])

    changed = await control(http, "PATCH", f"{base}/transactions/{invoice['key']}", {"debit_amount": "50"})
    assert changed["debit_amount"] == "50.00"
    assert amount((await balance_of(d6, person))["balance_total"]) == amount(before["balance_total"]) + 50
    assert (await http.delete(f"{base}/transactions/{invoice['key']}")).status_code == 204
    assert await balance_of(d6, person) == before
    listed = (await control(http, "GET", f"{base}/transactions"))["data"]
    assert invoice["key"] not in {t["key"] for t in listed}
    assert (await http.delete(f"{base}/transactions/{invoice['key']}")).status_code == 404
    bad = await http.post(
        f"{base}/transactions", json={"accountable_person_id": int(person), "amount": "1,5"}
    )
    assert bad.status_code == 400
    nobody = await http.post(f"{base}/transactions", json={"accountable_person_id": 99999, "amount": "10"})
    assert nobody.status_code == 404


async def test_ageing_moves_every_balance_one_bucket_older(
    books: SimulatorServer, d6: httpx.AsyncClient, http: httpx.AsyncClient
) -> None:
    before = {
        r["accountable_person_id"]: r for r in (await scan(d6, AGE, {"all_accounts": 1, "limit": 50}))[0]
    }
    answer = await control(http, "POST", f"{books.control_url}/schools/1000/age")
    assert answer["today"] == "2026-04-14"
    after = {
        r["accountable_person_id"]: r for r in (await scan(d6, AGE, {"all_accounts": 1, "limit": 50}))[0]
    }
    moved = 0
    for person, old in before.items():
        new = after[person]
        assert new["balance_total"] == old["balance_total"]
        assert new["date"] == old["date"]
        if amount(old["balance_total"]) <= 0:
            assert new == old
            continue
        assert new["balance_current"] == "0.00"
        for younger, older in itertools.pairwise(BUCKETS[:-1]):
            assert new[older] == old[younger]
        assert amount(new["balance_150days"]) == amount(old["balance_120days"]) + amount(
            old["balance_150days"]
        )
        moved += new != old
    assert moved == answer["balances_changed"] > 10
    for months in (0, 1000):
        assert (
            await http.post(f"{books.control_url}/schools/1000/age", json={"months": months})
        ).status_code == 400
    later = await control(http, "POST", f"{books.control_url}/schools/1000/age", {"months": 3})
    assert later["today"] == "2026-07-14"
    oldest = (await scan(d6, AGE, {"all_accounts": 1, "limit": 50}))[0]
    assert all(
        r["balance_current"] == r["balance_30days"] == r["balance_60days"] == "0.00"
        for r in oldest
        if amount(r["balance_total"]) > 0
    )


async def test_an_invoice_run_bills_every_current_learner_once_a_month(
    books: SimulatorServer, d6: httpx.AsyncClient, http: httpx.AsyncClient
) -> None:
    base = f"{books.control_url}/schools/1000"
    assert (await control(http, "POST", f"{base}/invoice-run"))["invoices"] == 0, "March is invoiced already"
    learners = (await control(http, "GET", f"{base}/learners"))["data"]
    debtors = {
        int(d["accountable_person_id"]): d
        for d in (await control(http, "GET", f"{base}/accountablepersons"))["data"]
    }
    current = [
        learner
        for learner in learners
        if debtors[learner["accountable_person_id"]]["account_closing_date"] == "0000-00-00"
    ]
    await control(http, "POST", f"{base}/age")
    run = await control(http, "POST", f"{base}/invoice-run")
    families, _ = await scan(d6, TRANSACTIONS, {"start_date": "2026-04-01", "limit": 50})
    invoices = [r for f in families for r in f["transactions"]]
    assert run["invoices"] == len(invoices) >= len(current)
    assert {r["transaction_date"] for r in invoices} == {"2026-04-01"}
    assert {r["learner_id"] for r in invoices} == {str(learner["learner_id"]) for learner in current}
    assert any("School Fees April 2026" in r["transaction_description"] for r in invoices)
    assert (await control(http, "POST", f"{base}/invoice-run"))["invoices"] == 0
    row = (await scan(d6, AGE, {"limit": 50}))[0]
    assert sum(amount(r["balance_current"]) for r in row) > 0


async def test_notes_are_deleted_softly_restored_and_purged(
    books: SimulatorServer, d6: httpx.AsyncClient, http: httpx.AsyncClient
) -> None:
    base = f"{books.control_url}/schools/1000"
    note = await control(
        http,
        "POST",
        f"{base}/notes",
        {"accountable_person_id": 3, "note_type_id": 1, "communication_type_id": 1, "note": "SMS sent"},
    )
    assert (note["note_type"], note["communication_type"], note["status"], note["date"]) == (
        "Text note",
        "SMS",
        "Created",
        TODAY,
    )
    url = f"{NOTES}/{note['note_id']}"
    assert (await d6.get(url)).json()["note"] == "SMS sent"
    assert (await http.delete(f"{base}/notes/{note['note_id']}")).status_code == 204
    assert (await d6.get(url)).status_code == 404
    deleted = (await d6.get(url, params={"include_deleted": 1})).json()
    assert deleted["status"] == "Deleted"
    assert (await http.delete(f"{base}/notes/{note['note_id']}")).status_code == 404, "already deleted"
    restored = await control(
        http, "PATCH", f"{base}/notes/{note['note_id']}", {"status": "Created", "note": "SMS!"}
    )
    assert (restored["status"], restored["note"]) == ("Created", "SMS!")
    assert (await d6.get(url)).status_code == 200
    internal = await control(
        http,
        "POST",
        f"{base}/notes",
        {
            "accountable_person_id": 3,
            "note_type_id": 2,
            "note": "Will pay",
            "promise_to_pays": [{"date_promised": "2026-04-01", "amount_promised": "250"}],
        },
    )
    assert [p["amount_promised"] for p in internal["promise_to_pays"]] == ["250.00"]
    assert (
        await http.delete(f"{base}/notes/{internal['note_id']}", params={"purge": True})
    ).status_code == 204
    assert (await d6.get(f"{NOTES}/{internal['note_id']}", params={"include_deleted": 1})).status_code == 404
    promise_id = internal["promise_to_pays"][0]["promise_to_pay_id"]
    assert (await d6.get(f"{PROMISES}/{promise_id}")).status_code == 404


async def test_promises_can_be_changed_and_removed(
    books: SimulatorServer, d6: httpx.AsyncClient, http: httpx.AsyncClient
) -> None:
    base = f"{books.control_url}/schools/1000"
    promise = (await control(http, "GET", f"{base}/promises"))["data"][0]
    key = promise["promise_to_pay_id"]
    changed = await control(
        http,
        "PATCH",
        f"{base}/promises/{key}",
        {"amount_promised": "99999.00", "date_promised": "2026-06-30"},
    )
    assert changed["promise_completed"] in ("No", "Partial")
    assert (await d6.get(f"{PROMISES}/{key}")).json() == changed
    school_set = await control(http, "PATCH", f"{base}/promises/{key}", {"promise_completed": "Yes"})
    assert school_set["promise_completed"] == "Yes"
    assert (await http.delete(f"{base}/promises/{key}")).status_code == 204
    assert (await d6.get(f"{PROMISES}/{key}")).status_code == 404
    assert (await http.patch(f"{base}/promises/{key}", json={"amount_paid": "1"})).status_code == 404
    assert (await http.post(f"{base}/promises", json={"amount_promised": "10"})).status_code == 400


async def test_changes_records_what_the_controls_did_and_when(
    books: SimulatorServer, d6: httpx.AsyncClient, http: httpx.AsyncClient
) -> None:
    sim = books.control_url
    assert (await control(http, "GET", f"{sim}/changes"))["changes"] == [], (
        "seeding is a baseline, not changes"
    )
    started = time.time()
    debtor = await an_owing_debtor(d6)
    person = int(debtor["accountable_person_id"])
    await control(http, "PATCH", f"{sim}/schools/1001/learners/3", {"grade": "12"})
    middle = time.time()
    promise = await control(http, "POST", f"{sim}/schools/1000/promises", {"accountable_person_id": person})
    payment = await control(
        http, "POST", f"{sim}/schools/1000/transactions", {"accountable_person_id": person, "amount": "5"}
    )
    log = await control(http, "GET", f"{sim}/changes")
    changes = log["changes"]
    assert log["recorded"] == log["kept"] == len(changes)
    seen = [(c["school_id"], c["resource"], c["key"], c["kind"]) for c in changes]
    assert seen == [
        (1001, "learners", "3", "updated"),
        (1000, "notes", str(promise["note_id"]), "created"),
        (1000, "promises", str(promise["promise_to_pay_id"]), "created"),
        (1000, "transactions", str(payment["key"]), "created"),
        (1000, "promises", str(promise["promise_to_pay_id"]), "updated"),
        (1000, "balances", str(person), "updated"),
    ]
    assert started <= changes[0]["t"] <= middle <= changes[1]["t"] <= time.time()
    assert changes[3]["identity"] == {
        "debtor_code": debtor["debtor_code"],
        "transaction_date": TODAY,
        "transaction_type_id": "2",
        "transaction_reference": payment["transaction_reference"],
        "transaction_description": payment["transaction_description"],
        "debit_amount": "0.00",
        "credit_amount": "5.00",
    }
    assert all("identity" not in c for c in changes if c["resource"] != "transactions")
    later = await control(http, "GET", f"{sim}/changes?since={changes[2]['t']}")
    assert later["changes"] == changes[3:]
    only = await control(http, "GET", f"{sim}/changes?school_id=1000&resource=promises")
    assert [c["kind"] for c in only["changes"]] == ["created", "updated"]
    assert (await http.get(f"{sim}/changes?resource=teachers")).status_code == 400

    await control(http, "DELETE", f"{sim}/schools/1000/transactions/{payment['key']}")
    removed = (await control(http, "GET", f"{sim}/changes?since={changes[-1]['t']}"))["changes"]
    assert [(c["resource"], c["kind"]) for c in removed] == [
        ("transactions", "removed"),
        ("balances", "updated"),
    ]
    assert removed[0]["identity"] == changes[3]["identity"]

    assert (await control(http, "POST", f"{sim}/changes/reset")) == {"recorded": 0, "kept": 0}
    assert (await control(http, "GET", f"{sim}/changes"))["changes"] == []


async def test_debtor_changes_reach_the_books(
    books: SimulatorServer, d6: httpx.AsyncClient, http: httpx.AsyncClient
) -> None:
    base = f"{books.control_url}/schools/1000"
    promise = (await control(http, "GET", f"{base}/promises"))["data"][0]
    person = promise["accountable_person_id"]
    await control(http, "PATCH", f"{base}/accountablepersons/{person}", {"debtor_code": "7777"})
    assert (await d6.get(f"{PROMISES}/{promise['promise_to_pay_id']}")).json()["debtor_code"] == "7777"
    assert (await balance_of(d6, str(person)))["debtor_code"] == "7777"
    families = (await d6.get(TRANSACTIONS, params={"debtor_code": 7777})).json()["data"]
    assert [f["accountable_person_id"] for f in families] == [str(person)]
    kinds = {
        (c["resource"], c["kind"])
        for c in (await control(http, "GET", "/".join([books.control_url, "changes"])))["changes"]
    }
    assert {
        ("debtors", "updated"),
        ("balances", "updated"),
        ("promises", "updated"),
        ("transactions", "updated"),
    } <= kinds

    await control(http, "POST", f"{base}/accountablepersons", {"first_name": "Sipho"})
    created = (await control(http, "GET", f"{books.control_url}/changes?resource=balances"))["changes"][-1]
    assert created["kind"] == "created"
    fresh = await balance_of(d6, created["key"])
    assert all(fresh[name] == "0.00" for name in [*BUCKETS, "balance_total"])
    assert fresh["date"] == "0000-00-00"
    total = sum(
        (amount(r["balance_total"]) for r in (await scan(d6, AGE, {"all_accounts": 1, "limit": 50}))[0]),
        Decimal(0),
    )
    assert total > 0
