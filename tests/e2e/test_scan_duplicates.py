"""A scan in which one id appears twice is not trusted at once (docs/guarantees.md), end to end: the
simulator's lists move under the cursor (`shift_on_page`) or repeat a row (`repeat_row_on_page`), a real
Redis, the bridge's own wiring. Also transaction identity (issue 21, item 7) and value-free errors
(item 3)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx
import redis.asyncio as aioredis
from structlog.testing import capture_logs

from bridge.app import Services
from bridge.store.keys import Keys
from bridge.testing.settings import bridge_settings
from bridge.testing.waiting import wait_for
from tests.e2e.helpers import api, running_bridge

SECRET = "Zanele-8012245009087"


async def _count(redis: aioredis.Redis) -> int:
    """How many events school 1000 has emitted (its sequence), whether or not published yet."""
    return int(await redis.hget(Keys().school_meta(1000), "seq") or 0)


async def _events(services: Services) -> list[dict[str, Any]]:
    """School 1000's published events, through the API, in sequence order."""
    async with api(services) as client:
        page = (await client.get("/v1/events", params={"school_id": 1000, "limit": 200})).json()
    return sorted(page["data"], key=lambda event: event["sequence"])


async def _feed(services: Services, name: str) -> Any:
    return (await services.status.get(1000)).feeds[name]


async def _untrusted(services: Services, name: str) -> Any:
    feed = await _feed(services, name)
    return feed if feed.consecutive_failures and "appear twice" in (feed.last_error or "") else None


async def _succeeded_after(services: Services, name: str, moment: float) -> bool:
    return ((await _feed(services, name)).last_success or 0.0) > moment


async def _baseline(services: Services, name: str) -> None:
    async def done() -> bool:
        return (await _feed(services, name)).last_success is not None

    await wait_for(done, timeout=30, what=f"the {name} baseline")


async def test_a_list_that_shifts_under_the_cursor_makes_no_false_removed_and_no_created(
    redis: aioredis.Redis, redis_url: str, simulator_factory: Any
) -> None:
    sim = simulator_factory(schools=1, learners=140, debtors=60, seed=41)
    control = httpx.AsyncClient(base_url=sim.control_url)
    settings = bridge_settings(redis_url, sim.base_url, BRIDGE_RESOURCES="learners")
    async with running_bridge(settings) as services:
        await _baseline(services, "learners")
        shift = {"shift_on_page": 2, "school_id": 1000, "endpoint": "learners", "times": 1}
        assert (await control.post("/faults", json=shift)).status_code == 200
        feed = await wait_for(lambda: _untrusted(services, "learners"), timeout=20, what="an untrusted scan")
        assert await _count(redis) == 0  # nothing from the first such scan
        first_page_last = (await control.get("/schools/1000/learners")).json()["data"][49]["learner_id"]
        assert f": {first_page_last};" in feed.last_error  # the repeated id is named
        async with api(services) as client:
            view = (await client.get("/v1/schools")).json()["data"][0]
        shown = next(f for f in view["feeds"] if f["resource"] == "learners")
        assert "appear twice" in shown["last_error"] and shown["consecutive_failures"] >= 1
        moment = time.time()
        await wait_for(
            lambda: _succeeded_after(services, "learners", moment), timeout=20, what="a clean scan"
        )
        assert (await services.redis.exists(services.keys.snapshot_dup(1000, "learner"))) == 0
    assert await _count(redis) == 0  # no false removed of the record the shift hid


async def test_a_row_repeated_in_two_consecutive_scans_is_diffed_the_last_row_winning(
    redis: aioredis.Redis, redis_url: str, simulator_factory: Any
) -> None:
    sim = simulator_factory(schools=1, learners=140, debtors=60, seed=42)
    control = httpx.AsyncClient(base_url=sim.control_url)
    settings = bridge_settings(redis_url, sim.base_url, BRIDGE_RESOURCES="learners")
    async with running_bridge(settings) as services:
        await _baseline(services, "learners")
        repeat = {"repeat_row_on_page": 2, "school_id": 1000, "endpoint": "learners"}
        await control.post("/faults", json=repeat)
        await wait_for(lambda: _untrusted(services, "learners"), timeout=20, what="an untrusted scan")
        assert await _count(redis) == 0
        await control.patch("/schools/1000/learners/7", json={"grade": "12"})

        async def updated() -> list[Any] | None:
            events = await _events(services)
            return events if any(e["type"] == "learner.updated" for e in events) else None

        await wait_for(updated, timeout=30, what="the update, once two scans agree")
        await asyncio.sleep(4.5)  # later scans (the repeat goes on) add nothing, and agree: all diffed
        events = await _events(services)
        assert await _count(redis) == 1
        feed = await _feed(services, "learners")
        assert feed.consecutive_failures == 0 and "appear twice" in (feed.last_error or "")
    assert [(e["type"], e["resource_id"]) for e in events] == [("learner.updated", "7")]
    assert events[0]["data"]["grade"] == "12"


