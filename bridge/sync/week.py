"""When in the week a school's records change: its hour-of-week profile, learned from its scans, and the turn
of a feed that follows it (docs/operations.md#across-the-week).

A scan finds the changes made since the previous scan, not when each was made. Each scan's changes are
spread over the hours of the week it covered, in proportion to how busy each hour is believed to be (all
schools together, `Pooled`), and added to the school's counts; the pooled counts add the same, and the
seconds observed in each hour. Counts are kept with forward decay: a count added at t is stored multiplied
by 2^((t - EPOCH) / HALF_LIFE_SECONDS), so every addition is one HINCRBYFLOAT, in any order, from any
replica, and the sums read at `now` are multiplied by 2^-((now - EPOCH) / HALF_LIFE_SECONDS): an hour's
changes weigh half after a week, as the feed rates do (bridge/sync/rates.py).

A school's profile is its share of changes in each hour over the pooled share, shrunk towards the pooled
profile by `SCHOOL_PRIOR` pseudo-changes (a school with a few changes a week has the profile of all
schools), then divided by the hours' exposure: `shape[h]` is the school's activity in hour h against its
mean over the week (1.0 on average). Every school with no history, and every school while nothing is
known, is flat (1.0 everywhere): then `lag_area_turn` is the interval itself, and nothing differs from the
constant-rate plan.

The hour of the week is South African time (UTC+2 all year): hour 0 is Monday 00:00 to 01:00. Term
holidays can come later as a second profile (a holiday week against a school week) chosen by the date.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Final

from bridge.sync.rates import HALF_LIFE_SECONDS

HOURS: Final = 168
HOUR: Final = 3600.0
SAST_MONDAY: Final = (2 + 72) * HOUR
"""Seconds to add to Unix time so that whole weeks start on Monday 00:00 in South Africa (UTC+2): Unix
time 0 was a Thursday, 02:00 there."""
EPOCH: Final = 1_767_571_200.0
"""Monday 2026-01-05 00:00 UTC: the reference of the forward-decayed counts."""
SCHOOL_PRIOR: Final = 40.0
"""Pseudo-changes a school's profile starts from, spread as the pooled profile."""
POOLED_PRIOR: Final = 1.0
"""Pseudo-changes in each hour of the pooled profile, at the mean rate: a flat start."""
FLAT: Final[tuple[float, ...]] = (1.0,) * HOURS


