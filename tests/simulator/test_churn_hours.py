"""The churn following schools' hours over a compressed week: when the changes fall, on which schools, and
that a whole week makes as many as the constant rate. Driven by `step` with made-up elapsed seconds."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable

import httpx
import pytest

from bridge.simulator.churn import Churn
from bridge.simulator.hours import HOUR, boarding, late_office, profile, shape_of
from bridge.simulator.state import World
from bridge.testing.servers import SimulatorServer
from tests.simulator.helpers import control

WEEK_SECONDS = 168.0
"""A compressed hour is one wall second: easy to step through."""
TICK = 0.25


def world_of(schools: int) -> World:
    world = World(7)
    for index in range(schools):
        world.add_school(
            1000 + index, debtors=3, learners=3, api_type_ids=(8,), activated=True, finance=False
        )
    return world


def hourly(churn: Churn) -> list[Counter[int]]:
    """Step through one compressed week a tick at a time: each school's changes in each hour of it."""
    by_hour: list[Counter[int]] = [Counter() for _ in range(168)]
    for _ in range(round(WEEK_SECONDS / TICK)):
        hour = int(churn.week_hour())
        before = Counter(churn.by_school)
        churn.step(TICK)
        by_hour[hour].update(Counter(churn.by_school) - before)
    return by_hour


def share_in(counts: list[int], hours: Callable[[int], bool]) -> float:
    return sum(c for h, c in enumerate(counts) if hours(h)) / sum(counts)


def school_hours(h: int) -> bool:
    return h // 24 < 5 and 7 <= h % 24 < 17


def nights(h: int) -> bool:
    return h // 24 < 5 and (h % 24 >= 22 or h % 24 < 6)


def test_school_hours_put_the_changes_in_the_school_day() -> None:
    churn = Churn(world_of(10), rate=100, skew=2.0)
    churn.set_hours("school", WEEK_SECONDS)
    by_hour = hourly(churn)
    counts = [sum(c.values()) for c in by_hour]
    shape = shape_of(profile)
    assert sum(counts) == pytest.approx(100 * WEEK_SECONDS, abs=1), "the week's mean rate is the rate"
    for name, hours in (("school hours", school_hours), ("nights", nights)):
        expected = sum(f for h, f in enumerate(shape) if hours(h)) / 168
        assert share_in(counts, hours) == pytest.approx(expected, abs=0.005), name
    assert share_in(counts, school_hours) > 0.8
    assert share_in(counts, nights) < 0.02
    for hour in (9, 23, 5 * 24 + 12):  # Monday 09:00, Monday 23:00, Saturday noon
        assert counts[hour] == pytest.approx(100 * shape[hour], abs=1)
    # The skew still holds within an hour: school 1000 makes its 1/rank^2 share.
    monday = sum((by_hour[h] for h in range(7, 17)), Counter())
    weights = [1 / rank**2 for rank in range(1, 11)]
    assert monday[1000] / monday.total() == pytest.approx(weights[0] / sum(weights), abs=0.03)


def test_mixed_hours_give_each_school_its_own_week_by_id() -> None:
    churn = Churn(world_of(3), rate=60)  # 1000: afternoon office, 1001: boarding school, 1002: day school
    churn.set_hours("mixed", WEEK_SECONDS)
    by_hour = hourly(churn)
    total = sum(sum(c.values()) for c in by_hour)
    assert total == pytest.approx(60 * WEEK_SECONDS, abs=1)
    for school_id, week in ((1000, late_office), (1001, boarding), (1002, profile)):
        counts = [c[school_id] for c in by_hour]
        assert sum(counts) / total == pytest.approx(1 / 3, abs=0.03), "every week has mean 1.0"
        shape = shape_of(week)
        busy = [h for h in range(168) if shape[h] > 1]
        expected = sum(shape[h] for h in busy) / 168
        assert share_in(counts, lambda h, busy=busy: h in busy) == pytest.approx(expected, abs=0.03)
    weekend = [sum(c[school_id] for c in by_hour[120:]) for school_id in (1000, 1001, 1002)]
    assert weekend[1] > 5 * max(weekend[0], weekend[2]), "only the boarding school is busy at weekends"


@pytest.mark.parametrize("hours", ["school", "mixed"])
def test_a_whole_week_makes_the_constant_rate_s_changes_from_any_start(hours: str) -> None:
    churn = Churn(world_of(40), rate=2.0, skew=2.0)
    churn.set_hours(hours, 120.0, start_hour=84.0)  # Thursday noon, as the suite's warm-up starts
    applied = sum(churn.step(0.1) for _ in range(1200))
    assert applied == pytest.approx(2.0 * 120, abs=1)
    assert churn.week_hour() == pytest.approx(84.0)


def test_one_long_step_follows_the_hours_it_spans() -> None:
    """A step spanning many compressed hours applies each hour at its own rate."""
    churn = Churn(world_of(5), rate=100)
    churn.set_hours("school", WEEK_SECONDS, start_hour=7.0)
    assert churn.step(10 * HOUR * WEEK_SECONDS / (168 * HOUR)) == pytest.approx(
        100 * sum(shape_of(profile)[7:17]), abs=1
    )
    assert churn.step(14.0) == pytest.approx(100 * sum(shape_of(profile)[17:31]), abs=1)


def test_the_constant_rate_draws_as_ever() -> None:
    def changes(hours: str | None) -> list[tuple[int, str, object]]:
        world = world_of(4)
        churn = Churn(world, rate=300, skew=1.0)
        if hours is not None:
            churn.set_hours(hours, 30.0)
        churn.step(1.0)
        return [(c.school_id, c.resource, c.key) for c in world.changes.entries]

    assert changes("constant") == changes(None)
    with pytest.raises(ValueError, match="unknown hours"):
        Churn(world_of(1), rate=1).set_hours("holiday")


async def test_churn_hours_over_http(
    simulator_factory: Callable[..., SimulatorServer], http: httpx.AsyncClient
) -> None:
    sim = simulator_factory(schools=3, learners=5, debtors=5, finance=False)
    body = {"rate": 100, "hours": "school", "week_seconds": 7, "week_start_hour": 24 * 5}
    started = await control(http, "POST", f"{sim.control_url}/churn", body)
    assert started["hours"] == "school"
    assert started["week_seconds"] == 7
    await asyncio.sleep(1.0)  # Saturday: 5% by day, 1% by night
    weekend = await control(http, "POST", f"{sim.control_url}/churn", {"rate": 0})
    assert 120 <= weekend["week_hour"] < 168
    assert weekend["applied"] < 0.3 * 150
    refused = await http.post(f"{sim.control_url}/churn", json={"rate": 1, "hours": "holiday"})
    assert refused.status_code == 400
    constant = await control(http, "POST", f"{sim.control_url}/churn", {"rate": 0, "hours": "constant"})
    assert "hours" not in constant
