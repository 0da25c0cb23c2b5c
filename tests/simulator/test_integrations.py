"""Client integrations: the list, and the change-state call with every answer d6 documents."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import httpx
import pytest

from bridge.testing.servers import SimulatorServer
from tests.simulator.helpers import CREDENTIALS, INTEGRATIONS, scan

INTEGRATION_FIELDS = [
    "school_id", "school_name", "admin_email_address", "telephone_calling_code", "telephone_number",
    "api_type_id", "api_type", "activated_by_integrator",
]  # fmt: skip


@pytest.fixture
def sim(simulator_factory: Callable[..., SimulatorServer]) -> SimulatorServer:
    """Four schools, two API types each; the last school authorised but not yet activated."""
    return simulator_factory(schools=4, learners=2, debtors=2, inactive_schools=1, api_type_ids=(8, 9))


@pytest.fixture
async def client(sim: SimulatorServer) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=sim.base_url, headers=CREDENTIALS) as client:
        yield client


async def test_list_has_one_record_per_school_and_api_type(client: httpx.AsyncClient) -> None:
    records, pages = await scan(client, INTEGRATIONS, {"limit": 3})
    assert len(pages) == 3
    assert [(r["school_id"], r["api_type_id"]) for r in records] == [
        (school, api_type) for school in (1000, 1001, 1002, 1003) for api_type in (8, 9)
    ]
    assert all(list(r) == INTEGRATION_FIELDS for r in records)
    assert {r["api_type"] for r in records if r["api_type_id"] == 8} == {"Debt manager"}
    assert [r["activated_by_integrator"] for r in records if r["school_id"] == 1003] == ["No", "No"]
    assert {r["activated_by_integrator"] for r in records if r["school_id"] != 1003} == {"Yes"}


async def test_list_filters_on_school_and_api_type(client: httpx.AsyncClient) -> None:
    records, _ = await scan(client, INTEGRATIONS, {"school_id": 1001, "api_type_id": 8})
    assert [(r["school_id"], r["api_type_id"]) for r in records] == [(1001, 8)]
    bad = await client.get(INTEGRATIONS, params={"school_id": "x", "api_type_id": "y", "limit": 60})
    assert bad.status_code == 400
    assert bad.json()["validation_errors"] == {
        "school_id": "The School id must be integer",
        "api_type_id": "The Api type id must be integer",
        "limit": "The Limit maximum is 50",
    }


async def test_activate_then_already_activated_then_deactivate(client: httpx.AsyncClient) -> None:
    body = {"school_id": 1003, "api_type_id": 8, "state": True}
    first = await client.post(INTEGRATIONS, json=body)
    assert first.status_code == 200
    assert first.json()["success"] is True
    assert first.json()["message"] == "Integration successfully activated"
    assert first.json()["data"]["activated_by_integrator"] == "Yes"
    assert list(first.json()["data"]) == INTEGRATION_FIELDS

    again = await client.post(INTEGRATIONS, json={**body, "state": 1})
    assert again.status_code == 400
    assert again.json()["message"] == "Integration already activated"
    assert again.json()["data"]["school_id"] == 1003

    off = await client.patch(INTEGRATIONS, json={**body, "state": 0})
    assert off.status_code == 200
    assert off.json()["message"] == "Integration successfully deactivated"
    already_off = await client.post(INTEGRATIONS, json={**body, "state": False})
    assert already_off.json()["message"] == "Integration already deactivated"
    listed, _ = await scan(client, INTEGRATIONS, {"school_id": 1003, "api_type_id": 8})
    assert listed[0]["activated_by_integrator"] == "No"


async def test_change_state_for_a_school_that_has_not_authorised(
    client: httpx.AsyncClient, sim: SimulatorServer
) -> None:
    async with httpx.AsyncClient() as http:
        await http.post(f"{sim.control_url}/schools/1002/revoke", json={"api_type_id": 9})
    for school_id, api_type_id in ((1002, 9), (4242, 8)):
        response = await client.post(
            INTEGRATIONS, json={"school_id": school_id, "api_type_id": api_type_id, "state": True}
        )
        assert response.status_code == 401
        assert response.json() == {"success": False, "message": "Client has not authorised access"}


async def test_change_state_validation(client: httpx.AsyncClient) -> None:
    response = await client.post(INTEGRATIONS, json={"school_id": 1000, "api_type_id": 777, "state": "yes"})
    assert response.status_code == 400
    assert response.json() == {
        "success": False,
        "message": "Validation Failed",
        "validation_errors": {
            "api_type_id": "The api_type_id is invalid",
            "state": "The State must be a boolean",
        },
    }
    empty = await client.post(INTEGRATIONS, content=b"not json")
    assert set(empty.json()["validation_errors"]) == {"school_id", "api_type_id", "state"}


async def test_patch_only_answers_405_to_post(simulator_factory: Callable[..., SimulatorServer]) -> None:
    sim = simulator_factory(schools=1, learners=1, debtors=1, inactive_schools=1, patch_only=True)
    async with httpx.AsyncClient(base_url=sim.base_url, headers=CREDENTIALS) as client:
        body = {"school_id": 1000, "api_type_id": 8, "state": 1}
        post = await client.post(INTEGRATIONS, json=body)
        assert post.status_code == 405
        assert "PATCH" in post.headers["allow"]
        patch = await client.patch(INTEGRATIONS, json=body)
        assert patch.status_code == 200
        assert patch.json()["data"]["activated_by_integrator"] == "Yes"
