"""Background churn: a steady trickle of the changes a live school produces, for demos and soak tests.

The rate is changes per second across all schools. A task in the app's lifespan wakes every tick,
adds `rate * elapsed` to a budget and applies the whole changes the budget allows, so fractional rates
(one change every ten seconds) work as well as large ones.

Schools need not be equally busy: with a skew S the school of rank r (in id order) draws a share
proportional to 1/r**S, so a few schools change a lot and many hardly at all. In a school whose books
are in use (`Finance.seeded`), `FINANCE_SHARE` of its changes are Finance+ ones: payments, invoices,
notes, promises. Once a second the task also looks at every school's calendar: balances age when a
month ends, and, while the churn runs, a school whose new month has begun runs its invoices.

The rate is constant by default. With hours (`school` or `mixed`, bridge/simulator/hours.py) it follows a
school week compressed into `week_seconds` of wall time, so a few minutes' run sees school days, evenings,
nights and weekends: at a moment of the compressed week a school changes at `rate` x its share x its
week's factor for that hour (mean 1.0 over the week), so over a whole week the changes are as many as at
the constant rate. Under `school` every school keeps a day school's week; under `mixed` each keeps one of
three, chosen by its id.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import datetime as dt
import itertools
import math
import time
from collections import Counter
from collections.abc import AsyncIterator

from bridge.simulator import data
from bridge.simulator.finance_churn import finance_change
from bridge.simulator.hours import HOUR, HOURS_A_WEEK, WEEK, Week, shape_of, week_of
from bridge.simulator.state import World

TICK_SECONDS = 0.1
CLOCK_SECONDS = 1.0
MAX_CHANGES_PER_TICK = 10_000
FINANCE_SHARE = 0.5
"""Of the changes that fall on a school whose books are in use, the share that are Finance+ changes."""
HOURS = ("constant", "school", "mixed")
"""How the churn goes over the week: at a constant rate, or as schools keep their hours (`hours.py`)."""
WEEK_SECONDS = 120.0
"""Wall seconds a compressed week takes by default: a day in about 17 s."""


class Churn:
    """Learners and debtors: mixed updates (60%), creations (20%) and removals (20%); plus Finance+
    changes in schools whose books are in use."""

    def __init__(self, world: World, rate: float, skew: float = 0.0) -> None:
        self.world = world
        self.rate = max(0.0, rate)
        self.skew = max(0.0, skew)
        self.applied = 0
        self.by_school: Counter[int] = Counter()
        self._budget = 0.0
        self._weights: tuple[tuple[int, ...], list[float]] = ((), [])
        self.hours = "constant"
        self.week_seconds = WEEK_SECONDS
        self.week_start_hour = 0.0
        self._clock = 0.0
        """Wall seconds the churn has run since its hours were set (the sum of `step`'s elapsed)."""
        self._hourly: tuple[tuple[int, ...], dict[int, list[float]]] = ((), {})

    def set_rate(self, rate: float, skew: float | None = None) -> None:
        self.rate = max(0.0, rate)
        if skew is not None:
            self.skew = max(0.0, skew)
            self._weights = ((), [])
            self._hourly = ((), {})
        self._budget = 0.0

    def set_hours(self, hours: str, week_seconds: float | None = None, start_hour: float = 0.0) -> None:
        """Follow `hours` from now on, the compressed week starting at `start_hour` (0 is Monday 00:00)."""
        if hours not in HOURS:
            raise ValueError(f"unknown hours {hours!r}: use one of {', '.join(HOURS)}")
        if week_seconds is not None and week_seconds <= 0:
            raise ValueError("week_seconds must be positive")
        self.hours = hours
        self.week_seconds = week_seconds or self.week_seconds
        self.week_start_hour = start_hour % HOURS_A_WEEK
        self._clock = 0.0
        self._hourly = ((), {})

    def describe(self) -> dict[str, object]:
        """Rate, skew and counts; and, while it follows schools' hours, its week and where the week stands."""
        hours: dict[str, object] = {}
        if self.hours != "constant":
            hours = {
                "hours": self.hours,
                "week_seconds": self.week_seconds,
                "week_start_hour": self.week_start_hour,
                "week_hour": self.week_hour(),
            }
        return {
            "rate": self.rate,
            "skew": self.skew,
            **hours,
            "applied": self.applied,
            "by_school": {str(school_id): count for school_id, count in sorted(self.by_school.items())},
        }

    def week_hour(self) -> float:
        """Where the compressed week stands: hours after Monday 00:00 (0 to 168)."""
        return (self.week_start_hour + self._clock * HOURS_A_WEEK / self.week_seconds) % HOURS_A_WEEK

    def _cumulative(self, hour: int) -> list[float]:
        """The schools' cumulative weights in an hour of the week: share (1/rank**skew) x the factor of
        the school's week in that hour."""
        ids = tuple(self.world.school_ids)
        cached_ids, by_hour = self._hourly
        if cached_ids != ids:
            by_hour = {}
            self._hourly = (ids, by_hour)
        if hour not in by_hour:
            shapes: dict[Week, tuple[float, ...]] = {}
            weights: list[float] = []
            for rank, school_id in enumerate(ids, start=1):
                week = week_of(school_id, self.hours)
                if week not in shapes:
                    shapes[week] = shape_of(week)
                weights.append(shapes[week][hour] / float(rank) ** self.skew)
            by_hour[hour] = list(itertools.accumulate(weights))
        return by_hour[hour]

    def hour_factor(self, hour: int) -> float:
        """The churn's rate in an hour of the week relative to `rate`: the shares weighted by the schools'
        weeks in that hour, over the shares (1.0 on average over the week: each shape has mean 1)."""
        count = len(self.world.school_ids)
        if self.hours == "constant" or not count:
            return 1.0
        shares = math.fsum(1.0 / float(rank) ** self.skew for rank in range(1, count + 1))
        return self._cumulative(hour)[-1] / shares

    def _pick_school(self, hour: int | None = None) -> int:
        """Uniform without skew (the same draws as ever); otherwise weighted 1/rank**skew; following the
        hours, weighted too by each school's week in `hour`."""
        world = self.world
        ids = tuple(world.school_ids)
        if hour is not None:
            return self._draw(ids, self._cumulative(hour))
        if self.skew == 0:
            return world.rng.choice(world.school_ids)
        cached_ids, cumulative = self._weights
        if cached_ids != ids:
            weights = (1.0 / (rank**self.skew) for rank in range(1, len(ids) + 1))
            cumulative = list(itertools.accumulate(weights))
            self._weights = (ids, cumulative)
        return self._draw(ids, cumulative)

    def _draw(self, ids: tuple[int, ...], cumulative: list[float]) -> int:
        """A school drawn by its weight (`cumulative`: the running sums of the weights of `ids`)."""
        index = bisect.bisect_right(cumulative, self.world.rng.random() * cumulative[-1])
        return ids[min(index, len(ids) - 1)]

    def keep_time(self) -> int:
        """Age balances whose month has ended; while churning, run the invoices of a month that began.
        Only schools whose books are in use take part. Returns the records changed."""
        changed = 0
        for school in self.world.schools.values():
            books = school.finance
            if not books.seeded:
                continue
            changed += books.refresh()
            if self.rate > 0 and books.invoiced_period < books.period:
                changed += books.invoice_run()
        return changed

    def step(self, elapsed: float) -> int:
        """Apply the changes `elapsed` seconds are due; returns how many were applied."""
        if self.hours != "constant":
            return self._step_hours(elapsed)
        self._budget = min(self._budget + self.rate * elapsed, float(MAX_CHANGES_PER_TICK))
        due = int(self._budget)
        self._budget -= due
        for _ in range(due):
            self.change_one()
        return due

    def _step_hours(self, elapsed: float) -> int:
        """`step` along the compressed week, an hour of it at a time: each hour at its own rate and with
        its own schools' weights (a tick is a fraction of an hour; a test's long step spans many)."""
        applied = 0
        scale = WEEK / self.week_seconds  # week seconds a wall second
        start = self.week_start_hour * HOUR
        end = self._clock + max(0.0, elapsed)
        while self._clock < end:
            hour = math.floor((start + self._clock * scale) / HOUR)
            boundary = ((hour + 1) * HOUR - start) / scale
            if boundary <= self._clock:  # rounding put the clock on the boundary: the next hour is due
                hour += 1
                boundary = ((hour + 1) * HOUR - start) / scale
            upto = min(end, boundary)
            in_week = hour % HOURS_A_WEEK
            gained = self.rate * self.hour_factor(in_week) * (upto - self._clock)
            self._clock = upto
            self._budget = min(self._budget + gained, float(MAX_CHANGES_PER_TICK))
            due = int(self._budget)
            self._budget -= due
            for _ in range(due):
                self.change_one(in_week)
            applied += due
        return applied

    def change_one(self, hour: int | None = None) -> None:
        """One change at a school drawn by the skew (and, given an hour of the week, by schools' hours)."""
        world = self.world
        rng = world.rng
        if not world.school_ids:
            return
        school = world.schools[self._pick_school(hour)]
        sid = school.school_id
        self.by_school[sid] += 1
        if school.finance.seeded and rng.random() < FINANCE_SHARE and finance_change(school.finance, rng):
            self.applied += 1
            return
        roll = rng.random()
        on_learner = rng.random() < 0.5
        if (
            roll < 0.2
            or (on_learner and not len(school.learners))
            or (not on_learner and not len(school.debtors))
        ):
            if on_learner:
                world.create_learner(sid, {})
            else:
                debtor = world.create_debtor(sid, {})
                world.create_learner(sid, {"accountable_person_id": int(debtor["accountable_person_id"])})
            self.applied += 1
            return
        table = school.learners if on_learner else school.debtors
        key = table.ids[rng.randrange(len(table.ids))]
        record = table.records[key]
        if roll < 0.8:
            if on_learner:
                world.update_learner(sid, key, data.learner_update(rng, record))
            else:
                world.update_debtor(sid, key, data.debtor_update(rng, record))
        elif on_learner:
            world.remove_learner(sid, key)
        elif school.learner_ids_of(key):
            # A family with children at the school leaves by closing the account, not by vanishing.
            world.update_debtor(sid, key, {"account_closing_date": dt.date.today().isoformat()})
        else:
            world.remove_debtor(sid, key)
        self.applied += 1

    async def run(self) -> None:
        """Runs until cancelled (by the app's lifespan on shutdown)."""
        last = clock = time.monotonic()
        while True:
            await asyncio.sleep(TICK_SECONDS)
            now = time.monotonic()
            self.step(now - last)
            last = now
            if now - clock >= CLOCK_SECONDS:
                clock = now
                self.keep_time()


@contextlib.asynccontextmanager
async def churning(churn: Churn) -> AsyncIterator[None]:
    """The churn task lives exactly as long as the server (the app's lifespan)."""
    task = asyncio.create_task(churn.run(), name="simulator-churn")
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
