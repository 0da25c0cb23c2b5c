"""A feed's change history as two decayed sums: changes found, and seconds observed.

Each scan adds one observation (the changes it found over the seconds since the feed's previous scan); older
observations weigh less, half after `HALF_LIFE_SECONDS`, so the estimate follows terms and holidays. The poll
status stores the sums (bridge/sync/status.py), and the poll planner estimates each feed's change rate from
them (bridge/sync/planner.py).
"""

from __future__ import annotations

import math
from typing import Final

HALF_LIFE_SECONDS: Final = 7 * 86400.0
"""An observation's weight halves in a week: the estimate follows terms and holidays within weeks."""


def decay(age: float) -> float:
    """The weight left to an observation `age` seconds old."""
    return math.pow(0.5, max(0.0, age) / HALF_LIFE_SECONDS)


def observe(
    changes_sum: float, seconds_sum: float, at: float | None, interval: float, changes: int, now: float
) -> tuple[float, float]:
    """The decayed sums after one more observation (`changes` found over `interval` seconds, at `now`)."""
    weight = decay(now - at) if at is not None else 0.0
    return changes_sum * weight + changes, seconds_sum * weight + interval
