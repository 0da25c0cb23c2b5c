"""The d6 request budget: never more than `BRIDGE_D6_MAX_RPS` requests a second, across every process.

The algorithm is GCRA (the generic cell rate algorithm) with no burst: the key holds the *theoretical
arrival time* (TAT) of the next request. A request may go when the clock has reached the TAT; it then
moves the TAT to `now + interval` with `interval = 1 / rps`. So two granted requests are always at
least one interval apart, and any half-open one-second window holds at most `ceil(rps)` of them.

`RedisBudget` keeps the TAT in Redis and decides in one Lua script that reads Redis' own clock (`TIME`),
so processes on different hosts with skewed clocks still share one timeline. The script takes a token
or answers how many microseconds to wait; the caller sleeps and asks again. Within a process one asyncio
queue (`Turns`) orders the waiting coroutines, so only one of them asks Redis at a time and they are served
in arrival order, write-back commands (`urgent`) before polls; between processes, a small random delay on
each wake-up makes them win in turn.
The script and the key are the store's (`D6_BUDGET` in store/scripts.py, `Keys.d6_budget`): the app
builds the budget (`Services.build`) and hands it to `D6Client`, so this package knows nothing of Redis.

`LocalBudget` is the same algorithm on the process' monotonic clock, for tests and single-process use.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import math
import random
import time
from collections.abc import AsyncIterator, Sequence
from typing import Any, Protocol

import structlog

from bridge.errors import StoreError

log = structlog.get_logger(__name__)

JITTER_SHARE = 0.1
JITTER_MAX_SECONDS = 0.01
MAX_SLEEP_SECONDS = 1.0
"""Longest single sleep between two asks; a waiter re-checks at least this often."""


class Budget(Protocol):
    """Something that lets one request go when the rate allows it."""

    async def acquire(self, *, urgent: bool = False) -> float:
        """Wait until one request may be sent; return the seconds waited. An `urgent` caller (a write-back
        command) is served before every caller of this process that is not (docs/commands.md)."""
        ...


class Turns:
    """Whose turn it is to ask the budget, within a process: urgent callers first, then the others, each in
    arrival order. One caller at a time holds the turn (as a lock would) and hands it to the next."""

    def __init__(self) -> None:
        self._busy = False
        self._waiting: list[tuple[int, int, asyncio.Future[None]]] = []
        self._arrivals = 0

    @contextlib.asynccontextmanager
    async def turn(self, *, urgent: bool) -> AsyncIterator[None]:
        if self._busy or self._waiting:
            self._arrivals += 1
            mine: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            heapq.heappush(self._waiting, (0 if urgent else 1, self._arrivals, mine))
            try:
                await mine  # handed the turn by the one before (`_next`)
            except BaseException:
                if mine.done() and not mine.cancelled():
                    self._next()  # handed the turn as it was cancelled: pass it on
                raise
        self._busy = True
        try:
            yield
        finally:
            self._next()

    def _next(self) -> None:
        while self._waiting:
            _, _, waiter = heapq.heappop(self._waiting)
            if not waiter.done():
                waiter.set_result(None)
                return
        self._busy = False


def interval_micros(max_rps: float) -> int:
    """The emission interval, rounded up so rounding can never let the rate exceed `max_rps`."""
    if not max_rps > 0:
        raise ValueError(f"max_rps must be positive, got {max_rps!r}")
    return math.ceil(1_000_000 / max_rps)


class BudgetScript(Protocol):
    """The registered GCRA script (`Scripts.d6_budget`): 0 if a token was taken, else microseconds to wait."""

    async def __call__(self, keys: Sequence[str], args: Sequence[int]) -> Any: ...


class RedisBudget:
    """The shared budget: GCRA in one Lua script on Redis server time."""

    def __init__(self, script: BudgetScript, key: str, max_rps: float) -> None:
        self._script = script
        self._key = key
        self._interval = interval_micros(max_rps)
        self._turns = Turns()

    async def _ask(self) -> float:
        """Seconds to wait; 0 means a token was taken."""
        try:
            wait = await self._script(keys=[self._key], args=[self._interval])
        except Exception as error:  # redis-py raises RedisError; fakeredis may raise others
            raise StoreError(f"d6 request budget unavailable: {type(error).__name__}: {error}") from error
        return max(0, int(wait)) / 1_000_000

    async def acquire(self, *, urgent: bool = False) -> float:
        started = time.monotonic()
        async with self._turns.turn(urgent=urgent):
            while True:
                wait = await self._ask()
                if wait <= 0:
                    return time.monotonic() - started
                await asyncio.sleep(min(wait + self._jitter(), MAX_SLEEP_SECONDS))

    def _jitter(self) -> float:
        """A little randomness on each wake-up, so that processes racing for the same instant win in turn.

        Without it the race is decided the same way every time (the process that just won asks first
        again) and one process can starve the others for seconds. It costs a few percent of the rate.
        """
        return random.uniform(0.0, min(self._interval / 1_000_000 * JITTER_SHARE, JITTER_MAX_SECONDS))


class LocalBudget:
    """The same GCRA on this process' monotonic clock: for tests and runs without Redis."""

    def __init__(self, max_rps: float) -> None:
        self._interval = interval_micros(max_rps) / 1_000_000
        self._tat = 0.0
        self._turns = Turns()

    async def acquire(self, *, urgent: bool = False) -> float:
        started = time.monotonic()
        async with self._turns.turn(urgent=urgent):
            while True:
                now = time.monotonic()
                if self._tat <= now:
                    self._tat = now + self._interval
                    return now - started
                await asyncio.sleep(min(self._tat - now, MAX_SLEEP_SECONDS))


class NoBudget:
    """No limit at all; only for unit tests of other branches."""

    async def acquire(self, *, urgent: bool = False) -> float:
        return 0.0
