"""Background churn: a steady trickle of the changes a live school produces, for demos and soak tests.

The rate is changes per second across all schools. A task in the app's lifespan wakes every tick,
adds `rate * elapsed` to a budget and applies the whole changes the budget allows, so fractional rates
(one change every ten seconds) work as well as large ones.

Schools need not be equally busy: with a skew S the school of rank r (in id order) draws a share
proportional to 1/r**S, so a few schools change a lot and many hardly at all. In a school whose books
are in use (`Finance.seeded`), `FINANCE_SHARE` of its changes are Finance+ ones: payments, invoices,
notes, promises. Once a second the task also looks at every school's calendar: balances age when a
month ends, and, while the churn runs, a school whose new month has begun runs its invoices.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import datetime as dt
import itertools
import time
from collections import Counter
from collections.abc import AsyncIterator

from bridge.simulator import data
from bridge.simulator.finance_churn import finance_change
from bridge.simulator.state import World

TICK_SECONDS = 0.1
CLOCK_SECONDS = 1.0
MAX_CHANGES_PER_TICK = 10_000
FINANCE_SHARE = 0.5
"""Of the changes that fall on a school whose books are in use, the share that are Finance+ changes."""


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

    def set_rate(self, rate: float, skew: float | None = None) -> None:
        self.rate = max(0.0, rate)
        if skew is not None:
            self.skew = max(0.0, skew)
            self._weights = ((), [])
        self._budget = 0.0

    def describe(self) -> dict[str, object]:
        return {
            "rate": self.rate,
            "skew": self.skew,
            "applied": self.applied,
            "by_school": {str(school_id): count for school_id, count in sorted(self.by_school.items())},
        }

    def _pick_school(self) -> int:
        """Uniform without skew (the same draws as ever); otherwise weighted 1/rank**skew."""
        world = self.world
        if self.skew == 0:
            return world.rng.choice(world.school_ids)
        ids = tuple(world.school_ids)
        cached_ids, cumulative = self._weights
        if cached_ids != ids:
            weights = (1.0 / (rank**self.skew) for rank in range(1, len(ids) + 1))
            cumulative = list(itertools.accumulate(weights))
            self._weights = (ids, cumulative)
        index = bisect.bisect_right(cumulative, world.rng.random() * cumulative[-1])
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
        self._budget = min(self._budget + self.rate * elapsed, float(MAX_CHANGES_PER_TICK))
        due = int(self._budget)
        self._budget -= due
        for _ in range(due):
            self.change_one()
        return due

    def change_one(self) -> None:
        world = self.world
        rng = world.rng
        if not world.school_ids:
            return
        school = world.schools[self._pick_school()]
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
