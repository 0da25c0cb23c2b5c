"""The Finance+ feeds end to end (docs/events.md#catalogue): balances, promises, notes and transactions
from the simulator's books over HTTP, a real Redis, the bridge's own wiring; every new event type, the
transaction window, the note deletion rule, the school's one sequence, and a failed scan of each resource
that emits nothing."""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis
from standardwebhooks.webhooks import Webhook

from bridge.app import Services
from bridge.events.envelope import Event
from bridge.testing.receivers import Receiver
from bridge.testing.servers import ThreadedServer
from bridge.testing.settings import bridge_settings
from bridge.testing.waiting import wait_for
from tests.e2e.helpers import api, running_bridge, school_events

FINANCE = ("ageanalysis", "promisetopays", "debtornotes/notes", "financialtransactions")


async def polled(services: Services, school_id: int) -> bool:
    return (await services.status.get(school_id)).last_success is not None


async def types_after(
    redis: aioredis.Redis, school_id: int, after: int, wanted: set[str]
) -> list[Event] | None:
    """The events after sequence `after`, once every wanted type is among them."""
    events = [e for e in await school_events(redis, school_id) if e.sequence > after]
    return events if wanted <= {e.type for e in events} else None


async def last_sequence(redis: aioredis.Redis, school_id: int) -> int:
    events = await school_events(redis, school_id)
    return events[-1].sequence if events else 0


async def test_every_finance_event_type_arrives_with_its_changes_on_the_schools_one_sequence(
    redis: aioredis.Redis, redis_url: str, simulator_factory: Any
) -> None:
    sim = simulator_factory(schools=1, learners=60, debtors=40, seed=31)
    control = httpx.AsyncClient(base_url=sim.control_url)
    settings = bridge_settings(redis_url, sim.base_url, BRIDGE_RESOURCES="all")
    async with running_bridge(settings) as services:
        await wait_for(lambda: polled(services, 1000), what="the silent baseline of six feeds")
        assert await school_events(redis, 1000) == []
        status = await services.status.get(1000)
        assert set(status.feeds) == {"debtors", "learners", "balances", "promises", "notes", "transactions"}
        assert all(feed.count and feed.pages for feed in status.feeds.values())

        # A payment: a new transaction, the debtor's balance moves, an open promise is paid.
        debtor = (await control.get("/schools/1000/balances")).json()["data"][3]
        person = int(debtor["accountable_person_id"])
        promise = (
            await control.post(
                "/schools/1000/promises", json={"accountable_person_id": person, "amount_promised": "900.00"}
            )
        ).json()
        seq = await last_sequence(redis, 1000)
        wanted = {"promise.created", "note.created"}
        await wait_for(
            lambda: types_after(redis, 1000, 0, wanted), timeout=20, what="the promise and its note"
        )
        seq = await last_sequence(redis, 1000)
        paid = await control.post(
            "/schools/1000/transactions", json={"accountable_person_id": person, "amount": "500.00"}
        )
        assert paid.status_code == 201, paid.text
        events = await wait_for(
            lambda: types_after(
                redis, 1000, seq, {"transaction.created", "balance.updated", "promise.updated"}
            ),
            what="the payment's events",
        )
        by_type = {e.type: e for e in events}
        created = by_type["transaction.created"]
        assert created.data["credit_amount"] == "500.00" and created.resource == "transaction"
        assert created.data["accumulated_balance"] is not None  # kept as sent, never identity
        balance = by_type["balance.updated"]
        assert balance.changes is not None and "balance_total" in balance.changes
        assert balance.resource_id == str(person)
        promised = by_type["promise.updated"]
        assert promised.resource_id == str(promise["promise_to_pay_id"])
        assert promised.changes is not None and promised.changes["amount_paid"].new == "500.00"

        # A note deleted in d6 is an update of its status (scanned with deleted notes included) ...
        note = (await control.post("/schools/1000/notes", json={"accountable_person_id": person})).json()
        await wait_for(lambda: types_after(redis, 1000, seq, {"note.created"}), what="the new note")
        seq = await last_sequence(redis, 1000)
        await control.delete(f"/schools/1000/notes/{note['note_id']}")
        (deleted,) = await wait_for(lambda: types_after(redis, 1000, seq, {"note.updated"}), what="deletion")
        assert deleted.resource_id == str(note["note_id"]) and deleted.changes is not None
        assert (deleted.changes["status"].old, deleted.changes["status"].new) == ("Created", "Deleted")
        # ... and one gone for good is removed.
        seq = await last_sequence(redis, 1000)
        await control.delete(f"/schools/1000/notes/{note['note_id']}", params={"purge": "true"})
        await wait_for(lambda: types_after(redis, 1000, seq, {"note.removed"}), what="the purged note")

        # Debt ages: balances move between buckets; a transaction vanishing inside the window is removed.
        seq = await last_sequence(redis, 1000)
        await control.post("/schools/1000/age")
        aged = await wait_for(lambda: types_after(redis, 1000, seq, {"balance.updated"}), what="ageing")
        assert all(e.type == "balance.updated" for e in aged)
        seq = await last_sequence(redis, 1000)
        key = next(t["key"] for t in (await control.get("/schools/1000/transactions")).json()["data"][::-1])
        await control.delete(f"/schools/1000/transactions/{key}")
        await wait_for(lambda: types_after(redis, 1000, seq, {"transaction.removed"}), what="a removal")
        await asyncio.sleep(4)  # two more polls of every feed

        events = await school_events(redis, 1000)
        assert [e.sequence for e in events] == list(range(1, len(events) + 1))  # one gapless sequence
        transactions = Counter(e.resource_id for e in events if e.type == "transaction.created")
        assert transactions and max(transactions.values()) == 1  # no transaction emitted twice
        assert not any(e.type == "transaction.updated" for e in events)


