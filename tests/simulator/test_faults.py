"""Fault injection through `/_sim/faults`: every kind, its scope and its `times` budget."""

from __future__ import annotations

import json
import time
from typing import Any

import httpx
import pytest

from bridge.testing.servers import SimulatorServer
from tests.simulator.helpers import DEBTORS, INTEGRATIONS, LEARNERS, control, scan


@pytest.fixture
async def faults(simulator: SimulatorServer, http: httpx.AsyncClient) -> Any:
    """Set a fault set: `await faults(error_rate=1.0)`."""

    async def apply(**spec: Any) -> dict[str, Any]:
        result: dict[str, Any] = await control(http, "POST", f"{simulator.control_url}/faults", spec)
        return result

    return apply


async def pages(d6: httpx.AsyncClient, count: int) -> list[httpx.Response]:
    """Request up to `count` pages of learners (limit 50), following cursors while answers allow."""
    answers: list[httpx.Response] = []
    cursor = None
    for _ in range(count):
        params: dict[str, Any] = {"limit": 50, "all_accounts": 1}
        if cursor:
            params["cursor"] = cursor
        response = await d6.get(LEARNERS, params=params)
        answers.append(response)
        if response.status_code != 200:
            break
        try:
            cursor = response.json()["meta"].get("next_cursor")
        except json.JSONDecodeError:
            break
        if cursor is None:
            break
    return answers


async def test_faults_can_be_shown_and_cleared(
    simulator: SimulatorServer, http: httpx.AsyncClient, d6: httpx.AsyncClient, faults: Any
) -> None:
    shown = await faults(error_rate=1.0, error_status=503)
    assert shown["faults"]["error_status"] == 503
    assert (await control(http, "GET", f"{simulator.control_url}/faults"))["faults"]["error_rate"] == 1.0
    assert (await d6.get(LEARNERS)).status_code == 503
    cleared = await control(http, "DELETE", f"{simulator.control_url}/faults")
    assert cleared["faults"]["error_rate"] == 0.0
    assert (await d6.get(LEARNERS)).status_code == 200
    bad = await http.post(f"{simulator.control_url}/faults", json={"error_rate": 2})
    assert bad.status_code == 400
    typo = await http.post(f"{simulator.control_url}/faults", json={"eror_rate": 1})
    assert typo.status_code == 400


@pytest.mark.parametrize(
    ("style", "expected"),
    [
        ("v2", {"success": False, "message": "Internal Server Error"}),
        ("v1", {"error": "Internal Server Error", "error_description": "Simulated fault"}),
    ],
)
async def test_error_rate_answers_the_status_in_either_shape(
    d6: httpx.AsyncClient, faults: Any, style: str, expected: dict[str, Any]
) -> None:
    await faults(error_rate=1.0, error_body=style)
    response = await d6.get(LEARNERS)
    assert response.status_code == 500
    assert response.json() == expected


async def test_a_partial_error_rate_fails_some_requests(d6: httpx.AsyncClient, faults: Any) -> None:
    await faults(error_rate=0.5)
    statuses = [(await d6.get(LEARNERS)).status_code for _ in range(60)]
    assert 5 < statuses.count(500) < 55
    assert statuses.count(200) + statuses.count(500) == 60


async def test_latency_delays_answers(d6: httpx.AsyncClient, faults: Any) -> None:
    await faults(latency_ms=200)
    started = time.perf_counter()
    assert (await d6.get(LEARNERS)).status_code == 200
    assert time.perf_counter() - started >= 0.19


async def test_fail_on_page_fails_that_page_of_every_scan(d6: httpx.AsyncClient, faults: Any) -> None:
    await faults(fail_on_page=2, error_status=503)
    for _ in range(2):
        answers = await pages(d6, 5)
        assert [a.status_code for a in answers] == [200, 503]


