"""Background churn: a steady trickle of the changes a live school produces, for demos and soak tests.

The rate is changes per second across all schools. A task in the app's lifespan wakes every tick,
adds `rate * elapsed` to a budget and applies the whole changes the budget allows, so fractional rates
(one change every ten seconds) work as well as large ones.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import time
from collections.abc import AsyncIterator

from bridge.simulator import data
from bridge.simulator.state import World

TICK_SECONDS = 0.1
MAX_CHANGES_PER_TICK = 10_000


class Churn:
    """Mixed updates (60%), creations (20%) and removals (20%) of learners and debtors."""

    def __init__(self, world: World, rate: float) -> None:
        self.world = world
        self.rate = max(0.0, rate)
        self.applied = 0
        self._budget = 0.0

    def set_rate(self, rate: float) -> None:
        self.rate = max(0.0, rate)
        self._budget = 0.0

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
        school = world.schools[rng.choice(world.school_ids)]
        sid = school.school_id
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
        last = time.monotonic()
        while True:
            await asyncio.sleep(TICK_SECONDS)
            now = time.monotonic()
            self.step(now - last)
            last = now


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
