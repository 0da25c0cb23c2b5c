"""The client against the d6 simulator over real HTTP: pagination cost, faults, errors, change-state."""

from __future__ import annotations

import math
from collections.abc import Callable

import pytest

from bridge.d6 import D6Client, normalise, record_hash
from bridge.errors import (
    D6AuthError,
    D6MalformedResponse,
    D6NotAuthorised,
    D6NotFound,
    D6RateLimited,
    D6ServerError,
    D6TransportError,
    D6ValidationError,
)
from bridge.testing.servers import SimulatorServer
from tests.d6.helpers import FAST, Control, sim_settings

LEARNERS_GET = "GET /v2/finplus/debtmanagement/learners"
DEBTORS_GET = "GET /v2/finplus/debtmanagement/accountablepersons"
CHANGE = "/v2/settings/clientintegrations"


async def test_pagination_costs_exactly_the_floor(simulator_factory: Callable[..., SimulatorServer]) -> None:
    sim = simulator_factory(schools=1, learners=1234, debtors=1001, seed=3)
    control = Control(sim)
    async with D6Client(sim_settings(sim), **FAST) as d6:
        for _ in range(2):  # the first scan costs the floor too: no probing page
            await control.reset()
            learners = await d6.learners(1000)
            debtors = await d6.accountable_persons(1000)
            stats = await control.stats()
            assert stats["by_endpoint"] == {
                LEARNERS_GET: math.ceil(1234 / 50),  # 25
                DEBTORS_GET: math.ceil(1001 / 50),  # 21
            }
            assert stats["by_status"] == {"200": 46}
            assert len(learners) == 1234 and len({r["learner_id"] for r in learners}) == 1234
            assert len(debtors) == 1001
        truth = await control.call("GET", "/schools/1000/learners")
        assert sorted(record_hash(r) for r in learners) == sorted(record_hash(r) for r in truth["data"])
        requests = await control.requests()
        assert {r["query"]["limit"] for r in requests} == {"50"}
        assert all(r["query"].get("all_accounts") == "1" for r in requests)
    await control.aclose()


async def test_pages_carry_number_meta_and_normalised_records(client: D6Client) -> None:
    pages = [page async for page in client.scan_accountable_persons(1000, include_learners=True)]
    assert [page.number for page in pages] == [1, 2]
    assert [len(page.records) for page in pages] == [50, 40]
    assert pages[0].meta["max_allowed_limit"] == 50 and "next_cursor" in pages[0].meta
    assert "next_cursor" not in pages[-1].meta
    record = pages[0].records[0]
    assert isinstance(record["accountable_person_id"], int)
    assert all(isinstance(learner["learner_id"], int) for learner in record["learners"])
    assert "0000-00-00" not in repr(pages)


async def test_single_record_reads(client: D6Client) -> None:
    debtors = await client.accountable_persons(1000)
    first = debtors[0]
    one = await client.accountable_person(1000, first["accountable_person_id"])
    assert one == first
    learners = await client.learners(1000)
    assert await client.learner(1000, learners[0]["learner_id"]) == learners[0]
    school = await client.school(1000)
    assert school["school_id"] == 1000
    schools = await client.schools()
    assert [s["school_id"] for s in schools] == [1000, 1001, 1002]


async def test_loop_guard_on_a_repeated_cursor(client: D6Client, control: Control) -> None:
    await control.faults(repeat_cursor=True)
    with pytest.raises(D6MalformedResponse, match="repeated"):
        await client.learners(1000)
    stats = await control.stats()
    assert stats["total"] == 2  # page 1, then page 2 pointing at itself: stop, don't loop


async def test_bad_credentials_v1_shape(simulator: SimulatorServer) -> None:
    async with D6Client(sim_settings(simulator, d6_password="wrong"), **FAST) as d6:
        with pytest.raises(D6AuthError) as raised:
            await d6.client_integrations()
    assert type(raised.value) is D6AuthError
    assert raised.value.status_code == 401
    assert "Invalid username or password" in raised.value.message


async def test_revoked_school_is_not_authorised(client: D6Client, control: Control) -> None:
    await control.call("POST", "/schools/1001/revoke")
    with pytest.raises(D6NotAuthorised) as raised:
        await client.learners(1001)
    assert raised.value.school_id == 1001
    assert raised.value.message == "Client has not authorised access"
    with pytest.raises(D6NotAuthorised):
        await client.accountable_persons(4242)  # never authorised


async def test_not_found(client: D6Client) -> None:
    with pytest.raises(D6NotFound) as raised:
        await client.learner(1000, 999_999)
    assert raised.value.message == "The learner does not exist"
    with pytest.raises(D6NotFound):
        await client.school(999_999)


async def test_validation_error_carries_the_fields(client: D6Client, control: Control) -> None:
    with pytest.raises(D6ValidationError) as raised:
        await client.learners(1000, debtor_code="not-a-number")
    assert raised.value.status_code == 400
    assert "debtor_code" in raised.value.details["validation_errors"]
    assert (await control.stats())["total"] == 1  # a 400 is not retried


@pytest.mark.parametrize("style", ["v1", "v2"])
async def test_injected_errors_in_both_shapes(client: D6Client, control: Control, style: str) -> None:
    await control.faults(error_rate=1.0, error_status=403, error_body=style)
    with pytest.raises(D6AuthError) as raised:
        await client.learners(1000)
    assert raised.value.status_code == 403 and "Forbidden" in raised.value.message