async def test_the_default_resources_make_no_request_to_the_finance_endpoints(
    redis: aioredis.Redis, redis_url: str, simulator_factory: Any
) -> None:
    sim = simulator_factory(schools=2, learners=30, debtors=20, seed=32)
    control = httpx.AsyncClient(base_url=sim.control_url)
    async with running_bridge(bridge_settings(redis_url, sim.base_url)) as services:
        for school in (1000, 1001):
            await wait_for(lambda s=school: polled(services, s), what="first polls")
        await asyncio.sleep(2.5)
    paths = {entry["path"] for entry in (await control.get("/requests")).json()["requests"]}
    assert any("learners" in p for p in paths) and any("accountablepersons" in p for p in paths)
    assert not [p for p in paths if any(name in p for name in FINANCE)]


async def test_a_transaction_that_ages_out_of_the_window_is_not_removed(
    redis: aioredis.Redis, redis_url: str, simulator_factory: Any
) -> None:
    """The same books read with a 90-day window, then a 30-day one: what fell out of the window grew old,
    it did not vanish; one deleted inside the window is removed."""
    sim = simulator_factory(schools=1, learners=40, debtors=30, seed=33)
    control = httpx.AsyncClient(base_url=sim.control_url)
    wide = bridge_settings(
        redis_url, sim.base_url, BRIDGE_RESOURCES="transactions", BRIDGE_TRANSACTION_WINDOW_DAYS="90"
    )
    async with running_bridge(wide) as services:
        await wait_for(lambda: polled(services, 1000), what="the 90-day baseline")
        wide_count = (await services.status.get(1000)).feeds["transactions"].count
    narrow = bridge_settings(
        redis_url, sim.base_url, BRIDGE_RESOURCES="transactions", BRIDGE_TRANSACTION_WINDOW_DAYS="30"
    )
    async with running_bridge(narrow) as services:
        before = (await services.status.get(1000)).last_success or 0.0
        await wait_for(lambda: _polled_since(services, before), what="the 30-day scan")
        narrow_count = (await services.status.get(1000)).feeds["transactions"].count
        assert wide_count and narrow_count and narrow_count < wide_count  # some did age out
        await asyncio.sleep(2.5)
        assert await school_events(redis, 1000) == []
        recent = (await control.get("/schools/1000/transactions")).json()["data"][-1]
        await control.delete(f"/schools/1000/transactions/{recent['key']}")
        (removed,) = await wait_for(
            lambda: types_after(redis, 1000, 0, {"transaction.removed"}), what="the removal inside the window"
        )
        assert removed.data["transaction_reference"] == recent["transaction_reference"]


