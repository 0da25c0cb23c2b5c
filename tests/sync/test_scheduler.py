"""The poll schedule: fair turns under a short budget, and replicas whose jobs fire together."""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import redis.asyncio as aioredis
from structlog.testing import capture_logs

from bridge.d6 import RedisBudget
from bridge.loops import cancelled
from bridge.settings import Settings
from bridge.store.scripts import Scripts
from bridge.sync.scheduler import DueQueue, PhaseTrigger, PollScheduler, phase_seconds


def test_under_a_short_budget_every_school_gets_its_turn() -> None:
    """30 schools due every 10 s; 4 workers whose polls take 2.5 s can do 16 per 10 s. Each school must
    be polled about once per real cycle, in turns: a fire that comes while the school is being polled
    must not be lost (a worker taking it would find the school busy and drop it)."""
    now = 0.0
    queue = DueQueue(clock=lambda: now)
    interval, schools, workers, duration = 10.0, 30, 4, 2.5
    phases = {s: phase_seconds(s, interval) for s in range(schools)}
    polls: Counter[int] = Counter()
    busy: list[tuple[float, int]] = []  # (ends at, school) per worker at work
    dropped = 0
    while now < 300 * interval:
        for school, phase in phases.items():
            if (now - phase) % interval < 0.01:  # this school's job fires
                queue.put(school, now)
        for ends, school in [b for b in busy if b[0] <= now]:
            busy.remove((ends, school))
            queue.done(school)
        while len(busy) < workers and (taken := queue.take()) is not None:
            if any(school == taken[0] for _, school in busy):
                dropped += 1  # "busy": the school is being polled
                queue.done(taken[0])
                continue
            polls[taken[0]] += 1
            busy.append((now + duration, taken[0]))
        now = round(now + 0.01, 2)
    counts = [polls[s] for s in range(schools)]
    assert dropped == 0
    assert sum(counts) >= 300 * workers * interval / duration * 0.95
    assert max(counts) - min(counts) <= 1, sorted(Counter(counts).items())


def test_a_forced_poll_goes_before_schools_that_waited_longer() -> None:
    queue = DueQueue(clock=lambda: 100.0)
    queue.put(1, 10.0)
    queue.put(2, 50.0, force=True)
    assert queue.take() == (2, 50.0, True)
    assert queue.take() == (1, 10.0, False)
    assert queue.take() is None


def test_replicas_that_learn_a_school_at_different_times_fire_it_together_without_drift() -> None:
    interval, jitter = 300.0, 30.0
    school = 1234
    phase = phase_seconds(school, interval)
    early = datetime.fromtimestamp(1_000_000.0, UTC)
    late = datetime.fromtimestamp(1_000_000.0 + 37.0, UTC)  # learned an integrations poll later
    exact = PhaseTrigger(interval, phase)
    assert exact.get_next_fire_time(None, early) == exact.get_next_fire_time(None, late)

    random.seed(7)
    trigger = PhaseTrigger(interval, phase, jitter)
    fire = trigger.get_next_fire_time(None, early)
    for _ in range(1000):  # each fire lands in its own slot's jitter window: no drift
        offset = (fire.timestamp() - phase) % interval
        assert 0 <= offset <= jitter
        following = trigger.get_next_fire_time(fire, fire)
        assert interval - jitter <= (following - fire).total_seconds() <= interval + jitter
        fire = following


def test_a_newly_active_school_is_due_at_once_then_at_its_phase() -> None:
    settings = Settings(
        school_poll_seconds=300.0, poll_jitter_seconds=30.0, resource_poll_seconds={"learners": 60.0}
    )

    async def poll(school_id: int, resource: str, due_at: float, force: bool) -> None:
        raise AssertionError("no worker runs in this test")

    async def integrations() -> None:
        raise AssertionError("no job runs in this test")

    scheduler = PollScheduler(settings, poll_feed=poll, poll_integrations=integrations)
    before = time.time()
    scheduler.sync_schools({1000, 1001})
    taken = [scheduler.queue.take() for _ in range(4)]
    # One feed per school at a time (the school's feeds share its lease); both schools at once.
    assert {t[0] for t in taken if t} == {(1000, "debtors"), (1001, "debtors")}
    assert all(t is None or before <= t[1] <= time.time() for t in taken)
    scheduler.queue.done((1000, "debtors"))
    assert scheduler.queue.take() is not None and scheduler.queue.waiting_since((1000, "learners")) is None
    job = scheduler.scheduler.get_job("feed:1000:debtors")
    assert isinstance(job.trigger, PhaseTrigger) and job.trigger.phase == phase_seconds(1000, 300.0)
    # Each feed at its own interval (BRIDGE_RESOURCE_POLL_SECONDS), its jitter the same share of it.
    job = scheduler.scheduler.get_job("feed:1000:learners")
    assert (job.trigger.interval, job.trigger.jitter) == (60.0, 6.0)


class ListQueue:
    """The queue as it was before the heap: a linear scan for the least (forced, served, due), ties to the
    first to arrive. The heap must hand out exactly what this hands out."""

    def __init__(self, clock: Callable[[], float], group: Callable[[int], int]) -> None:
        self.due: dict[int, tuple[float, bool]] = {}
        self.served: dict[int, float] = {}
        self.polling: set[int] = set()
        self.clock, self.group = clock, group

    def put(self, key: int, due_at: float, force: bool = False) -> None:
        current = self.due.get(key)
        if current is None or due_at < current[0] or (force and not current[1]):
            self.due[key] = (min(due_at, current[0]) if current else due_at, force)

    def discard(self, key: int) -> None:
        self.due.pop(key, None)
        self.served.pop(key, None)

    def take(self) -> tuple[int, float, bool] | None:
        busy = {self.group(p) for p in self.polling}
        ready = [k for k in self.due if k not in self.polling and self.group(k) not in busy]
        if not ready:
            return None
        key = min(
            ready, key=lambda k: (not self.due[k][1], self.served.get(k, float("-inf")), self.due[k][0])
        )
        due_at, force = self.due.pop(key)
        self.served[key] = self.clock()
        self.polling.add(key)
        return key, due_at, force

    def done(self, key: int) -> None:
        self.polling.discard(key)


