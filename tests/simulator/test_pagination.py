"""Cursor pagination as d6 documents it: opaque cursors, `meta`, `next_cursor` absent on the last page."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable

import httpx

from bridge.testing.servers import SimulatorServer
from tests.simulator.helpers import CREDENTIALS, DEBTORS, LEARNERS, control, scan


async def test_scan_follows_cursors_to_every_learner(d6: httpx.AsyncClient) -> None:
    records, pages = await scan(d6, LEARNERS, {"limit": 50, "all_accounts": 1})
    assert [len(page["data"]) for page in pages] == [50, 50, 20]
    assert [r["learner_id"] for r in records] == list(range(1, 121))
    for page in pages[:-1]:
        assert page["meta"]["limit"] == 50
        assert page["meta"]["max_allowed_limit"] == 50
        assert isinstance(page["meta"]["next_cursor"], str)
    assert "next_cursor" not in pages[-1]["meta"]


async def test_a_full_last_page_has_no_next_cursor(simulator_factory: Callable[..., SimulatorServer]) -> None:
    sim = simulator_factory(schools=1, learners=100, debtors=100)
    headers = {**CREDENTIALS, "HTTP-X-SCHOOLID": "1000"}
    async with httpx.AsyncClient(base_url=sim.base_url, headers=headers) as client:
        _, pages = await scan(client, LEARNERS, {"limit": 50, "all_accounts": 1})
    assert [len(page["data"]) for page in pages] == [50, 50]
    assert "next_cursor" not in pages[1]["meta"]


async def test_default_limit_is_ten(d6: httpx.AsyncClient) -> None:
    body = (await d6.get(LEARNERS, params={"all_accounts": 1})).json()
    assert len(body["data"]) == 10
    assert body["meta"]["limit"] == 10


async def test_limit_above_the_maximum_is_a_validation_error(d6: httpx.AsyncClient) -> None:
    response = await d6.get(DEBTORS, params={"limit": 51})
    assert response.status_code == 400
    assert response.json() == {
        "success": False,
        "message": "Validation Failed",
        "validation_errors": {"limit": "The Limit maximum is 50"},
    }
    response = await d6.get(DEBTORS, params={"limit": "ten"})
    assert response.json()["validation_errors"] == {"limit": "The Limit must be integer"}


async def test_cursors_are_opaque_base64_and_bad_ones_are_rejected(d6: httpx.AsyncClient) -> None:
    cursor = (await d6.get(LEARNERS, params={"limit": 5, "all_accounts": 1})).json()["meta"]["next_cursor"]
    decoded = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    assert decoded["id"] == 5
    response = await d6.get(LEARNERS, params={"cursor": "not-a-cursor"})
    assert response.status_code == 400
    assert response.json()["validation_errors"] == {"cursor": "The Cursor is invalid"}


async def test_reverse_order_scans_from_the_newest(d6: httpx.AsyncClient) -> None:
    records, pages = await scan(d6, LEARNERS, {"limit": 50, "all_accounts": 1, "reverse_order": 1})
    assert [r["learner_id"] for r in records] == list(range(120, 0, -1))
    assert len(pages) == 3


async def test_cursor_is_stable_while_records_are_deleted_and_added(
    simulator: SimulatorServer, d6: httpx.AsyncClient, http: httpx.AsyncClient
) -> None:
    """Records that existed throughout are each seen exactly once, whatever changes mid-scan."""
    params: dict[str, object] = {"limit": 20, "all_accounts": 1}
    first = (await d6.get(LEARNERS, params=params)).json()
    seen = [r["learner_id"] for r in first["data"]]
    records_url = f"{simulator.control_url}/schools/1000/learners"
    # Delete already-seen and not-yet-seen learners, add new ones, then continue the scan.
    for learner_id in (3, 7, 25, 26, 60):
        await control(http, "DELETE", f"{records_url}/{learner_id}")
    added = [(await control(http, "POST", records_url, {"grade": "3"}))["learner_id"] for _ in range(3)]
    rest, _ = await scan(d6, LEARNERS, {**params, "cursor": first["meta"]["next_cursor"]})
    seen += [r["learner_id"] for r in rest]
    assert len(seen) == len(set(seen)), "a record was repeated"
    survivors = set(range(1, 121)) - {3, 7, 25, 26, 60}
    assert survivors - set(range(1, 21)) <= set(seen), "a record that existed throughout was skipped"
    assert set(added) <= set(seen)
    assert {25, 26, 60}.isdisjoint(seen[20:])
