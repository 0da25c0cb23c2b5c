"""When to poll: APScheduler jobs feed a fair queue that a few poll workers drain.

One interval job per active school (with jitter, `max_instances=1`, coalescing, misfire grace) marks the
school due. Due schools wait in a queue that hands out the longest-waiting school first, so when the d6
budget cannot cover every school in an interval, schools are served fairly and nothing piles up: a
school is in the queue at most once, however many intervals it misses. Its lag is how long it has waited.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta

import structlog
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from redis.exceptions import RedisError

from bridge.settings import Settings

log = structlog.get_logger(__name__)

INTEGRATIONS_JOB = "integrations"
SCHOOL_JOB = "school:{}"

PollFn = Callable[[int, float, bool], Awaitable[None]]
"""poll_school(school_id, due_at, force): due_at is when the school became due (Unix time)."""


class DueQueue:
    """Schools waiting for a poll, keyed by the time they became due; the oldest comes out first."""

    def __init__(self) -> None:
        self._due: dict[int, tuple[float, bool]] = {}
        self._changed = asyncio.Event()

    def __len__(self) -> int:
        return len(self._due)

    def put(self, school_id: int, due_at: float, force: bool = False) -> None:
        """Mark a school due; if it is already waiting it keeps its earlier place."""
        current = self._due.get(school_id)
        if current is None or due_at < current[0] or (force and not current[1]):
            self._due[school_id] = (min(due_at, current[0]) if current else due_at, force)
        self._changed.set()

    def discard(self, school_id: int) -> None:
        self._due.pop(school_id, None)

    def waiting_since(self, school_id: int) -> float | None:
        entry = self._due.get(school_id)
        return entry[0] if entry else None

    async def get(self) -> tuple[int, float, bool]:
        """The longest-waiting school, its due time and whether the poll was forced."""
        while not self._due:
            self._changed.clear()
            await self._changed.wait()
        school_id = min(self._due, key=lambda s: self._due[s][0])
        due_at, force = self._due.pop(school_id)
        return school_id, due_at, force


class PollScheduler:
    """The APScheduler jobs and the poll workers of one process."""

    def __init__(
        self,
        settings: Settings,
        *,
        poll_school: PollFn,
        poll_integrations: Callable[[], Awaitable[None]],
        workers: int = 4,
    ) -> None:
        self.settings = settings
        self._poll_school = poll_school
        self._poll_integrations = poll_integrations
        self._workers = workers
        self.queue = DueQueue()
        self.scheduler = AsyncIOScheduler(timezone=UTC)
        self._tasks: list[asyncio.Task[None]] = []
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
        self._tasks = [
            asyncio.create_task(self._worker(n), name=f"poll-worker-{n}") for n in range(self._workers)
        ]

    async def shutdown(self, grace_seconds: float = 10.0) -> None:
        """Stop taking new polls; give running polls `grace_seconds` to finish, then cancel them."""
        if self.scheduler.running:
            self.scheduler.shutdown(wait=False)
        for task in self._tasks:
            task.cancel()
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=grace_seconds)
        self._tasks = []

    def sync_schools(self, active: set[int]) -> None:
        """Add a job for every newly active school and remove the jobs of schools no longer active."""
        interval = self.settings.school_poll_seconds
        for school_id in sorted(active - self.schools):
            # New schools start soon, spread over the jitter window so a restart does not stampede d6.
            first = datetime.now(UTC) + timedelta(
                seconds=random.uniform(0, self.settings.poll_jitter_seconds)
            )
            self.scheduler.add_job(
                self._mark_due,
                "interval",
                args=(school_id,),
                seconds=interval,
                jitter=self.settings.poll_jitter_seconds or None,
                id=SCHOOL_JOB.format(school_id),
                next_run_time=first,
                max_instances=1,
                coalesce=True,
                misfire_grace_time=max(1, int(interval)),
                replace_existing=True,
            )
        for school_id in sorted(self.schools - active):
            with contextlib.suppress(Exception):
                self.scheduler.remove_job(SCHOOL_JOB.format(school_id))
            self.queue.discard(school_id)
        if active != self.schools:
            log.info(
                "schools scheduled",
                active=len(active),
                added=len(active - self.schools),
                removed=len(self.schools - active),
            )
        self.schools = set(active)

    def request_poll(self, school_id: int) -> None:
        """Poll this school as soon as a worker is free, even if it is not due."""
        self.queue.put(school_id, time.time(), force=True)

    def lag_seconds(self, school_id: int) -> float:
        """How long the school has been waiting beyond its due time (0 when it is not waiting)."""
        since = self.queue.waiting_since(school_id)
        return 0.0 if since is None else max(0.0, time.time() - since)

    def max_lag_seconds(self) -> float:
        return max((self.lag_seconds(s) for s in list(self.schools)), default=0.0)

    async def _mark_due(self, school_id: int) -> None:
        self.queue.put(school_id, time.time())

    async def _worker(self, number: int) -> None:
        while True:
            school_id, due_at, force = await self.queue.get()
            try:
                await self._poll_school(school_id, due_at, force)
            except asyncio.CancelledError:
                raise
            except (RedisError, OSError) as error:
                log.warning(
                    "poll could not reach Redis",
                    school_id=school_id,
                    error=f"{type(error).__name__}: {error}",
                )
            except Exception:
                log.exception("poll crashed", school_id=school_id, worker=number)