async def _polled_since(services: Services, moment: float) -> bool:
    return ((await services.status.get(1000)).last_success or 0.0) > moment


@pytest.mark.parametrize("endpoint", FINANCE)
async def test_a_scan_of_each_finance_resource_that_fails_mid_way_emits_nothing(
    redis: aioredis.Redis, redis_url: str, simulator_factory: Any, endpoint: str
) -> None:
    sim = simulator_factory(schools=1, learners=260, debtors=200, seed=34)
    control = httpx.AsyncClient(base_url=sim.control_url)
    async with running_bridge(bridge_settings(redis_url, sim.base_url, BRIDGE_RESOURCES="all")) as services:
        await wait_for(lambda: polled(services, 1000), timeout=30, what="baseline")
        await control.post("/faults", json={"fail_on_page": 2, "school_id": 1000, "endpoint": endpoint})
        await control.post("/schools/1000/age")  # every balance moves; records change in every feed
        for person in (1, 2, 3):
            await control.post(
                "/schools/1000/transactions", json={"accountable_person_id": person, "amount": "10"}
            )
            await control.post("/schools/1000/notes", json={"accountable_person_id": person})
            await control.post("/schools/1000/promises", json={"accountable_person_id": person})
        await wait_for(lambda: _failed(services, endpoint), timeout=20, what="a failed scan")
        await asyncio.sleep(2.5)
        feed = _feed_of(endpoint)
        prefix = {
            "balances": "balance",
            "promises": "promise",
            "notes": "note",
            "transactions": "transaction",
        }[feed]
        assert not [e for e in await school_events(redis, 1000) if e.resource == prefix]
        await control.delete("/faults")
        await wait_for(
            lambda: _any_of(redis, prefix), timeout=20, what=f"{prefix} events once the scan reads again"
        )


def _feed_of(endpoint: str) -> str:
    return {
        "ageanalysis": "balances",
        "promisetopays": "promises",
        "debtornotes/notes": "notes",
        "financialtransactions": "transactions",
    }[endpoint]


async def _failed(services: Services, endpoint: str) -> bool:
    feed = (await services.status.get(1000)).feeds[_feed_of(endpoint)]
    return feed.consecutive_failures >= 2 and "500" in (feed.last_error or "")


async def _any_of(redis: aioredis.Redis, prefix: str) -> bool:
    return any(e.resource == prefix for e in await school_events(redis, 1000))


async def test_a_subscription_filtered_to_balances_and_new_transactions_gets_exactly_those_signed(
    redis: aioredis.Redis, redis_url: str, simulator_factory: Any
) -> None:
    sim = simulator_factory(schools=1, learners=40, debtors=30, seed=35)
    control = httpx.AsyncClient(base_url=sim.control_url)
    receiver = Receiver()
    settings = bridge_settings(redis_url, sim.base_url, BRIDGE_RESOURCES="all")
    with ThreadedServer(receiver) as hook:
        async with running_bridge(settings) as services, api(services) as client:
            created = await client.post(
                "/v1/subscriptions",
                json={"url": f"{hook.url}/d6", "event_types": ["balance.*", "transaction.created"]},
            )
            assert created.status_code == 201, created.text
            await wait_for(lambda: polled(services, 1000), what="the baseline")
            person = int(
                (await control.get("/schools/1000/balances")).json()["data"][2]["accountable_person_id"]
            )
            await control.post("/schools/1000/promises", json={"accountable_person_id": person})
            await control.post("/schools/1000/notes", json={"accountable_person_id": person})
            await control.post(
                "/schools/1000/transactions", json={"accountable_person_id": person, "amount": "75"}
            )
            await wait_for(lambda: len(receiver.received) >= 2, what="two webhooks")
            await wait_for(
                lambda: types_after(redis, 1000, 0, {"promise.created", "note.created"}), what="all"
            )
            await asyncio.sleep(2.5)
    verifier = Webhook(created.json()["secret"])
    bodies = [verifier.verify(r.body, r.headers) for r in receiver.received]
    assert sorted(b["type"] for b in bodies) == ["balance.updated", "transaction.created"]


