"""When to poll: APScheduler jobs feed a fair queue that a few poll workers drain.

What is polled is a *feed*: one watched resource of one school (bridge/catalogue.py), at that resource's
interval (`BRIDGE_RESOURCE_POLL_SECONDS`, else `BRIDGE_SCHOOL_POLL_SECONDS`). One interval job per feed of
every active school (with jitter, `max_instances=1`, coalescing, misfire grace) marks the feed due. Each
job fires at a fixed phase of its interval derived from the school's id, the same in every replica
whenever it learned of the school, so the replicas' jobs for a feed fire together (give or take the
jitter) and whichever is first polls it: the work spreads over the replicas, and the schools spread evenly
over the interval instead of arriving at d6 in bursts. A newly active school's feeds are also marked due
at once, so its first poll does not wait for its phase.

Due feeds wait in a queue that hands out the feed that has waited longest since this process last
handed it out, so when the d6 budget cannot cover every feed in an interval, feeds take turns and
each is polled about once per real cycle; nothing piles up: a feed is in the queue at most once,
however many intervals it misses. Its lag is how long it has waited beyond its due time.

Under `BRIDGE_POLL_PLANNING=adaptive` a planner (bridge/sync/planner.py) is derived again from the shared
poll status every `refresh_seconds`. While its plan binds (the budget cannot cover every feed at its
target interval), the waiting feeds go in the order of their planned turns instead (forced polls and feeds
never polled still first), each poll records its turn as its due time, and a feed's lag is how long it has
waited beyond its turn. While the plan does not bind, nothing differs from `fixed`.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import math
import random
import statistics
import time
from collections.abc import Awaitable, Callable, Hashable, Sequence
from datetime import UTC, datetime
from typing import Generic, TypeVar

import structlog
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.base import BaseTrigger

from bridge import metrics
from bridge.catalogue import BY_NAME
from bridge.errors import UNREACHABLE
from bridge.loops import cancelled
from bridge.settings import Settings
from bridge.sync.planner import Planner, estimate
from bridge.sync.status import FeedStatus

log = structlog.get_logger(__name__)

INTEGRATIONS_JOB = "integrations"
PLAN_JOB = "plan"
FEED_JOB = "feed:{}:{}"

Feed = tuple[int, str]
"""(school id, resource name)."""
PollFn = Callable[[int, str, float, bool], Awaitable[None]]
"""poll_feed(school_id, resource, due_at, force): due_at is when the feed became due (Unix time)."""
K = TypeVar("K", bound=Hashable)


def phase_seconds(school_id: int, interval: float) -> float:
    """Where in each interval the school's job fires: the same for every replica, spread evenly."""
    return ((school_id * 2654435761) % 2**32) / 2**32 * interval


class PhaseTrigger(BaseTrigger):  # type: ignore[misc]
    """Every `interval` seconds at a fixed phase, plus up to `jitter` seconds drawn anew each time.

    APScheduler's own interval trigger adds each fire's jitter to the next fire, so its schedule drifts
    later by half the jitter an interval, differently in each replica; this one never drifts.
    """

    def __init__(self, interval: float, phase: float, jitter: float = 0.0) -> None:
        self.interval = interval
        self.phase = phase
        self.jitter = jitter

    def get_next_fire_time(self, previous_fire_time: datetime | None, now: datetime) -> datetime:
        after = now.timestamp()
        if previous_fire_time is not None:
            after = max(after, previous_fire_time.timestamp())
        slot = math.floor((after - self.phase) / self.interval) + 1
        jitter = random.uniform(0, self.jitter) if self.jitter else 0.0
        return datetime.fromtimestamp(self.phase + slot * self.interval + jitter, UTC)


