"""The churn with the books: finance changes where books are in use, month starts, skew, and every change
recorded in `/_sim/changes`."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections import Counter
from collections.abc import Callable

import httpx
import pytest

from bridge.simulator.churn import Churn
from bridge.simulator.ledger import Calendar
from bridge.simulator.state import World
from bridge.testing.servers import SimulatorServer
from tests.simulator.finance_helpers import AGE, TODAY, TRANSACTIONS, amount, assert_books_hold_together
from tests.simulator.helpers import CREDENTIALS, control, scan

FINANCE = {"balances", "promises", "notes", "transactions"}


def world_of(seed: int, schools: int = 3, *, debtors: int = 40, learners: int = 50) -> World:
    world = World(seed, Calendar(dt.date.fromisoformat(TODAY)))
    for index in range(schools):
        world.add_school(1000 + index, debtors=debtors, learners=learners, api_type_ids=(8,), activated=True)
    return world


def test_churn_keeps_the_books_consistent_and_touches_only_books_in_use() -> None:
    def churned(seed: int) -> World:
        world = world_of(seed)
        world.schools[1000].finance.ensure()
        world.schools[1001].finance.ensure()
        Churn(world, rate=2_000).step(2.0)
        return world

    world = churned(5)
    for school_id in (1000, 1001):
        assert_books_hold_together(world.schools[school_id].finance)
    untouched = world.schools[1002].finance
    assert untouched.state == "pending"
    assert not untouched.txns
    kinds = Counter((c.school_id, c.resource) for c in world.changes.entries)
    assert all(kinds[(1000, resource)] > 0 for resource in FINANCE)
    assert not any(kinds[(1002, resource)] for resource in FINANCE - {"balances"})

    again = churned(5)
    assert [(c.school_id, c.resource, c.key, c.kind) for c in world.changes.entries] == [
        (c.school_id, c.resource, c.key, c.kind) for c in again.changes.entries
    ]
    books, same = world.schools[1000].finance, again.schools[1000].finance
    assert [books.row(t) for t in books.txns.values()] == [same.row(t) for t in same.txns.values()]
    assert list(books.promises.values()) == list(same.promises.values())


def test_every_change_the_churn_applies_is_recorded() -> None:
    world = world_of(2, schools=2)
    world.schools[1001].finance.ensure()
    churn = Churn(world, rate=500)
    churn.step(1.0)
    assert churn.applied == 500
    entries = list(world.changes.entries)
    assert len(entries) >= churn.applied
    assert {c.resource for c in entries} == {"debtors", "learners", *FINANCE}
    assert {c.kind for c in entries} == {"created", "updated", "removed"}
    assert [c.t for c in entries] == sorted(c.t for c in entries)


def test_a_new_month_ages_balances_and_the_churn_runs_the_invoices() -> None:
    world = world_of(3, schools=1)
    books = world.schools[1000].finance.ensure()
    churn = Churn(world, rate=0)
    assert churn.keep_time() == 0
    owing = sum(1 for debtor_id in books.ledgers if books.balance(debtor_id) > 0)
    assert books.age() >= owing > 0
    assert churn.keep_time() == 0, "a stopped churn runs no invoices"
    churn.set_rate(1.0)
    invoiced = churn.keep_time()
    april = [t for t in books.txns.values() if t.date == "2026-04-01"]
    assert invoiced == len(april) > 0
    assert {t.type_id for t in april} == {5}
    assert churn.keep_time() == 0, "one invoice run a month"
    created = [c for c in world.changes.entries if c.resource == "transactions" and c.kind == "created"]
    assert len(created) == len(april)
    assert_books_hold_together(books)


def test_skew_makes_a_few_schools_busy_and_many_quiet() -> None:
    def shares(skew: float) -> list[int]:
        world = world_of(9, schools=20, debtors=2, learners=2)
        churn = Churn(world, rate=10_000, skew=skew)
        churn.step(2.0)
        return [churn.by_school[1000 + index] for index in range(20)]

    even = shares(0.0)
    assert sum(even) == 10_000
    assert max(even) < 2 * min(even)
    skewed = shares(1.5)
    assert sum(skewed) == 10_000
    weights = [1 / rank**1.5 for rank in range(1, 21)]
    for count, weight in zip(skewed, weights, strict=True):
        assert abs(count / 10_000 - weight / sum(weights)) < 0.02
    assert skewed[0] > 10 * skewed[-1]


async def test_churn_skew_over_http(
    simulator_factory: Callable[..., SimulatorServer], http: httpx.AsyncClient
) -> None:
    sim = simulator_factory(schools=4, learners=10, debtors=10, churn_skew=2.0, finance=False)
    described = await control(http, "GET", f"{sim.control_url}/churn")
    assert described == {"rate": 0.0, "skew": 2.0, "applied": 0, "by_school": {}}
    await control(http, "POST", f"{sim.control_url}/churn", {"rate": 2_000})
    await asyncio.sleep(0.5)
    stopped = await control(http, "POST", f"{sim.control_url}/churn", {"rate": 0, "skew": 0})
    counts = stopped["by_school"]
    assert stopped["skew"] == 0
    assert counts["1000"] > 4 * counts.get("1003", 0)
    assert stopped["applied"] == sum(counts.values())
    log = await control(http, "GET", f"{sim.control_url}/changes")
    assert {c["resource"] for c in log["changes"]} <= {"debtors", "learners", "balances"}
    assert log["recorded"] >= stopped["applied"]


async def test_churn_over_http_keeps_the_reports_in_step(
    simulator_factory: Callable[..., SimulatorServer], http: httpx.AsyncClient
) -> None:
    sim = simulator_factory(schools=1, learners=60, debtors=50, today=TODAY)
    headers = {**CREDENTIALS, "HTTP-X-SCHOOLID": "1000"}
    async with httpx.AsyncClient(base_url=sim.base_url, headers=headers) as d6:
        await d6.get(AGE)  # the books are generated on first use
        await control(http, "POST", f"{sim.control_url}/churn", {"rate": 400})
        await asyncio.sleep(0.5)
        await control(http, "POST", f"{sim.control_url}/churn", {"rate": 0})
        rows, _ = await scan(d6, AGE, {"all_accounts": 1, "limit": 50})
        families, _ = await scan(d6, TRANSACTIONS, {"all_accounts": 1, "limit": 50})
    closing = {f["accountable_person_id"]: amount(f["closing_balance"]) for f in families}
    for row in rows:
        assert amount(row["balance_total"]) == closing.get(row["accountable_person_id"], 0)
    changes = (await control(http, "GET", f"{sim.control_url}/changes"))["changes"]
    assert {c["resource"] for c in changes} >= FINANCE
    # The payments the churn made (a debtor's code changing, or the debtor leaving, also lists its older
    # transactions, as updated or removed: they keep their dates).
    payments = [
        c
        for c in changes
        if c["resource"] == "transactions"
        and c["kind"] == "created"
        and c["identity"]["transaction_type_id"] == "2"
    ]
    assert payments and all(c["identity"]["transaction_date"] == TODAY for c in payments)


def test_the_simulator_command_takes_a_churn_skew(capsys: pytest.CaptureFixture[str]) -> None:
    from bridge.__main__ import _parser

    assert _parser().parse_args(["simulator", "--churn-skew", "1.5"]).churn_skew == 1.5
    assert _parser().parse_args(["simulator"]).churn_skew == 0.0
    with pytest.raises(SystemExit) as exited:
        _parser().parse_args(["simulator", "--churn-skew", "-1"])
    assert exited.value.code == 2
    assert "--churn-skew: must not be negative" in capsys.readouterr().err