async def test_times_limits_how_many_requests_are_faulted(d6: httpx.AsyncClient, faults: Any) -> None:
    await faults(fail_on_page=2, times=1)
    assert [a.status_code for a in await pages(d6, 5)] == [200, 500]
    assert [a.status_code for a in await pages(d6, 5)] == [200, 200, 200]
    await faults(error_rate=1.0, times=2)
    assert [(await d6.get(LEARNERS)).status_code for _ in range(4)] == [500, 500, 200, 200]


async def test_garble_on_page_sends_truncated_json_with_200(d6: httpx.AsyncClient, faults: Any) -> None:
    await faults(garble_on_page=3)
    answers = await pages(d6, 5)
    assert [a.status_code for a in answers] == [200, 200, 200]
    with pytest.raises(json.JSONDecodeError):
        answers[2].json()


async def test_garble_rate_garbles_any_answer(d6: httpx.AsyncClient, faults: Any) -> None:
    await faults(garble_rate=1.0)
    response = await d6.get(f"{LEARNERS}/1")
    assert response.status_code == 200
    with pytest.raises(json.JSONDecodeError):
        response.json()


async def test_wrong_shape_on_page_sends_valid_json_of_the_wrong_shape(
    d6: httpx.AsyncClient, faults: Any
) -> None:
    await faults(wrong_shape_on_page=1)
    response = await d6.get(LEARNERS)
    assert response.status_code == 200
    assert not isinstance(response.json()["data"], list)


async def test_rate_limit_answers_429_with_retry_after(d6: httpx.AsyncClient, faults: Any) -> None:
    await faults(rate_limit_rps=5, retry_after="2")
    answers = [await d6.get(LEARNERS) for _ in range(8)]
    assert [a.status_code for a in answers] == [200] * 5 + [429] * 3
    assert answers[-1].headers["retry-after"] == "2"
    assert answers[-1].json() == {
        "success": False,
        "message": "Rate limits have been reached, please slow down your requests",
    }


async def test_rate_limit_without_retry_after_sends_no_header(d6: httpx.AsyncClient, faults: Any) -> None:
    await faults(rate_limit_rps=1)
    assert (await d6.get(LEARNERS)).status_code == 200
    limited = await d6.get(LEARNERS)
    assert limited.status_code == 429
    assert "retry-after" not in limited.headers


async def test_repeat_cursor_sends_the_same_next_cursor_forever(d6: httpx.AsyncClient, faults: Any) -> None:
    await faults(repeat_cursor=True)
    first = (await d6.get(LEARNERS, params={"limit": 50})).json()["meta"]["next_cursor"]
    second = (await d6.get(LEARNERS, params={"limit": 50, "cursor": first})).json()["meta"]["next_cursor"]
    third = (await d6.get(LEARNERS, params={"limit": 50, "cursor": second})).json()["meta"]["next_cursor"]
    assert first == second == third


async def test_faults_can_be_limited_to_a_school_and_an_endpoint(
    simulator: SimulatorServer, d6: httpx.AsyncClient, faults: Any
) -> None:
    await faults(error_rate=1.0, school_id=1001, endpoint="accountablepersons")
    assert (await d6.get(DEBTORS)).status_code == 200
    other = {"HTTP-X-SCHOOLID": "1001"}
    assert (await d6.get(LEARNERS, headers=other)).status_code == 200
    assert (await d6.get(DEBTORS, headers=other)).status_code == 500
    assert (await d6.get(INTEGRATIONS)).status_code == 200


async def test_a_failed_scan_is_visible_in_the_request_log(
    simulator: SimulatorServer, d6: httpx.AsyncClient, http: httpx.AsyncClient, faults: Any
) -> None:
    await faults(fail_on_page=3, times=1)
    with pytest.raises(AssertionError):
        await scan(d6, LEARNERS, {"limit": 50, "all_accounts": 1})
    log = (await control(http, "GET", f"{simulator.control_url}/requests"))["requests"]
    assert [entry["status"] for entry in log] == [200, 200, 500]
