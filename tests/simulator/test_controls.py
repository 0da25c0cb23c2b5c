"""The `/_sim/` controls: counters, schools, records and churn."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import httpx

from bridge.testing.servers import SimulatorServer
from tests.simulator.helpers import CREDENTIALS, DEBTORS, INTEGRATIONS, LEARNERS, control, scan


async def test_stats_count_api_requests_only(
    simulator: SimulatorServer, d6: httpx.AsyncClient, http: httpx.AsyncClient
) -> None:
    before = time.time()
    await scan(d6, LEARNERS, {"limit": 50, "all_accounts": 1})
    await d6.get(f"{LEARNERS}/1")
    await d6.get(DEBTORS, params={"limit": 99})
    await d6.get(INTEGRATIONS)
    await http.get(simulator.base_url + DEBTORS, headers={**CREDENTIALS, "HTTP-X-SCHOOLID": "1001"})
    await control(http, "GET", f"{simulator.control_url}/faults")

    stats = await control(http, "GET", f"{simulator.control_url}/stats")
    assert stats == {
        "total": 7,
        "by_endpoint": {
            "GET /v2/finplus/debtmanagement/learners": 3,
            "GET /v2/finplus/debtmanagement/learners/{id}": 1,
            "GET /v2/finplus/debtmanagement/accountablepersons": 2,
            "GET /v2/settings/clientintegrations": 1,
        },
        "by_status": {"200": 6, "400": 1},
        "by_school": {"1000": 6, "1001": 1},
    }
    log = (await control(http, "GET", f"{simulator.control_url}/requests"))["requests"]
    assert len(log) == 7
    assert log[0]["t"] >= before
    assert log[0]["method"] == "GET"
    assert log[0]["path"] == "/api" + LEARNERS
    assert log[0]["query"] == {"limit": "50", "all_accounts": "1"}
    assert log[0]["school_id"] == 1000
    assert log[1]["query"]["cursor"]
    assert log[4]["status"] == 400

    await control(http, "POST", f"{simulator.control_url}/stats/reset")
    assert (await control(http, "GET", f"{simulator.control_url}/stats"))["total"] == 0
    assert (await control(http, "GET", f"{simulator.control_url}/requests"))["requests"] == []


async def test_add_authorise_and_revoke_a_school(simulator: SimulatorServer, http: httpx.AsyncClient) -> None:
    created = await http.post(
        f"{simulator.control_url}/schools", json={"name": "Laerskool Oos", "learners": 5, "debtors": 4}
    )
    assert created.status_code == 201
    school = created.json()
    assert school["school_id"] == 1003
    assert school["school_name"] == "Laerskool Oos"
    assert (school["learners"], school["debtors"]) == (5, 4)
    assert [(i["api_type_id"], i["activated_by_integrator"]) for i in school["integrations"]] == [(8, "No")]

    client = httpx.AsyncClient(
        base_url=simulator.base_url, headers={**CREDENTIALS, "HTTP-X-SCHOOLID": "1003"}
    )
    async with client:
        listed, _ = await scan(client, LEARNERS, {"all_accounts": 1})
        assert len(listed) == 5
        school = await control(
            http, "POST", f"{simulator.control_url}/schools/1003/authorise", {"api_type_id": 9}
        )
        assert [i["api_type_id"] for i in school["integrations"]] == [8, 9]
        school = await control(
            http, "POST", f"{simulator.control_url}/schools/1003/revoke", {"api_type_id": 8}
        )
        assert [i["api_type_id"] for i in school["integrations"]] == [9]
        integrations, _ = await scan(client, INTEGRATIONS, {"school_id": 1003})
        assert [r["api_type_id"] for r in integrations] == [9]
        await control(http, "POST", f"{simulator.control_url}/schools/1003/revoke")
        assert (await client.get(LEARNERS)).status_code == 401
        assert (await scan(client, INTEGRATIONS, {"school_id": 1003}))[0] == []

    unauthorised = await control(
        http, "POST", f"{simulator.control_url}/schools", {"school_id": 2000, "authorised": False}
    )
    assert unauthorised["integrations"] == []
    duplicate = await http.post(f"{simulator.control_url}/schools", json={"school_id": 2000})
    assert duplicate.status_code == 409
    missing = await http.post(f"{simulator.control_url}/schools/5555/authorise", json={"api_type_id": 8})
    assert missing.status_code == 404


async def test_records_can_be_read_added_changed_and_removed(
    simulator: SimulatorServer, d6: httpx.AsyncClient, http: httpx.AsyncClient
) -> None:
    base = f"{simulator.control_url}/schools/1000"
    truth = (await control(http, "GET", f"{base}/accountablepersons"))["data"]
    assert truth == (await scan(d6, DEBTORS, {"all_accounts": 1, "limit": 50}))[0]
    learners = (await control(http, "GET", f"{base}/learners"))["data"]
    assert learners == (await scan(d6, LEARNERS, {"all_accounts": 1, "limit": 50}))[0]

    created = await http.post(
        f"{base}/accountablepersons", json={"first_name": "Thandeka", "last_name": "Zulu"}
    )
    assert created.status_code == 201
    debtor = created.json()
    assert debtor["first_name"] == "Thandeka"
    assert int(debtor["accountable_person_id"]) > max(int(d["accountable_person_id"]) for d in truth)
    assert set(debtor) == set(truth[0])
    person = int(debtor["accountable_person_id"])

    learner = await control(http, "POST", f"{base}/learners", {"accountable_person_id": person, "grade": "R"})
    assert learner["learner_id"] == 121
    assert (learner["accountable_person_id"], learner["debtor_code"]) == (person, debtor["debtor_code"])
    nested = (await d6.get(f"{DEBTORS}/{person}", params={"include_learners": 1})).json()["learners"]
    assert [n["learner_id"] for n in nested] == ["121"]

    changed = await control(http, "PATCH", f"{base}/learners/121", {"grade": "1", "new_field": "kept"})
    assert changed["grade"] == "1"
    assert (await d6.get(f"{LEARNERS}/121")).json() == changed
    await control(http, "PATCH", f"{base}/accountablepersons/{person}", {"debtor_code": "9999"})
    assert (await d6.get(f"{LEARNERS}/121")).json()["debtor_code"] == "9999"

    assert (await http.delete(f"{base}/learners/121")).status_code == 204
    assert (await d6.get(f"{LEARNERS}/121")).status_code == 404
    assert (await http.delete(f"{base}/accountablepersons/{person}")).status_code == 204
    assert (await d6.get(f"{DEBTORS}/{person}")).status_code == 404

    assert (await http.patch(f"{base}/learners/121", json={"grade": "2"})).status_code == 404
    assert (await http.delete(f"{base}/learners/121")).status_code == 404
    assert (await http.get(f"{simulator.control_url}/schools/9999/learners")).status_code == 404
    assert (await http.get(f"{base}/teachers")).status_code == 404


async def test_churn_changes_records_in_the_background(
    simulator_factory: Callable[..., SimulatorServer], http: httpx.AsyncClient
) -> None:
    sim = simulator_factory(schools=2, learners=50, debtors=40, churn=0.0)
    url = f"{sim.control_url}/schools/1000/learners"
    before = (await control(http, "GET", url))["data"]
    await asyncio.sleep(0.3)
    assert (await control(http, "GET", url))["data"] == before, "no churn at rate 0"

    answer = await control(http, "POST", f"{sim.control_url}/churn", {"rate": 400})
    assert answer["rate"] == 400
    await asyncio.sleep(0.5)
    stopped = await control(http, "POST", f"{sim.control_url}/churn", {"rate": 0})
    assert stopped["applied"] >= 50
    assert (await control(http, "GET", url))["data"] != before
    assert (await http.post(f"{sim.control_url}/churn", json={"rate": -1})).status_code == 400


async def test_churn_from_config_starts_with_the_app(
    simulator_factory: Callable[..., SimulatorServer], http: httpx.AsyncClient
) -> None:
    sim = simulator_factory(schools=1, learners=20, debtors=20, churn=200.0)
    await asyncio.sleep(0.4)
    applied = (await control(http, "POST", f"{sim.control_url}/churn", {"rate": 0}))["applied"]
    assert applied >= 20
