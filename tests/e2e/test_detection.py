"""Change detection end to end: the simulator over HTTP, a real Redis, the bridge's own wiring."""

from __future__ import annotations

import time
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis
from prometheus_client.parser import text_string_to_metric_families

from bridge.app import Services
from bridge.testing.servers import SimulatorServer
from bridge.testing.settings import bridge_settings
from bridge.testing.waiting import wait_for
from tests.e2e.helpers import api, running_bridge, school_events

SCHOOLS = (1000, 1001, 1002)
INACTIVE = 1002  # the simulator's last school starts authorised but not activated


async def types(redis: aioredis.Redis, school_id: int) -> list[str]:
    return [e.type for e in await school_events(redis, school_id)]


async def polled(services: Services, school_id: int, after: float = 0.0) -> bool:
    status = await services.status.get(school_id)
    return status.last_success is not None and status.last_success > after


async def test_first_run_is_silent_activates_and_then_reports_each_change(
    redis: aioredis.Redis, redis_url: str, simulator_factory: Any
) -> None:
    sim: SimulatorServer = simulator_factory(schools=3, learners=120, debtors=90, seed=3, inactive_schools=1)
    control = httpx.AsyncClient(base_url=sim.control_url)
    async with running_bridge(bridge_settings(redis_url, sim.base_url)) as services:
        # The first integrations list is a silent baseline; the inactive school is activated, and told.
        await wait_for(lambda: services.watcher.active_schools(), what="active schools")
        activated = await wait_for(lambda: types(redis, INACTIVE), what="activation event")
        assert activated == ["integration.activated"]
        for school in SCHOOLS[:2]:
            assert await types(redis, school) == []
        assert await services.watcher.active_schools() == set(SCHOOLS)
        d6_says = await httpx.AsyncClient().get(
            f"{sim.base_url}/v2/settings/clientintegrations",
            params={"school_id": INACTIVE},
            headers={"HTTP-X-USERNAME": "sandbox", "HTTP-X-PASSWORD": "sandbox"},
        )
        assert [i["activated_by_integrator"] for i in d6_says.json()["data"]] == ["Yes"]

        # Every school's first poll records a baseline without events.
        for school in SCHOOLS:
            await wait_for(lambda s=school: polled(services, s), what=f"first poll of {school}")
        assert await types(redis, 1000) == []
        status = await services.status.get(1000)
        assert (status.learners, status.debtors) == (120, 90)

        # Now each change in d6 is one event with the right content.
        learner = (await control.get("/schools/1000/learners")).json()["data"][5]
        old_grade = learner["grade"]
        new_grade = "12" if old_grade != "12" else "11"
        await control.patch(f"/schools/1000/learners/{learner['learner_id']}", json={"grade": new_grade})
        removed = (await control.get("/schools/1000/learners")).json()["data"][7]
        assert (await control.delete(f"/schools/1000/learners/{removed['learner_id']}")).status_code == 204
        created = (
            await control.post("/schools/1000/accountablepersons", json={"first_name": "Thandeka"})
        ).json()

        events = await wait_for(
            lambda: _at_least(redis, 1000, 3), timeout=15, what="three events of school 1000"
        )
        by_type = {e.type: e for e in events}
        assert sorted(by_type) == ["debtor.created", "learner.removed", "learner.updated"]
        updated = by_type["learner.updated"]
        assert updated.resource_id == str(learner["learner_id"])
        assert updated.changes is not None and set(updated.changes) == {"grade"}
        assert (updated.changes["grade"].old, updated.changes["grade"].new) == (old_grade, new_grade)
        assert updated.data["learner_id"] == learner["learner_id"] and updated.data["grade"] == new_grade
        assert by_type["learner.removed"].data["learner_id"] == removed["learner_id"]
        assert by_type["debtor.created"].data["first_name"] == "Thandeka"
        assert by_type["debtor.created"].resource_id == str(created["accountable_person_id"])
        assert [e.sequence for e in events] == list(range(1, len(events) + 1))

        # Later polls with no change emit nothing more.
        before = await services.status.get(1000)
        assert before.last_success is not None
        await wait_for(lambda: polled(services, 1000, before.last_success or 0), what="another poll")
        assert len(await school_events(redis, 1000)) == 3

        # The events are listed by the API, newest first, with filters and cursors.
        async with api(services) as client:
            await wait_for(lambda: _listed(client, 4), what="events listed")
            page = (await client.get("/v1/events", params={"limit": 2})).json()
            assert len(page["data"]) == 2 and page["meta"]["next_cursor"]
            rest = (await client.get("/v1/events", params={"cursor": page["meta"]["next_cursor"]})).json()
            listed = page["data"] + rest["data"]
            assert len(listed) == 4 and "next_cursor" not in rest["meta"]
            assert [e["id"] for e in listed] == sorted((e["id"] for e in listed), reverse=True)
            only = (await client.get("/v1/events", params={"type": "learner.updated"})).json()["data"]
            assert [e["id"] for e in only] == [updated.id]
            of_school = (await client.get("/v1/events", params={"school_id": INACTIVE})).json()["data"]
            assert [e["type"] for e in of_school] == ["integration.activated"]
            one = (await client.get(f"/v1/events/{updated.id}")).json()
            assert one["event"]["changes"]["grade"] == {"old": old_grade, "new": new_grade}
            assert (await client.get("/v1/events/evt_nope")).status_code == 404
            bad = await client.get("/v1/events", params={"type": "learner.changed"})
            assert bad.status_code == 400 and "learner.changed" in bad.json()["detail"]
            assert (await client.get("/v1/events", params={"cursor": "garbage"})).status_code == 400

            schools = (await client.get("/v1/schools")).json()["data"]
            assert [s["school_id"] for s in schools] == list(SCHOOLS)
            assert {s["state"] for s in schools} == {"active"}
            first = schools[0]
            assert first["learners"] == 119 and first["debtors"] == 91 and first["last_successful_poll"]
            assert first["integrations"][0]["activated"] is True
            assert (await client.post("/v1/schools/1000/poll")).status_code == 202
            assert (await client.post("/v1/schools/4242/poll")).status_code == 404
            anonymous = await client.get("/v1/schools", headers={"Authorization": "Bearer wrong"})
            assert anonymous.status_code == 401

            # The poll series move with each poll (the registry is per process, so compare, don't count).
            before_scrape = await scrape(client)
            await client.post("/v1/schools/1001/poll")
            await wait_for(lambda: _moved(client, before_scrape), what="poll metrics to move")
            after = await scrape(client)
            assert after[("d6_bridge_schools", (("state", "active"),))] == 3
            learner_requests = (
                'd6_bridge_d6_requests_total{endpoint="GET /v2/finplus/debtmanagement/learners",status="200"}'
            )
            assert learner_requests in (await client.get("/metrics")).text


