"""Credentials, the school header, authorisation and unknown ids: d6's status codes and both error shapes."""

from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest

from bridge.testing.servers import SimulatorServer
from tests.simulator.helpers import CREDENTIALS, DEBTORS, INTEGRATIONS, LEARNERS, SCHOOLS, control


@pytest.mark.parametrize("path", [DEBTORS, LEARNERS, SCHOOLS, INTEGRATIONS])
async def test_wrong_or_missing_credentials_get_the_v1_error_shape(
    simulator: SimulatorServer, http: httpx.AsyncClient, path: str
) -> None:
    url = simulator.base_url + path
    wrong = await http.get(url, headers={**CREDENTIALS, "HTTP-X-PASSWORD": "nope", "HTTP-X-SCHOOLID": "1000"})
    assert wrong.status_code == 401
    assert set(wrong.json()) == {"error", "error_description"}
    missing = await http.get(url, headers={"HTTP-X-SCHOOLID": "1000"})
    assert missing.status_code == 401
    assert missing.json()["error"] == "Unauthorized"


async def test_credentials_can_be_configured(simulator_factory: Callable[..., SimulatorServer]) -> None:
    sim = simulator_factory(schools=1, learners=1, debtors=1, username="acme", password="s3cret")
    async with httpx.AsyncClient(base_url=sim.base_url) as client:
        good = await client.get(SCHOOLS, headers={"HTTP-X-USERNAME": "acme", "HTTP-X-PASSWORD": "s3cret"})
        sandbox = await client.get(SCHOOLS, headers=CREDENTIALS)
    assert good.status_code == 200
    assert sandbox.status_code == 401


@pytest.mark.parametrize(
    ("header", "message"),
    [(None, "The School id field is required"), ("abc", "The School id must be integer")],
)
async def test_school_header_is_validated(
    simulator: SimulatorServer, http: httpx.AsyncClient, header: str | None, message: str
) -> None:
    headers = dict(CREDENTIALS)
    if header is not None:
        headers["HTTP-X-SCHOOLID"] = header
    response = await http.get(simulator.base_url + LEARNERS, headers=headers)
    assert response.status_code == 400
    assert response.json() == {
        "success": False,
        "message": "Validation Failed",
        "validation_errors": {"school_id": message},
    }


async def test_unknown_and_revoked_schools_are_not_authorised(
    simulator: SimulatorServer, http: httpx.AsyncClient
) -> None:
    not_authorised = {"success": False, "message": "Client has not authorised access"}
    unknown = await http.get(simulator.base_url + DEBTORS, headers={**CREDENTIALS, "HTTP-X-SCHOOLID": "4242"})
    assert unknown.status_code == 401
    assert unknown.json() == not_authorised

    await control(http, "POST", f"{simulator.control_url}/schools/1001/revoke", {})
    revoked = await http.get(
        simulator.base_url + LEARNERS, headers={**CREDENTIALS, "HTTP-X-SCHOOLID": "1001"}
    )
    assert revoked.status_code == 401
    assert revoked.json() == not_authorised

    await control(http, "POST", f"{simulator.control_url}/schools/1001/authorise", {"api_type_id": 8})
    again = await http.get(simulator.base_url + LEARNERS, headers={**CREDENTIALS, "HTTP-X-SCHOOLID": "1001"})
    assert again.status_code == 200


@pytest.mark.parametrize(
    ("path", "message"),
    [
        (f"{DEBTORS}/999999", "The person does not exist"),
        (f"{LEARNERS}/999999", "The learner does not exist"),
        (f"{LEARNERS}/abc", "The learner does not exist"),
        (f"{SCHOOLS}/999999", "The school does not exist"),
    ],
)
async def test_unknown_ids_are_404(d6: httpx.AsyncClient, path: str, message: str) -> None:
    response = await d6.get(path)
    assert response.status_code == 404
    assert response.json() == {"success": False, "message": message}


async def test_unknown_path_is_404_and_wrong_method_is_405(d6: httpx.AsyncClient) -> None:
    assert (await d6.get("/v2/finplus/debtmanagement/nothing")).status_code == 404
    response = await d6.delete(LEARNERS)
    assert response.status_code == 405
    assert response.headers["allow"] == "GET"


async def test_non_boolean_flags_are_validation_errors(d6: httpx.AsyncClient) -> None:
    response = await d6.get(DEBTORS, params={"include_learners": "maybe", "debtor_code": "A1"})
    assert response.status_code == 400
    assert response.json()["validation_errors"] == {
        "include_learners": "The Include learners must be a boolean",
        "debtor_code": "The Debtor code must be integer",
    }