class DueQueue(Generic[K]):
    """Feeds (or schools) waiting for a poll. Forced polls come out first; then the one handed out longest
    ago (never handed out counts as longest), so under a short budget every feed gets its turn before any
    gets a second one; then the earliest due, then the first to arrive. A fire that arrives while the feed
    waits keeps its earlier due time. With `turn` set (a binding poll plan), the planned turn takes the
    place of "handed out longest ago".

    The waiting keys sit in a heap ordered by that key, so a take costs O(log n) with thousands waiting;
    an entry left behind (by a discard, or a put that moved its key) is dropped or put back with its
    current key when it comes out, and `reorder` rebuilds the heap when the turns change.
    """

    def __init__(
        self, clock: Callable[[], float] = time.time, group: Callable[[K], Hashable] | None = None
    ) -> None:
        self._due: dict[K, tuple[float, bool]] = {}
        self._served: dict[K, float] = {}
        self._polling: set[K] = set()
        self._clock = clock
        self._group = group
        """Keys of one group (a school's feeds) are handed out one at a time: they share one lease."""
        self._changed = asyncio.Event()
        self._heap: list[tuple[tuple[bool, float, float], int, K]] = []
        self._arrival: dict[K, int] = {}
        self._arrivals = itertools.count()
        self.turn: Callable[[K], float] | None = None
        """The planned turn of a key, earliest first, while a poll plan binds; None: longest ago first."""

    def __len__(self) -> int:
        return len(self._due)

    def put(self, school_id: K, due_at: float, force: bool = False) -> None:
        """Mark a school due; if it is already waiting it keeps its earlier place."""
        current = self._due.get(school_id)
        if current is None or due_at < current[0] or (force and not current[1]):
            self._due[school_id] = (min(due_at, current[0]) if current else due_at, force)
            if current is None:
                self._arrival[school_id] = next(self._arrivals)
            self._push(school_id)
        self._changed.set()

    def discard(self, school_id: K) -> None:
        self._due.pop(school_id, None)
        self._served.pop(school_id, None)
        self._arrival.pop(school_id, None)

    def reorder(self) -> None:
        """Rebuild the heap: the turns (or `turn` itself) changed."""
        self._heap = [(self._key(k), self._arrival[k], k) for k in self._due]
        heapq.heapify(self._heap)

    def _key(self, key: K) -> tuple[bool, float, float]:
        due_at, force = self._due[key]
        order = self.turn(key) if self.turn is not None else self._served.get(key, -math.inf)
        return (not force, order, due_at)

    def _push(self, key: K) -> None:
        if len(self._heap) > 2 * len(self._due) + 64:
            self.reorder()  # mostly entries left behind: start afresh
        else:
            heapq.heappush(self._heap, (self._key(key), self._arrival[key], key))

    def waiting_since(self, school_id: K) -> float | None:
        entry = self._due.get(school_id)
        return entry[0] if entry else None

    def take(self) -> tuple[K, float, bool] | None:
        """The next school (see the class), its due time and whether it was forced; None when none is
        ready. A school being polled here stays waiting until `done`: a fire that arrives during its poll
        is kept for after it, not spent on a worker that would find the school busy."""
        busy = {self._group(p) for p in self._polling} if self._group is not None else set()
        held: list[tuple[tuple[bool, float, float], int, K]] = []
        school_id = None
        while self._heap:
            entry = heapq.heappop(self._heap)
            key, arrival, candidate = entry
            if candidate not in self._due or self._arrival[candidate] != arrival:
                continue  # left behind by a discard or a take
            if key != (current := self._key(candidate)):
                heapq.heappush(self._heap, (current, arrival, candidate))  # left behind by a put
                continue
            if candidate in self._polling or (self._group is not None and self._group(candidate) in busy):
                held.append(entry)
                continue
            school_id = candidate
            break
        for entry in held:
            heapq.heappush(self._heap, entry)
        if school_id is None:
            return None
        due_at, force = self._due.pop(school_id)
        del self._arrival[school_id]
        self._served[school_id] = self._clock()
        self._polling.add(school_id)
        return school_id, due_at, force

    def done(self, school_id: K) -> None:
        """The poll `take` handed out has ended."""
        self._polling.discard(school_id)
        self._changed.set()

    async def get(self) -> tuple[K, float, bool]:
        """`take`, waiting until a school is ready."""
        while (taken := self.take()) is None:
            self._changed.clear()
            await self._changed.wait()
        return taken