async def scrape(client: httpx.AsyncClient) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = (await client.get("/metrics")).text
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


async def _moved(client: httpx.AsyncClient, before: dict[Any, float]) -> bool:
    after = await scrape(client)
    keys = [
        ("d6_bridge_polls_total", (("outcome", "ok"), ("resource", "school"))),
        ("d6_bridge_records_scanned_total", (("resource", "learner"),)),
        ("d6_bridge_poll_duration_seconds_count", (("resource", "learner"),)),
    ]
    return all(after.get(key, 0) > before.get(key, 0) for key in keys)


async def _at_least(redis: aioredis.Redis, school_id: int, count: int) -> Any:
    events = await school_events(redis, school_id)
    return events if len(events) >= count else None


async def _listed(client: httpx.AsyncClient, count: int) -> bool:
    return len((await client.get("/v1/events")).json()["data"]) >= count


async def test_a_failed_scan_changes_nothing_and_a_revoked_school_is_told(
    redis: aioredis.Redis, redis_url: str, simulator_factory: Any
) -> None:
    sim: SimulatorServer = simulator_factory(schools=2, learners=120, debtors=60, seed=5)
    control = httpx.AsyncClient(base_url=sim.control_url)
    async with running_bridge(bridge_settings(redis_url, sim.base_url)) as services:
        for school in (1000, 1001):
            await wait_for(lambda s=school: polled(services, s), what=f"first poll of {school}")
        # Every learner scan of school 1000 now fails on page 2, after many records: nothing may be removed.
        await control.post("/faults", json={"fail_on_page": 2, "school_id": 1000, "endpoint": "learners"})
        for learner in (await control.get("/schools/1000/learners")).json()["data"][:3]:
            await control.delete(f"/schools/1000/learners/{learner['learner_id']}")
        failed = await wait_for(lambda: _failed(services, 1000), what="a failed poll")
        assert "500" in (failed.last_error or "")
        assert await school_events(redis, 1000) == []
        # Once d6 answers again, the three removals are reported, and only they.
        await control.delete("/faults")
        events = await wait_for(lambda: _at_least(redis, 1000, 3), what="removals after recovery")
        assert [e.type for e in events] == ["learner.removed"] * 3

        # The school revokes access: its pair disappears and its data answers 401.
        await control.post("/schools/1001/revoke")
        revoked = await wait_for(lambda: _at_least(redis, 1001, 1), what="revocation")
        assert [e.type for e in revoked] == ["integration.revoked"]
        assert revoked[0].resource_id == "1001:8"
        await wait_for(lambda: _not_active(services, 1001), what="school 1001 dropped")
        # The scheduler takes the active set once the watcher's whole poll is done (its events committed).
        await wait_for(lambda: 1001 not in services.scheduler.schools, what="school 1001 no longer scheduled")