NEW_TYPES = {
    f"{prefix}.{kind}"
    for prefix in ("balance", "promise", "note")
    for kind in ("created", "updated", "removed")
} | {"transaction.created", "transaction.removed"}


async def test_every_new_event_type_arrives_signed_at_a_subscriber(
    redis: aioredis.Redis, redis_url: str, simulator_factory: Any
) -> None:
    sim = simulator_factory(schools=1, learners=40, debtors=30, seed=36)
    control = httpx.AsyncClient(base_url=sim.control_url)
    receiver = Receiver()
    settings = bridge_settings(redis_url, sim.base_url, BRIDGE_RESOURCES="all")
    with ThreadedServer(receiver) as hook:
        async with running_bridge(settings) as services, api(services) as client:
            created = await client.post("/v1/subscriptions", json={"url": f"{hook.url}/d6"})
            assert created.status_code == 201, created.text
            await wait_for(lambda: polled(services, 1000), what="the baseline")
            # A new family: its first invoice makes its age-analysis row (balance.created) ...
            debtor = (
                await control.post("/schools/1000/accountablepersons", json={"first_name": "Lindiwe"})
            ).json()
            person = int(debtor["accountable_person_id"])
            invoice = {"accountable_person_id": person, "transaction_type_id": 5, "amount": "1200"}
            await control.post("/schools/1000/transactions", json=invoice)
            promise = (
                await control.post("/schools/1000/promises", json={"accountable_person_id": person})
            ).json()
            note = (await control.post("/schools/1000/notes", json={"accountable_person_id": person})).json()
            await wait_for(
                lambda: types_after(redis, 1000, 0, {"balance.created", "promise.created", "note.created"}),
                what="the new family's records",
            )
            # ... then everything of it changes and goes.
            paid = {"accountable_person_id": person, "amount": "1200"}
            await control.post("/schools/1000/transactions", json=paid)  # balance and promise updated
            await control.delete(f"/schools/1000/notes/{note['note_id']}")  # note.updated (Deleted)
            await wait_for(
                lambda: types_after(redis, 1000, 0, {"balance.updated", "promise.updated", "note.updated"}),
                what="the updates",
            )
            await control.delete(f"/schools/1000/promises/{promise['promise_to_pay_id']}")
            await control.delete(f"/schools/1000/notes/{note['note_id']}", params={"purge": "true"})
            keys = [t["key"] for t in (await control.get("/schools/1000/transactions")).json()["data"]]
            await control.delete(f"/schools/1000/transactions/{keys[-1]}")
            await control.delete(f"/schools/1000/accountablepersons/{person}")  # the family leaves
            events = await wait_for(lambda: types_after(redis, 1000, 0, NEW_TYPES), what="every new type")
            await wait_for(lambda: len(receiver.received) >= len(events), what="every event delivered")
    verifier = Webhook(created.json()["secret"])
    bodies = [verifier.verify(r.body, r.headers) for r in receiver.received]
    assert {b["type"] for b in bodies} >= NEW_TYPES
    by_type = {b["type"]: b for b in bodies}
    assert by_type["balance.created"]["resource_id"] == str(person)
    assert by_type["note.updated"]["changes"]["status"] == {"old": "Created", "new": "Deleted"}
    assert by_type["balance.removed"]["data"]["accountable_person_id"] == person
