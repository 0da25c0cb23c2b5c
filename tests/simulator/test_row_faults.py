"""The simulator's row faults: a list that repeats a row, one that moves under the cursor, a malformed row."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from bridge.testing.servers import SimulatorServer
from tests.simulator.test_faults import pages


@pytest.fixture
async def faults(simulator: SimulatorServer, http: httpx.AsyncClient) -> Any:
    async def set_faults(**spec: Any) -> None:
        response = await http.post(f"{simulator.control_url}/faults", json=spec)
        assert response.status_code == 200, response.text

    return set_faults


def _ids(answers: list[httpx.Response]) -> list[list[int]]:
    return [[r["learner_id"] for r in a.json()["data"]] for a in answers]


async def test_a_repeated_row_starts_the_next_page_in_every_scan(d6: httpx.AsyncClient, faults: Any) -> None:
    await faults(repeat_row_on_page=2)
    for _ in range(2):
        first, second, *_ = _ids(await pages(d6, 5))
        assert second[0] == first[-1] and len(second) == 51 and second[1] == first[-1] + 1


async def test_a_shift_repeats_one_row_and_misses_one_once(d6: httpx.AsyncClient, faults: Any) -> None:
    await faults(shift_on_page=2, times=1)
    shifted = [i for page in _ids(await pages(d6, 5)) for i in page]
    assert len(shifted) == 120 and len(set(shifted)) == 119 and 100 not in shifted
    clean = [i for page in _ids(await pages(d6, 5)) for i in page]
    assert clean == list(range(1, 121))


async def test_an_extra_record_is_served_as_given(d6: httpx.AsyncClient, faults: Any) -> None:
    await faults(extra_record={"learner_id": "not a number"}, extra_record_on_page=2)
    first, second, *_ = (a.json()["data"] for a in await pages(d6, 5))
    assert len(first) == 50 and second[-1] == {"learner_id": "not a number"}