async def _failed(services: Services, school_id: int) -> Any:
    status = await services.status.get(school_id)
    return status if status.consecutive_failures else None


async def _not_active(services: Services, school_id: int) -> bool:
    return school_id not in await services.watcher.active_schools()


D6_AUTH = {"HTTP-X-USERNAME": "sandbox", "HTTP-X-PASSWORD": "sandbox"}


async def test_every_catalogue_type_with_normalised_ids(
    redis: aioredis.Redis, redis_url: str, simulator_factory: Any
) -> None:
    sim: SimulatorServer = simulator_factory(schools=2, learners=60, debtors=40, seed=12, inactive_schools=1)
    control = httpx.AsyncClient(base_url=sim.control_url)
    d6 = httpx.AsyncClient(base_url=sim.base_url, headers=D6_AUTH)
    settings = bridge_settings(redis_url, sim.base_url, BRIDGE_AUTO_ACTIVATE="false")
    async with running_bridge(settings) as services:
        await wait_for(lambda: polled(services, 1000), what="baseline of 1000")
        assert await services.watcher.active_schools() == {1000}  # 1001 waits: auto-activation is off

        # A new school authorises; 1001 is activated by hand, then deactivated again.
        await control.post("/schools", json={"school_id": 2000, "learners": 5, "debtors": 5})
        await d6.post(
            "/v2/settings/clientintegrations", json={"school_id": 1001, "api_type_id": 8, "state": True}
        )
        await wait_for(lambda: _at_least(redis, 1001, 1), what="1001 activated")
        await d6.post(
            "/v2/settings/clientintegrations", json={"school_id": 1001, "api_type_id": 8, "state": False}
        )

        # Records of school 1000: a learner appears, a debtor changes, another goes.
        await control.post("/schools/1000/learners", json={"first_name": "Nomsa"})
        debtors = (await control.get("/schools/1000/accountablepersons")).json()["data"]
        assert isinstance(debtors[0]["accountable_person_id"], str)  # d6 sends this id as a string
        await control.patch(
            f"/schools/1000/accountablepersons/{debtors[0]['accountable_person_id']}",
            json={"mobile_number": "0820000000"},
        )
        await control.delete(f"/schools/1000/accountablepersons/{debtors[1]['accountable_person_id']}")

        events_1000 = await wait_for(lambda: _at_least(redis, 1000, 3), what="record events of 1000")
        events_1001 = await wait_for(lambda: _at_least(redis, 1001, 2), what="1001 deactivated")
        events_2000 = await wait_for(lambda: _at_least(redis, 2000, 1), what="2000 authorised")
    assert sorted(e.type for e in events_1000) == ["debtor.removed", "debtor.updated", "learner.created"]
    assert [e.type for e in events_1001] == ["integration.activated", "integration.deactivated"]
    assert [e.type for e in events_2000] == ["integration.authorised"]
    assert events_2000[0].resource_id == "2000:8" and events_2000[0].data["activated_by_integrator"] == "No"
    updated = next(e for e in events_1000 if e.type == "debtor.updated")
    assert updated.changes is not None and set(updated.changes) == {"mobile_number"}
    assert updated.resource_id == str(debtors[0]["accountable_person_id"])
    assert updated.data["accountable_person_id"] == int(debtors[0]["accountable_person_id"])  # normalised
    removed = next(e for e in events_1000 if e.type == "debtor.removed")
    assert removed.data["accountable_person_id"] == int(debtors[1]["accountable_person_id"])
    created = next(e for e in events_1000 if e.type == "learner.created")
    assert created.data["first_name"] == "Nomsa" and isinstance(created.data["learner_id"], int)