class PollScheduler:
    """The APScheduler jobs and the poll workers of one process."""

    def __init__(
        self,
        settings: Settings,
        *,
        poll_feed: PollFn,
        poll_integrations: Callable[[], Awaitable[None]],
        workers: int = 4,
        resources: Sequence[str] | None = None,
        planner: Planner | None = None,
    ) -> None:
        self.settings = settings
        self._poll_feed = poll_feed
        self._poll_integrations = poll_integrations
        self._workers = workers
        self.resources = tuple(resources if resources is not None else settings.resources)
        self.queue: DueQueue[Feed] = DueQueue(group=_school_of)
        self.planner = planner
        """The poll planner (`BRIDGE_POLL_PLANNING=adaptive`); None: `fixed`."""
        self.scheduler = AsyncIOScheduler(timezone=UTC)
        self._tasks: list[asyncio.Task[None]] = []
        self._polling: set[asyncio.Task[None]] = set()
        """The poll workers in a poll now (the others wait for one)."""
        self._stopping = False
        self.schools: set[int] = set()

    @property
    def running(self) -> bool:
        return bool(self.scheduler.running) and all(not t.done() for t in self._tasks)

    def start(self) -> None:
        self.scheduler.start()
        self.scheduler.add_job(
            self._poll_integrations,
            "interval",
            seconds=self.settings.integrations_poll_seconds,
            id=INTEGRATIONS_JOB,
            next_run_time=datetime.now(UTC),
            max_instances=1,
            coalesce=True,
            misfire_grace_time=max(1, int(self.settings.integrations_poll_seconds)),
        )
        if self.planner is not None:
            self.scheduler.add_job(
                self._replan,
                "interval",
                seconds=self.planner.refresh_seconds,
                id=PLAN_JOB,
                max_instances=1,
                coalesce=True,
                misfire_grace_time=max(1, int(self.planner.refresh_seconds)),
            )
        self._stopping = False
        self._tasks = [
            asyncio.create_task(self._worker(n), name=f"poll-worker-{n}") for n in range(self._workers)
        ]

    async def shutdown(self, grace_seconds: float = 10.0) -> None:
        """Stop taking new polls; give running polls `grace_seconds` to finish, then cut them short (a poll
        cut short commits nothing: its feed is polled again). docs/operations.md says so."""
        self._stopping = True
        if self.scheduler.running:
            self.scheduler.shutdown(wait=False)
        await cancelled(*(task for task in self._tasks if task not in self._polling))  # none to finish
        polling = [task for task in self._tasks if not task.done()]
        if polling:
            await asyncio.wait(polling, timeout=grace_seconds)
            await cancelled(*polling)
        self._tasks = []

    def sync_schools(self, active: set[int]) -> None:
        """Add a job for every feed of each newly active school; remove those of schools no longer active."""
        now = time.time()
        for school_id in sorted(active - self.schools):
            for resource in self.resources:
                # Due now (a replica that polled it less than an interval ago makes the others skip), and
                # from then on at the school's own phase, like every other replica. The poll records `now`
                # as its due time, so a phase that comes sooner than an interval later is skipped: the feed
                # falls into its phase within two intervals, never polled twice in one.
                interval = self.settings.feed_interval(resource)
                self.queue.put((school_id, resource), now)
                self.scheduler.add_job(
                    self._mark_due,
                    PhaseTrigger(
                        interval, phase_seconds(school_id, interval), self.settings.feed_jitter(resource)
                    ),
                    args=(school_id, resource),
                    id=FEED_JOB.format(school_id, resource),
                    max_instances=1,
                    coalesce=True,
                    misfire_grace_time=max(1, int(interval)),
                    replace_existing=True,
                )
        for school_id in sorted(self.schools - active):
            for resource in self.resources:
                with contextlib.suppress(Exception):
                    self.scheduler.remove_job(FEED_JOB.format(school_id, resource))
                self.queue.discard((school_id, resource))
        if active != self.schools:
            log.info(
                "schools scheduled",
                active=len(active),
                added=len(active - self.schools),
                removed=len(self.schools - active),
                feeds_per_school=len(self.resources),
            )
        self.schools = set(active)

    def request_poll(self, school_id: int, resource: str | None = None) -> None:
        """Poll this school's feeds (or one of them) as soon as a worker is free, even if not due."""
        for name in self.resources if resource is None else (resource,):
            self.queue.put((school_id, name), time.time(), force=True)

    def request_polls(self, school_ids: set[int]) -> None:
        """One poll of the first feed of each of these schools (the retries of denied schools: one data
        call tells whether d6 reads them again)."""
        for school_id in sorted(school_ids):
            self.request_poll(school_id, self.resources[0])

    def lag_seconds(self, school_id: int) -> float:
        """How long the school's most overdue feed has been waiting beyond its due time (0 when none);
        while a plan binds, beyond its planned turn."""
        now = time.time()
        turn = self.queue.turn
        waits = []
        for resource in self.resources:
            since = self.queue.waiting_since((school_id, resource))
            if since is not None:
                waits.append(since if turn is None else max(since, turn((school_id, resource))))
        return max((max(0.0, now - since) for since in waits), default=0.0)

    def change_rate(self, school_id: int, status: FeedStatus) -> float | None:
        """The feed's estimated changes a second: the rate its plan used, else its own history's."""
        if self.planner is not None and (rate := self.planner.rate((school_id, status.resource))) is not None:
            return rate
        return estimate(status, time.time())

    def planned_interval(self, school_id: int, resource: str) -> float:
        """The feed's planned interval: its target, unless a binding plan says otherwise."""
        if self.planner is None:
            return self.settings.feed_interval(resource)
        return self.planner.interval((school_id, resource))

    async def _replan(self) -> None:
        """Derive the plan again from the shared poll status, and order the queue by it while it binds."""
        assert self.planner is not None
        feeds = [(school_id, r) for school_id in sorted(self.schools) for r in self.resources]
        was = self.planner.binding
        try:
            plan = await self.planner.refresh(feeds)
        except UNREACHABLE as error:
            log.warning("poll plan not refreshed", error=f"{type(error).__name__}: {error}")
            return
        self.queue.turn = self.planner.turn if plan.binding else None
        self.queue.reorder()
        for resource in self.resources:
            intervals = [plan.intervals[f] for f in feeds if f[1] == resource]
            if intervals:
                prefix = BY_NAME[resource].prefix
                for stat, value in (
                    ("min", min(intervals)),
                    ("median", statistics.median(intervals)),
                    ("max", max(intervals)),
                ):
                    metrics.PLANNED_INTERVAL.labels(resource=prefix, stat=stat).set(value)
        if plan.binding != was:
            log.info(
                "poll plan binds" if plan.binding else "poll plan covers every feed at its target",
                budget_rps=round(plan.budget, 2),
                demand_rps=round(plan.demand, 2),
                feeds=len(feeds),
                expected_lag_seconds=round(lag, 1) if (lag := plan.expected_lag()) is not None else None,
            )

    def max_lag_seconds(self) -> float:
        return max((self.lag_seconds(s) for s in list(self.schools)), default=0.0)

    async def _mark_due(self, school_id: int, resource: str) -> None:
        self.queue.put((school_id, resource), time.time())

    async def _worker(self, number: int) -> None:
        worker = asyncio.current_task()
        assert worker is not None
        while not self._stopping:
            feed, due_at, force = await self.queue.get()
            school_id, resource = feed
            if self.planner is not None and not force:
                due_at = self.planner.handed_out(feed, due_at, time.time())
            self._polling.add(worker)  # no await since the get: `shutdown` finds it polling or waiting
            try:
                await self._poll_feed(school_id, resource, due_at, force)
            except asyncio.CancelledError:
                raise
            except UNREACHABLE as error:
                log.warning(
                    "poll could not reach Redis",
                    school_id=school_id,
                    resource=resource,
                    error=f"{type(error).__name__}: {error}",
                )
            except Exception:
                log.exception("poll crashed", school_id=school_id, resource=resource, worker=number)
            finally:
                self._polling.discard(worker)
                self.queue.done(feed)


def _school_of(feed: Feed) -> int:
    return feed[0]
