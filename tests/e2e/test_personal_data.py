"""Personal data end to end (docs/personal-data.md), on the simulator and real receivers: a subscriber
configured for the minimum receives nothing else; a redacted value appears in no delivered body, log line
or attempt log; an erasure leaves nothing of the record in any API answer, delivery or log line, and later
polls neither re-create nor remove it; on Redis Cluster too."""

from __future__ import annotations

import io
import secrets
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import Any

import httpx
import pytest
from standardwebhooks.webhooks import Webhook

from bridge import metrics
from bridge.app import Services
from bridge.catalogue import BY_PREFIX
from bridge.logs import configure_logging
from bridge.testing.receivers import Answer, Receiver
from bridge.testing.redis import redis_cluster
from bridge.testing.servers import SimulatorServer, ThreadedServer
from bridge.testing.settings import bridge_settings
from bridge.testing.waiting import wait_for
from tests.e2e.helpers import api, running_bridge

SCHOOL = 1000
MINIMAL_FIELDS = {"debtor": ["debtor_code", "email_address"]}


@contextmanager
def captured_logs() -> Iterator[io.StringIO]:
    """Every log line of the bridge, as JSON, while the block runs (structlog and the stdlib)."""
    stream = io.StringIO()
    configure_logging(level="debug", fmt="json", stream=stream)
    try:
        yield stream
    finally:
        configure_logging(level="warning", fmt="console")


@asynccontextmanager
async def bridge(redis_url: str, sim: SimulatorServer, **overrides: str) -> AsyncIterator[Services]:
    settings = bridge_settings(redis_url, sim.base_url, BRIDGE_EMIT_INITIAL_SNAPSHOT="true", **overrides)
    async with running_bridge(settings) as services:
        yield services


async def everything(client: httpx.AsyncClient, path: str, **params: Any) -> list[dict[str, Any]]:
    """Every item of a list endpoint, page after page."""
    items: list[dict[str, Any]] = []
    cursor = None
    while True:
        query = {**params, "limit": 500, **({"cursor": cursor} if cursor else {})}
        page = (await client.get(path, params=query)).json()
        items += page["data"]
        cursor = page["meta"].get("next_cursor")
        if not cursor:
            return items


def allowed(resource: str, field: str) -> bool:
    entry = BY_PREFIX.get(resource)
    identity = entry.identity if entry is not None else None
    return field.endswith("_id") or field == identity or field in MINIMAL_FIELDS.get(resource, [])


@pytest.mark.usefixtures("redis")  # flushed: a school's first poll is a first poll
async def test_a_minimal_subscriber_gets_nothing_else_and_redacted_values_go_nowhere(
    redis_url: str, simulator_factory: Any
) -> None:
    sim: SimulatorServer = simulator_factory(schools=1, learners=12, debtors=15, seed=21)
    control = httpx.AsyncClient(base_url=sim.control_url)
    debtors = (await control.get(f"/schools/{SCHOOL}/accountablepersons")).json()["data"]
    id_numbers = {d["id_number"] for d in debtors if d["id_number"]}
    assert len(id_numbers) >= 3
    full, minimal, masked = Receiver(), Receiver(), Receiver()
    with (
        captured_logs() as logs,
        ThreadedServer(full) as full_hook,
        ThreadedServer(minimal) as minimal_hook,
        ThreadedServer(masked) as masked_hook,
    ):
        async with bridge(redis_url, sim) as services, api(services) as client:
            subs = {}
            for name, url, options in (
                ("full", full_hook.url, {}),
                ("minimal", minimal_hook.url, {"fields": MINIMAL_FIELDS, "redact": ["id_number"]}),
                ("masked", masked_hook.url, {"redact": ["id_number"]}),
            ):
                created = await client.post("/v1/subscriptions", json={"url": f"{url}/d6", **options})
                assert created.status_code == 201, created.text
                subs[name] = created.json()
            # every debtor arrives (the first poll tells them all), then three kinds of change
            await wait_for(lambda: _count(full, "debtor.created") >= len(debtors), what="the first poll")
            target = next(d for d in debtors if d["id_number"])
            new_id_number = "9901015800085"
            pid = target["accountable_person_id"]
            await control.patch(f"/schools/{SCHOOL}/accountablepersons/{pid}", json={"employer": "Sasol"})
            await wait_for(lambda: _count(full, "debtor.updated") >= 1, what="the employer change")
            await control.patch(
                f"/schools/{SCHOOL}/accountablepersons/{pid}",
                json={"id_number": new_id_number, "email_address": "moved@example.co.za"},
            )
            await wait_for(lambda: _count(full, "debtor.updated") >= 2, what="the email change")
            await wait_for(lambda: _count(masked, "debtor.updated") >= 2, what="the masked copies")
            await wait_for(lambda: _count(minimal, "debtor.updated") >= 1, what="the minimal copy")
            id_numbers.add(new_id_number)

            minimal_bodies = [
                Webhook(subs["minimal"]["secret"]).verify(r.body, r.headers) for r in minimal.received
            ]
            assert {b["type"] for b in minimal_bodies} >= {
                "debtor.created",
                "debtor.updated",
                "learner.created",
            }
            for body in minimal_bodies:
                assert all(allowed(body["resource"], f) for f in body.get("data", {})), body
                assert all(allowed(body["resource"], f) for f in body.get("changes") or {}), body
            [update] = [b for b in minimal_bodies if b["type"] == "debtor.updated"]
            assert update["changes"] == {
                "email_address": {"old": target["email_address"], "new": "moved@example.co.za"}
            }
            employer_event = next(
                b for b in (r.json for r in full.received) if b.get("changes", {}).get("employer")
            )
            detail = (await client.get(f"/v1/events/{employer_event['id']}")).json()
            states = {d["subscription_id"]: d["state"] for d in detail["deliveries"]}
            assert states[subs["minimal"]["id"]] == "skipped" and states[subs["full"]["id"]] == "delivered"

            masked_bodies = [
                Webhook(subs["masked"]["secret"]).verify(r.body, r.headers) for r in masked.received
            ]
            changed = next(b for b in masked_bodies if "id_number" in (b.get("changes") or {}))
            assert changed["changes"]["id_number"]["new"] == "*********0085"
            assert changed["data"]["id_number"] == "*********0085"

            answers = [
                (await client.get(f"/v1/subscriptions/{s['id']}/deliveries", params={"limit": 500})).text
                for s in subs.values()
            ]
        for id_number in id_numbers:
            for receiver in (minimal, masked):
                assert not any(id_number.encode() in r.body for r in receiver.received), id_number
            assert id_number not in logs.getvalue()
            assert not any(id_number in answer for answer in answers)
        assert any(id_number.encode() in r.body for r in full.received for id_number in id_numbers)
        assert '"delivery attempt"' in logs.getvalue()