def hour_of_week(t: float, origin: float = SAST_MONDAY) -> int:
    return int((t + origin) // HOUR) % HOURS


def grow(t: float) -> float:
    """The forward-decay factor of an addition at `t`."""
    return math.pow(2.0, (t - EPOCH) / HALF_LIFE_SECONDS)


def covered(start: float, end: float, origin: float = SAST_MONDAY) -> list[tuple[int, float]]:
    """The hours of the week in [start, end) and the seconds of each (a span longer than a week wraps)."""
    spans: dict[int, float] = {}
    t = start
    while t < end:
        next_hour = (math.floor((t + origin) / HOUR) + 1) * HOUR - origin
        stop = min(next_hour, end)
        slot = hour_of_week(t, origin)
        spans[slot] = spans.get(slot, 0.0) + (stop - t)
        t = stop
    return list(spans.items())


def spread(changes: float, spans: Sequence[tuple[int, float]], shape: Sequence[float]) -> dict[int, float]:
    """The changes of a scan that covered `spans`, shared among their hours as busy as `shape` says."""
    weights = [(slot, seconds * shape[slot]) for slot, seconds in spans]
    total = sum(w for _, w in weights)
    if changes <= 0 or total <= 0:
        return {}
    return {slot: changes * w / total for slot, w in weights if w > 0}


@dataclass
class Pooled:
    """All schools' changes and observed seconds by hour of the week (forward-decayed sums)."""

    changes: list[float]
    seconds: list[float]

    @classmethod
    def empty(cls) -> Pooled:
        return cls([0.0] * HOURS, [0.0] * HOURS)

    def add(self, changes: Mapping[int, float], seconds: Mapping[int, float]) -> None:
        for slot, value in changes.items():
            self.changes[slot] += value
        for slot, value in seconds.items():
            self.seconds[slot] += value

    def shape(self, now: float) -> tuple[float, ...]:
        """Activity by hour against the week's mean: (changes + prior) / (seconds + prior seconds)."""
        shrink = 1.0 / grow(now)
        changes = [c * shrink for c in self.changes]
        seconds = [s * shrink for s in self.seconds]
        total_changes, total_seconds = sum(changes), sum(seconds)
        if total_seconds <= 0 or total_changes <= 0:
            return FLAT
        mean = total_changes / total_seconds
        rates = [
            (c + POOLED_PRIOR) / (s + POOLED_PRIOR / mean) for c, s in zip(changes, seconds, strict=True)
        ]
        return normalised(rates)

    def exposure(self) -> tuple[float, ...]:
        """The share of the observed seconds in each hour (uniform before any)."""
        total = sum(self.seconds)
        return tuple(s / total for s in self.seconds) if total > 0 else (1.0 / HOURS,) * HOURS


def school_shape(
    counts: Mapping[int, float], pooled: Sequence[float], exposure: Sequence[float], now: float
) -> tuple[float, ...]:
    """A school's activity by hour (mean 1.0): its changes by hour (forward-decayed `counts`) against where
    the pooled profile would put them, shrunk towards it by `SCHOOL_PRIOR` pseudo-changes."""
    shrink = 1.0 / grow(now)
    counts = {slot: value * shrink for slot, value in counts.items()}
    total = sum(counts.values())
    if total <= 0:
        return tuple(pooled)
    expected = [
        p * e for p, e in zip(pooled, exposure, strict=True)
    ]  # where the pooled profile puts its changes
    scale = sum(expected)
    if scale <= 0:
        return tuple(pooled)
    rates = []
    for slot in range(HOURS):
        share = (counts.get(slot, 0.0) + SCHOOL_PRIOR * expected[slot] / scale) / (total + SCHOOL_PRIOR)
        rates.append(share / exposure[slot] if exposure[slot] > 0 else pooled[slot])
    return normalised(rates)


@dataclass(frozen=True)
class ScanSpread:
    """What one scan adds to the counts (each already multiplied by `grow`)."""

    changes: dict[int, float]
    """Its changes by hour: the school's, and the same added to the pooled counts."""
    seconds: dict[int, float]
    """The seconds it covered by hour, for the pooled counts."""


def scan_spread(
    start: float, end: float, changes: int, pooled: Sequence[float], now: float, origin: float = SAST_MONDAY
) -> ScanSpread:
    """The additions of a scan that covered [start, end) and found `changes`, spread by the pooled shape."""
    spans = covered(start, end, origin)
    factor = grow(now)
    return ScanSpread(
        changes={slot: v * factor for slot, v in spread(changes, spans, pooled).items()},
        seconds={slot: seconds * factor for slot, seconds in spans},
    )


def normalised(rates: Sequence[float]) -> tuple[float, ...]:
    mean = sum(rates) / len(rates)
    return tuple(r / mean for r in rates) if mean > 0 else FLAT


def lag_area_turn(
    since: float, interval: float, shape: Sequence[float], origin: float = SAST_MONDAY
) -> float:
    """When a feed scanned at `since` and planned every `interval` seconds is next due, by the hour.

    A change waits from when it is made until the next scan: between scans at T and t the feed's changes
    accrue the lag A(t) = ∫_T^t λ(s)·(t - s) ds. At a constant rate the square-root plan scans when A
    reaches λ·P²/2 (P its interval; λ·P²/c is the same for every feed, the plan's Lagrange condition). With
    λ(s) = λ·shape(s), the same threshold gives the turn that follows the week: sooner after a busy spell
    (its changes wait), later after a quiet one; with a flat shape, exactly T + P. Solved hour by hour (A is
    quadratic within an hour); at most a week ahead."""
    theta = interval * interval / 2
    start, pending, area = since, 0.0, 0.0  # pending: the changes expected since T, in mean-rate seconds
    limit = since + HOURS * HOUR
    while start < limit:
        next_hour = (math.floor((start + origin) / HOUR) + 1) * HOUR - origin
        g = shape[hour_of_week(start, origin)]
        d = next_hour - start
        if area + pending * d + g * d * d / 2 >= theta:
            left = theta - area
            if left <= 0:
                return start
            if g > 0:
                return start + (-pending + math.sqrt(pending * pending + 2 * g * left)) / g
            return start + left / pending  # pending > 0 here: the area grew within the hour
        area += pending * d + g * d * d / 2
        pending += g * d
        start = next_hour
    return limit
