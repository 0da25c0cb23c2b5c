"""The hours schools keep over a week: how a school's change rate rises and falls from Monday to Sunday.

One place for the weeks, so that the simulator's churn (a week compressed into a suite's minutes,
bridge/simulator/churn.py) and the freshness benchmark (a simulated week, bench/freshness.py) model the same
schools. A week is a function of the seconds after Monday 00:00 giving a relative rate that peaks at 1.0 or
less; `shape_of` turns it into its 168 hourly factors with mean 1.0, so a school that follows its week makes
as many changes over the week as it would at a constant rate.
"""

from __future__ import annotations

from collections.abc import Callable

DAY = 86400.0
HOUR = 3600.0
WEEK = 7 * DAY
HOURS_A_WEEK = 168

Week = Callable[[float], float]


def profile(t: float) -> float:
    """The relative change rate of a day school at `t` seconds after Monday 00:00 (before normalising)."""
    day, hour = int(t // DAY) % 7, int(t % DAY // HOUR)
    if day >= 5:
        return 0.05 if 8 <= hour < 18 else 0.01
    if 7 <= hour < 17:
        return 1.0
    if 17 <= hour < 22:
        return 0.25
    return 0.3 if hour == 6 else 0.02


def late_office(t: float) -> float:
    """A school whose office works the afternoon and evening on weekdays (`--hours mixed`)."""
    day, hour = int(t // DAY) % 7, int(t % DAY // HOUR)
    return 1.0 if day < 5 and 12 <= hour < 22 else 0.03


def boarding(t: float) -> float:
    """A boarding school: busy every day of the week, 06:00 to 22:00 (`--hours mixed`)."""
    return 0.6 if 6 <= int(t % DAY // HOUR) < 22 else 0.02


PROFILES: dict[str, tuple[Week, ...]] = {"school": (profile,), "mixed": (profile, late_office, boarding)}
"""The weeks a world's schools follow: `school` (every school the same), `mixed` (each draws one)."""


def shape_of(week: Week) -> tuple[float, ...]:
    """A profile's activity in each hour of the week, relative to its mean (1.0 on average)."""
    values = [week(h * HOUR) for h in range(HOURS_A_WEEK)]
    mean = sum(values) / len(values)
    return tuple(v / mean for v in values)


def week_of(school_id: int, hours: str) -> Week:
    """The week a school keeps under `hours`: with `mixed`, chosen by its id (id modulo 3: 0 a day school,
    1 an afternoon and evening office, 2 a boarding school), so every run gives a school the same week."""
    weeks = PROFILES[hours]
    return weeks[school_id % len(weeks)]