async def test_a_family_repeated_across_pages_is_no_transaction_created_then_removed(
    redis: aioredis.Redis, redis_url: str, simulator_factory: Any
) -> None:
    """Item 7 (a): the same transactions on two pages of one scan, first once (a shift), then in scan after
    scan: no `transaction.created`, and no `removed` when the list is clean again."""
    sim = simulator_factory(schools=1, learners=160, debtors=120, seed=43)
    control = httpx.AsyncClient(base_url=sim.control_url)
    settings = bridge_settings(redis_url, sim.base_url, BRIDGE_RESOURCES="transactions")
    async with running_bridge(settings) as services:
        await _baseline(services, "transactions")
        endpoint = "financialtransactions"
        shift = {"shift_on_page": 2, "school_id": 1000, "endpoint": endpoint, "times": 1}
        await control.post("/faults", json=shift)
        await wait_for(lambda: _untrusted(services, "transactions"), timeout=20, what="an untrusted scan")
        moment = time.time()
        await wait_for(lambda: _succeeded_after(services, "transactions", moment), timeout=20, what="clean")
        assert await _count(redis) == 0
        await control.post("/faults", json={"repeat_row_on_page": 2, "school_id": 1000, "endpoint": endpoint})
        await wait_for(lambda: _untrusted(services, "transactions"), timeout=20, what="a repeat")
        moment = time.time()
        await wait_for(lambda: _succeeded_after(services, "transactions", moment), timeout=20, what="agreed")
        await control.delete("/faults")
        moment = time.time()
        await wait_for(lambda: _succeeded_after(services, "transactions", moment), timeout=20, what="clean")
    assert await _count(redis) == 0


async def test_reversing_one_of_two_learners_identical_invoices_removes_that_one(
    redis: aioredis.Redis, redis_url: str, simulator_factory: Any
) -> None:
    """Item 7 (b): twins that differ only outside the identity fields are told apart by their rows."""
    sim = simulator_factory(schools=1, learners=40, debtors=30, seed=44, transactions_shape="flat")
    control = httpx.AsyncClient(base_url=sim.control_url)
    settings = bridge_settings(redis_url, sim.base_url, BRIDGE_RESOURCES="transactions")
    learners = (await control.get("/schools/1000/learners")).json()["data"]
    family: dict[int, list[int]] = {}
    for learner in learners:
        family.setdefault(int(learner["accountable_person_id"]), []).append(int(learner["learner_id"]))
    person, (first, second, *_) = next((p, ids) for p, ids in family.items() if len(ids) >= 2)
    invoice = {
        "accountable_person_id": person,
        "transaction_type_id": 5,
        "amount": "350.00",
        "transaction_reference": "TOUR 9",
        "transaction_description": "Sport tour",
    }
    async with running_bridge(settings) as services:
        await _baseline(services, "transactions")
        one = (await control.post("/schools/1000/transactions", json={**invoice, "learner_id": first})).json()
        await control.post("/schools/1000/transactions", json={**invoice, "learner_id": second})

        async def of_type(kind: str, count: int) -> list[Any] | None:
            found = [e for e in await _events(services) if e["type"] == kind]
            return found if len(found) >= count else None

        await wait_for(lambda: of_type("transaction.created", 2), timeout=20, what="both invoices")
        await control.delete(f"/schools/1000/transactions/{one['key']}")
        (removed,) = await wait_for(lambda: of_type("transaction.removed", 1), timeout=20, what="the removal")
        await asyncio.sleep(2.5)
        created = await of_type("transaction.created", 0)
    assert int(removed["data"]["learner_id"]) == first
    assert created is not None and len(created) == 2  # nothing re-created


async def test_a_malformed_finance_row_fails_the_poll_naming_field_and_id_never_its_values(
    redis: aioredis.Redis, redis_url: str, simulator_factory: Any
) -> None:
    """Item 3: the error text reaches the logs and `/v1/schools`; it names the field and the record id."""
    sim = simulator_factory(schools=1, learners=40, debtors=30, seed=45)
    control = httpx.AsyncClient(base_url=sim.control_url)
    settings = bridge_settings(redis_url, sim.base_url, BRIDGE_RESOURCES="transactions,balances")
    bad_transaction = {
        "accountable_person_id": "40",
        "debtor_code": "1040",
        "transaction_date": None,
        "transaction_description": SECRET,
        "debit_amount": "1.00",
    }
    with capture_logs() as logs:
        async with running_bridge(settings) as services:
            await _baseline(services, "transactions")
            await control.post(
                "/faults",
                json={
                    "extra_record": bad_transaction,
                    "school_id": 1000,
                    "endpoint": "financialtransactions",
                },
            )

            async def failed(name: str) -> Any:
                feed = await _feed(services, name)
                return feed if feed.consecutive_failures else None

            await wait_for(lambda: failed("transactions"), timeout=20, what="the failed transaction poll")
            await control.post(
                "/faults",
                json={"extra_record": {"first_name": SECRET}, "school_id": 1000, "endpoint": "ageanalysis"},
            )
            await wait_for(lambda: failed("balances"), timeout=20, what="the failed balance poll")
            async with api(services) as client:
                listing = (await client.get("/v1/schools")).text
    feeds = {f["resource"]: f for f in httpx.Response(200, text=listing).json()["data"][0]["feeds"]}
    assert "transaction_date" in feeds["transactions"]["last_error"]
    assert "accountable_person_id 40" in feeds["transactions"]["last_error"]
    assert "debtor_code" in feeds["balances"]["last_error"]
    assert SECRET not in listing
    assert [entry for entry in logs if entry.get("event", "").startswith("poll failed")]
    assert SECRET not in repr(logs)
    assert await _count(redis) == 0
