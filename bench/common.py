"""What every benchmark shares: a throwaway Redis, simulator-made records, timing and the verdict line."""

from __future__ import annotations

import random
import statistics
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import redis.asyncio as aioredis

from bridge.logs import configure_logging
from bridge.simulator.data import learner_update
from bridge.simulator.state import School, World
from bridge.store.redis import connect
from bridge.testing.redis import redis_server
from bridge.testing.settings import fast_settings

Record = dict[str, Any]
SEED = 7


@asynccontextmanager
async def private_redis() -> AsyncIterator[aioredis.Redis]:
    """A client on a redis-server of our own, started on a free port (never the shared 6379), connected as
    the bridge connects (bridge/store/redis.py `connect`): the baselines that use it get the same client."""
    with redis_server() as url:
        client = connect(fast_settings(redis_url=url))
        try:
            yield client
        finally:
            await client.aclose()


def quiet_logs() -> None:
    """Warnings and errors only: a benchmark's output is its figures."""
    configure_logging(level="warning", fmt="console")


def make_school(school_id: int, *, learners: int = 0, debtors: int = 0) -> School:
    """A school generated exactly as the simulator seeds one (same fields, types and quirks)."""
    return World(SEED).add_school(school_id, learners=learners, debtors=debtors)


def with_changes(records: list[Record], count: int, seed: int = SEED) -> list[Record]:
    """A copy of learner records in which `count` of them changed the way the simulator's churn does."""
    rng = random.Random(seed)
    changed = list(records)
    for index in rng.sample(range(len(records)), count):
        while changed[index] == records[index]:  # a new grade can be the old one: draw again
            changed[index] = {**records[index], **learner_update(rng, records[index])}
    return changed


async def median_seconds(
    repeats: int, prepare: Callable[[], Awaitable[Any]], run: Callable[[], Awaitable[Any]]
) -> float:
    """Median wall time of `run` over `repeats`, each after an untimed `prepare`."""
    (median,) = await paired_median_seconds(repeats, (prepare, run))
    return median


async def paired_median_seconds(
    repeats: int, *runs: tuple[Callable[[], Awaitable[Any]], Callable[[], Awaitable[Any]]]
) -> list[float]:
    """`median_seconds` of several (prepare, run) pairs taken in turns, one of each per round: a slow spell
    of a shared machine falls on all of them alike, so their ratio is steadier than that of medians taken
    one after the other."""
    times: list[list[float]] = [[] for _ in runs]
    for _ in range(repeats):
        for (prepare, run), spent in zip(runs, times, strict=True):
            await prepare()
            started = time.perf_counter()
            await run()
            spent.append(time.perf_counter() - started)
    return [statistics.median(spent) for spent in times]


def verdict(name: str, passed: bool, target: str) -> bool:
    print(f"{name}: {'PASS' if passed else 'FAIL'} (target {target})")
    return passed