BROKEN = {
    "500 on page 3": ({"fail_on_page": 3}, {}),
    "garbled JSON": ({"garble_on_page": 2}, {}),
    "timeout": ({"latency_ms": 800}, {"BRIDGE_D6_TIMEOUT_SECONDS": "0.3"}),
}


@pytest.mark.parametrize("fault", list(BROKEN))
async def test_a_broken_scan_emits_nothing_over_several_intervals(
    redis: aioredis.Redis, redis_url: str, simulator_factory: Any, fault: str
) -> None:
    faults, overrides = BROKEN[fault]
    sim: SimulatorServer = simulator_factory(schools=1, learners=140, debtors=30, seed=13)
    control = httpx.AsyncClient(base_url=sim.control_url)
    async with running_bridge(bridge_settings(redis_url, sim.base_url, **overrides)) as services:
        await wait_for(lambda: polled(services, 1000), what="baseline")
        await control.post("/faults", json={**faults, "school_id": 1000, "endpoint": "learners"})
        for learner in (await control.get("/schools/1000/learners")).json()["data"][:5]:
            await control.delete(f"/schools/1000/learners/{learner['learner_id']}")
        await wait_for(lambda: _failures(services, 1000, 3), timeout=60, what="three failed polls")
        assert await school_events(redis, 1000) == []
        await control.delete("/faults")
        events = await wait_for(lambda: _at_least(redis, 1000, 5), timeout=30, what="the removals")
    assert [e.type for e in events] == ["learner.removed"] * 5


async def _failures(services: Services, school_id: int, count: int) -> bool:
    return (await services.status.get(school_id)).consecutive_failures >= count


async def test_a_mass_removal_is_held_back_until_the_next_scan_agrees(
    redis: aioredis.Redis, redis_url: str, simulator_factory: Any
) -> None:
    sim: SimulatorServer = simulator_factory(schools=1, learners=60, debtors=30, seed=14)
    control = httpx.AsyncClient(base_url=sim.control_url)
    async with running_bridge(bridge_settings(redis_url, sim.base_url)) as services:
        await wait_for(lambda: polled(services, 1000), what="baseline")
        for learner in (await control.get("/schools/1000/learners")).json()["data"][:40]:
            await control.delete(f"/schools/1000/learners/{learner['learner_id']}")
        # The first scan that misses 40 of 60 holds them back: it emits nothing.
        deleted = time.time()
        await wait_for(lambda: _scanned_after(services, 1000, deleted), what="the scan that sees the removal")
        assert await school_events(redis, 1000) == []
        assert (await services.status.get(1000)).learners == 20
        # The next complete scan agrees, so the 40 removals go out.
        events = await wait_for(lambda: _at_least(redis, 1000, 40), what="the confirmed removals")
    assert [e.type for e in events] == ["learner.removed"] * 40


async def _scanned_after(services: Services, school_id: int, moment: float) -> bool:
    """A poll that started after `moment` has finished successfully."""
    status = await services.status.get(school_id)
    return (status.last_started or 0) > moment and (status.last_success or 0) > (status.last_started or 0)