def test_the_heap_hands_out_exactly_what_the_linear_scan_did() -> None:
    rng = random.Random(17)
    for _ in range(40):
        compare_queues(rng, (lambda k: k // 3) if rng.random() < 0.5 else (lambda k: k))


def compare_queues(rng: random.Random, group: Callable[[int], int]) -> None:
    """Random puts, discards, takes and dones on both queues: the same answers throughout."""
    now = 0.0

    def clock() -> float:
        return now

    heap: DueQueue[int] = DueQueue(clock=clock, group=group)
    scan = ListQueue(clock, group)
    for _ in range(2000):
        now += rng.choice([0.0, 0.0, 1.0, rng.random()])
        action = rng.random()
        key = rng.randrange(40)
        if action < 0.45:
            due = round(now - rng.choice([0, 0, 1, 5, rng.random() * 10]), 1)
            force = rng.random() < 0.1
            heap.put(key, due, force)
            scan.put(key, due, force)
        elif action < 0.5:
            heap.discard(key)
            scan.discard(key)
        elif action < 0.85:
            assert heap.take() == scan.take()
        elif scan.polling:
            done = rng.choice(sorted(scan.polling))
            heap.done(done)
            scan.done(done)


async def test_a_poll_whose_request_budget_cannot_reach_redis_is_a_warning_without_a_traceback() -> None:
    """Every d6 request asks the shared budget first, and the budget wraps the Redis error it meets in a
    `StoreError`. A poll worker logs that as it logs any Redis error (a warning naming it), and goes on
    to its next poll: a replica's log holds no traceback while Redis is away."""
    broken = aioredis.Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.2)
    budget = RedisBudget(Scripts(broken).d6_budget, "k", 10)
    polled: list[tuple[int, str]] = []
    third = asyncio.Event()

    async def poll(school_id: int, resource: str, due_at: float, force: bool) -> None:
        polled.append((school_id, resource))
        if len(polled) == 3:  # the one worker has ended the first two polls, and logged them
            third.set()
        await budget.acquire()

    async def integrations() -> None:
        raise AssertionError("no job runs in this test")

    scheduler = PollScheduler(Settings(), poll_feed=poll, poll_integrations=integrations, workers=1)
    with capture_logs() as logs:
        worker = asyncio.create_task(scheduler._worker(0))
        scheduler.queue.put((1000, "learners"), time.time())
        scheduler.queue.put((1001, "learners"), time.time())
        scheduler.queue.put((1002, "learners"), time.time())
        async with asyncio.timeout(10):
            await third.wait()
        await cancelled(worker)
    await broken.aclose()
    assert polled[:2] == [(1000, "learners"), (1001, "learners")]
    warnings = [e for e in logs if e["event"] == "poll could not reach Redis"]
    assert [(e["log_level"], e["school_id"]) for e in warnings][:2] == [("warning", 1000), ("warning", 1001)]
    assert all(e["error"].startswith("StoreError: d6 request budget unavailable") for e in warnings)
    assert not [e for e in logs if e.get("exc_info")], "no traceback"


async def _polling(poll: Callable[..., Any], started: asyncio.Event) -> PollScheduler:
    """A started scheduler of three workers, one of them in a poll of school 1000 (`poll` sets `started`)."""

    async def integrations() -> None:
        pass

    scheduler = PollScheduler(Settings(), poll_feed=poll, poll_integrations=integrations, workers=3)
    scheduler.start()
    scheduler.queue.put((1000, "learners"), time.time())
    async with asyncio.timeout(10):
        await started.wait()
    return scheduler


async def test_shutdown_lets_a_running_poll_finish_within_the_grace_and_takes_no_new_one() -> None:
    """docs/operations.md: `serve` stops taking new polls and gives running polls up to the grace to
    finish; the idle workers do not hold the shutdown up."""
    started = asyncio.Event()
    finished: list[int] = []
    polled: list[int] = []

    async def poll(school_id: int, resource: str, due_at: float, force: bool) -> None:
        polled.append(school_id)
        started.set()
        await asyncio.sleep(0.5)
        finished.append(school_id)

    scheduler = await _polling(poll, started)
    scheduler.queue.put((1001, "learners"), time.time() + 0.2)  # due while the shutdown waits
    began = time.monotonic()
    await scheduler.shutdown(grace_seconds=5)
    took = time.monotonic() - began
    assert finished == [1000] and polled == [1000]
    assert 0.3 < took < 2.0, took
    assert not scheduler.running


async def test_shutdown_cuts_short_a_poll_still_running_after_the_grace() -> None:
    started = asyncio.Event()
    finished: list[int] = []

    async def poll(school_id: int, resource: str, due_at: float, force: bool) -> None:
        started.set()
        await asyncio.sleep(30)
        finished.append(school_id)

    scheduler = await _polling(poll, started)
    began = time.monotonic()
    await scheduler.shutdown(grace_seconds=0.5)
    assert time.monotonic() - began < 5
    assert finished == []