async def test_500s_are_retried_then_succeed(client: D6Client, control: Control) -> None:
    await control.faults(error_rate=1.0, error_status=500, times=3)
    learners = await client.learners(1000)
    assert len(learners) == 120
    stats = await control.stats()
    assert stats["by_status"] == {"500": 3, "200": 3}


async def test_bounded_retries_then_server_error(client: D6Client, control: Control) -> None:
    await control.faults(error_rate=1.0, error_status=503, error_body="v1")
    with pytest.raises(D6ServerError) as raised:
        await client.learners(1000)
    assert raised.value.status_code == 503
    assert (await control.stats())["by_status"] == {"503": 4}


async def test_a_page_failing_mid_scan_fails_the_scan(client: D6Client, control: Control) -> None:
    await control.faults(fail_on_page=2, error_status=500)
    pages = []
    with pytest.raises(D6ServerError):
        async for page in client.scan_learners(1000):
            pages.append(page)
    assert [page.number for page in pages] == [1]
    await control.faults(fail_on_page=2, error_status=500, times=1)
    assert len(await client.learners(1000)) == 120  # one failure: retried, the scan completes


async def test_429_with_retry_after(client: D6Client, control: Control) -> None:
    await control.faults(rate_limit_rps=1, retry_after="1")
    assert len(await client.learners(1000)) == 120
    requests = await control.requests()
    assert [r["status"] for r in requests] == [200, 429, 200, 429, 200]
    assert requests[2]["t"] - requests[1]["t"] >= 1.0  # waited as told, not the (tiny) backoff
    assert requests[4]["t"] - requests[3]["t"] >= 1.0


async def test_429_without_retry_after_gives_up_as_rate_limited(client: D6Client, control: Control) -> None:
    await control.faults(error_rate=1.0, error_status=429)
    with pytest.raises(D6RateLimited):
        await client.school(1000)
    assert (await control.stats())["by_status"] == {"429": 4}


async def test_garbled_json_is_malformed(client: D6Client, control: Control) -> None:
    await control.faults(garble_on_page=2)
    with pytest.raises(D6MalformedResponse, match="not valid JSON"):
        await client.learners(1000)
    assert (await control.stats())["total"] == 2  # not retried: broken JSON will not mend


async def test_wrong_shape_is_malformed(client: D6Client, control: Control) -> None:
    await control.faults(wrong_shape_on_page=2)
    with pytest.raises(D6MalformedResponse, match="`data` is not a list"):
        await client.learners(1000)


async def test_timeouts_are_retried_then_surface(simulator: SimulatorServer, control: Control) -> None:
    settings = sim_settings(simulator, d6_timeout_seconds=0.2)
    async with D6Client(settings, max_attempts=3, **FAST) as d6:
        # The simulator counts `times` when its slow answer ends (0.25 s), so the retry at ~0.2 s is
        # slow too and the third attempt is fast.
        await control.faults(latency_ms=250, times=1)
        assert (await d6.school(1000))["school_id"] == 1000
        await control.faults(latency_ms=600)
        with pytest.raises(D6TransportError, match="timed out"):
            await d6.school(1000)


async def test_change_state_activate_already_and_deactivate(
    simulator_factory: Callable[..., SimulatorServer],
) -> None:
    sim = simulator_factory(schools=2, learners=1, debtors=1, inactive_schools=1)
    async with D6Client(sim_settings(sim), **FAST) as d6:
        before = await d6.client_integrations(school_id=1001)
        assert [r["activated_by_integrator"] for r in before] == ["No"]
        record = await d6.change_integration_state(1001, 8, True)
        assert record["school_id"] == 1001 and record["activated_by_integrator"] == "Yes"
        again = await d6.change_integration_state(1001, 8, True)  # 400 "already activated"
        assert again["activated_by_integrator"] == "Yes"
        off = await d6.change_integration_state(1001, 8, False)
        assert off["activated_by_integrator"] == "No"
        with pytest.raises(D6NotAuthorised) as raised:
            await d6.change_integration_state(4242, 8, True)
        assert raised.value.school_id == 4242
        with pytest.raises(D6ValidationError) as invalid:
            await d6.change_integration_state(1001, 999, True)
        assert "api_type_id" in invalid.value.details["validation_errors"]
    stats = await Control(sim).stats()
    assert stats["by_status"].get("405") is None


async def test_change_state_falls_back_to_patch_on_405(
    simulator_factory: Callable[..., SimulatorServer],
) -> None:
    sim = simulator_factory(schools=1, learners=1, debtors=1, inactive_schools=1, patch_only=True)
    control = Control(sim)
    async with D6Client(sim_settings(sim), **FAST) as d6:
        record = await d6.change_integration_state(1000, 8, True)
        assert record["activated_by_integrator"] == "Yes"
        await d6.change_integration_state(1000, 8, True)
    stats = await control.stats()
    assert stats["by_endpoint"] == {f"POST {CHANGE}": 1, f"PATCH {CHANGE}": 2}
    assert stats["by_status"] == {"405": 1, "200": 1, "400": 1}
    await control.aclose()


async def test_hash_equal_between_list_and_single_read(client: D6Client) -> None:
    """ids come as strings in lists and (possibly) ints elsewhere: normalised, they hash the same."""
    listed = (await client.accountable_persons(1000))[0]
    single = await client.accountable_person(1000, listed["accountable_person_id"])
    raw = {**single, "accountable_person_id": str(single["accountable_person_id"])}
    assert record_hash(normalise(raw)) == record_hash(listed)