@pytest.mark.usefixtures("redis")
async def test_an_erasure_leaves_nothing_of_the_record_anywhere(
    redis_url: str, simulator_factory: Any
) -> None:
    sim: SimulatorServer = simulator_factory(schools=1, learners=8, debtors=10, seed=23)
    await _erasure_story(redis_url, sim)


async def test_an_erasure_on_a_redis_cluster(simulator_factory: Any) -> None:
    sim: SimulatorServer = simulator_factory(schools=1, learners=8, debtors=10, seed=24)
    with redis_cluster() as url:
        await _erasure_story(url, sim, BRIDGE_REDIS_CLUSTER="true")


async def _erasure_story(redis_url: str, sim: SimulatorServer, **overrides: str) -> None:
    control = httpx.AsyncClient(base_url=sim.control_url)
    debtors = (await control.get(f"/schools/{SCHOOL}/accountablepersons")).json()["data"]
    target, other = debtors[0], debtors[1]
    pid = int(target["accountable_person_id"])
    marker = f"erase-me-{secrets.token_hex(4)}@example.co.za"
    secret_values = [marker, target["last_name"] + "-" + secrets.token_hex(3)]
    ok, failing, held = (
        Receiver(),
        Receiver(lambda r, _n: Answer(status=500, body=r.body)),
        Receiver(),
    )
    before = metrics.ERASURES.labels(resource="debtor")._value.get()
    with (
        captured_logs() as logs,
        ThreadedServer(ok) as ok_hook,
        ThreadedServer(failing) as failing_hook,
        ThreadedServer(held) as held_hook,
    ):
        async with bridge(redis_url, sim, **overrides) as services, api(services) as client:
            subs = {}
            for name, url in (("ok", ok_hook.url), ("failing", failing_hook.url), ("held", held_hook.url)):
                created = await client.post(
                    "/v1/subscriptions", json={"url": f"{url}/d6", "event_types": ["debtor.*"]}
                )
                subs[name] = created.json()
            await client.patch(f"/v1/subscriptions/{subs['held']['id']}", json={"enabled": False})
            await wait_for(lambda: _count(ok, "debtor.created") >= len(debtors), what="the first poll")
            await control.patch(
                f"/schools/{SCHOOL}/accountablepersons/{pid}",
                json={"email_address": marker, "last_name": secret_values[1]},
            )
            await control.patch(
                f"/schools/{SCHOOL}/accountablepersons/{other['accountable_person_id']}",
                json={"employer": "Sasol"},
            )
            await wait_for(lambda: _count(ok, "debtor.updated") >= 2, what="both updates delivered")
            dead = await wait_for(
                lambda: _dead_of(client, subs["failing"]["id"], pid), what="the failing copy dead-lettered"
            )
            assert dead

            answer = await client.post(
                "/v1/erasure", json={"school_id": SCHOOL, "resource": "debtor", "record_id": str(pid)}
            )
            assert answer.status_code == 202, answer.text
            counts = answer.json()
            assert counts["events"] == 2 and counts["snapshot"] is True  # created and updated
            # the failing subscription's two (dead, or waiting behind a dead one) and the held one's two
            assert counts["dead_letters"] >= 1 and counts["dead_letters"] + counts["deliveries"] == 4
            erased_at = time.time()

            events = await everything(client, "/v1/events", school_id=SCHOOL)
            mine = [e for e in events if e["resource"] == "debtor" and e["resource_id"] == str(pid)]
            assert [e["type"] for e in mine] == ["debtor.updated", "debtor.created"]
            assert all(e["data"] == {"erased": True} for e in mine)
            assert mine[0]["changes"] == {"erased": True} and "changes" not in mine[1]
            assert all(e["sequence"] > 0 and e["timestamp"] for e in mine)
            for event in mine:
                detail = (await client.get(f"/v1/events/{event['id']}")).json()
                states = {d["subscription_id"]: d["state"] for d in detail["deliveries"]}
                assert states[subs["failing"]["id"]] == "erased" and states[subs["held"]["id"]] == "erased"
                assert states[subs["ok"]["id"]] == "delivered"
            redeliver = await client.post(f"/v1/events/{mine[0]['id']}/redeliver")
            assert redeliver.status_code == 400 and "erased" in redeliver.json()["detail"]

            # what the bridge still holds goes out; nothing of the record does
            await client.patch(f"/v1/subscriptions/{subs['held']['id']}", json={"enabled": True})
            await client.post("/v1/dead-letters/retry", json={})
            await client.post(
                f"/v1/subscriptions/{subs['ok']['id']}/replay", json={"since": "2020-01-01T00:00:00Z"}
            )
            await wait_for(
                lambda: _count(held, "debtor.updated") >= 1, what="the other update, held till now"
            )
            # d6 still has it: polls see no change; a change in d6 is not told; nor is its removal
            await control.patch(f"/schools/{SCHOOL}/accountablepersons/{pid}", json={"employer": "Sasol"})
            await _polled_after(services, time.time())
            await control.delete(f"/schools/{SCHOOL}/accountablepersons/{pid}")
            await _polled_after(services, time.time())
            events = await everything(client, "/v1/events", school_id=SCHOOL)
            assert [
                e["type"] for e in events if e["resource_id"] == str(pid) and e["resource"] == "debtor"
            ] == [
                "debtor.updated",
                "debtor.created",
            ]
            assert not await services.snapshots.has_record(SCHOOL, "debtor", str(pid))

            again = await client.post(
                "/v1/erasure", json={"school_id": SCHOOL, "resource": "debtors", "record_id": str(pid)}
            )
            assert again.status_code == 202, again.text
            assert {
                k: again.json()[k] for k in ("events", "deliveries", "dead_letters", "handoff", "snapshot")
            } == {"events": 0, "deliveries": 0, "dead_letters": 0, "handoff": 0, "snapshot": False}
            unknown = await client.post(
                "/v1/erasure", json={"school_id": SCHOOL, "resource": "debtor", "record_id": "999999"}
            )
            assert unknown.status_code == 404 and "999999" in unknown.json()["detail"]
            bad = await client.post(
                "/v1/erasure", json={"school_id": SCHOOL, "resource": "parents", "record_id": "1"}
            )
            assert bad.status_code == 400 and "resource" in bad.json()["detail"]

            answers = [
                (await client.get(path)).text
                for path in (
                    "/v1/dead-letters",
                    *(f"/v1/subscriptions/{s['id']}/deliveries" for s in subs.values()),
                    *(f"/v1/events/{e['id']}" for e in mine),
                )
            ]
            answers += [str(e) for e in events]
            metrics_page = (await client.get("/metrics")).text
        for value in secret_values:
            assert not any(value in text for text in answers), value
            for receiver in (ok, failing, held):
                assert not any(value.encode() in r.body for r in receiver.received if r.at >= erased_at), (
                    value
                )
            assert value not in logs.getvalue()
        assert '"record erased"' in logs.getvalue()
        assert metrics.ERASURES.labels(resource="debtor")._value.get() == before + 2
        assert "d6_bridge_erasures_total" in metrics_page


def _count(receiver: Receiver, event_type: str) -> int:
    return sum(1 for r in receiver.received if r.json["type"] == event_type)


async def _dead_of(client: httpx.AsyncClient, subscription_id: str, pid: int) -> bool:
    page = (
        await client.get("/v1/dead-letters", params={"subscription_id": subscription_id, "limit": 500})
    ).json()
    return sum(1 for d in page["data"] if d["event_type"].startswith("debtor.")) >= 2


async def _polled_after(services: Services, moment: float) -> None:
    """Wait for a complete debtor poll that started after `moment`."""

    async def done() -> bool:
        feed = (await services.status.get(SCHOOL)).feeds.get("debtors")
        if feed is None or feed.last_started is None or feed.last_success is None:
            return False
        return feed.last_started > moment and feed.last_success >= feed.last_started

    await wait_for(done, timeout=30, what="a debtor poll after the change")


@pytest.fixture(autouse=True)
def _quiet_logs() -> Iterator[None]:
    yield
    configure_logging(level="warning", fmt="console")
