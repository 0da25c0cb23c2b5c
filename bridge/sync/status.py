"""What the bridge knows about each feed's polling: last start, last success, last error, counts, cost.

A feed is one watched resource of one school (bridge/catalogue.py). All of a school's feeds are kept in one
small hash per school, one field per (resource, fact): `debtors.last_success`, `learners.count`, ... so
`/v1/schools` reads a school in one round trip and the due check of every replica reads the same facts.
Written only by the replica that holds the feed's lease.

Each complete scan that follows another also adds to the feed's change history (`succeeded(...,
changes=)`): the changes it found and the seconds since the previous scan, summed with older scans decayed
by their age, from which the poll planner estimates the feed's change rate (bridge/sync/planner.py).

`get(school)` also sums the feeds up for the school as a whole: every feed has started a poll since
`last_started` and succeeded since `last_success` (the oldest of the feeds' times; None until each feed has
one), its last error is the latest of any feed, and it fails as much as its worst feed.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Final

import msgspec
import redis.asyncio as aioredis

from bridge.store.codec import as_text
from bridge.store.keys import Keys
from bridge.sync.rates import observe


class FeedStatus(msgspec.Struct, kw_only=True):
    resource: str
    last_started: float | None = None
    last_due: float | None = None
    """When the feed became due for the poll that started last (its job's fire time)."""
    last_success: float | None = None
    last_error: str | None = None
    last_error_at: float | None = None
    count: int | None = None
    """Records in its last complete scan."""
    pages: int | None = None
    """Requests its last complete scan cost."""
    consecutive_failures: int = 0
    scanned_at: float | None = None
    """When the last complete scan started: the moment its snapshot describes."""
    changes: int | None = None
    """Changes (events) its last complete scan found."""
    decayed_changes: float = 0.0
    """Changes found by its scans, each weighed by its age (bridge/sync/rates.py `observe`)."""
    decayed_seconds: float = 0.0
    """Seconds those scans covered, weighed the same way; 0 until a scan follows another."""
    decayed_at: float | None = None
    """When the two sums were last brought up to date."""


class PollStatus(msgspec.Struct, kw_only=True):
    school_id: int
    last_started: float | None = None
    last_due: float | None = None
    last_success: float | None = None
    last_error: str | None = None
    last_error_at: float | None = None
    learners: int | None = None
    debtors: int | None = None
    consecutive_failures: int = 0
    feeds: dict[str, FeedStatus] = {}


_FLOATS: Final = (
    "last_started",
    "last_due",
    "last_success",
    "last_error_at",
    "scanned_at",
    "decayed_changes",
    "decayed_seconds",
    "decayed_at",
)
_INTS: Final = ("count", "pages", "consecutive_failures", "changes")
_HISTORY: Final = ("last_started", "scanned_at", "decayed_changes", "decayed_seconds", "decayed_at")


class PollStatusStore:
    def __init__(self, redis: aioredis.Redis, keys: Keys, resources: Sequence[str] = ("debtors", "learners")):
        self._redis = redis
        self._keys = keys
        self.resources = tuple(resources)
        """The watched feeds: the school's summary covers these."""

    async def get(self, school_id: int) -> PollStatus:
        raw = await self._redis.hgetall(self._keys.poll_status(school_id))
        return _summary(school_id, _feeds(raw, self.resources))

    async def failing(self, school_ids: Sequence[int]) -> set[int]:
        """The schools whose last poll of some watched feed failed, in one round trip."""
        fields = [f"{resource}.consecutive_failures" for resource in self.resources]
        async with self._redis.pipeline(transaction=False) as pipe:
            for school_id in school_ids:
                pipe.hmget(self._keys.poll_status(school_id), fields)
            replies = await pipe.execute()
        return {s for s, values in zip(school_ids, replies, strict=True) if any(v and int(v) for v in values)}

    async def feeds_of(self, feeds: Sequence[tuple[int, str]]) -> dict[tuple[int, str], FeedStatus]:
        """The status of each of these (school, resource) feeds, one HGETALL a school in one round trip
        (the poll planner reads every active feed this way)."""
        schools = sorted({school_id for school_id, _ in feeds})
        async with self._redis.pipeline(transaction=False) as pipe:
            for school_id in schools:
                pipe.hgetall(self._keys.poll_status(school_id))
            replies = await pipe.execute()
        found = {}
        for school_id, raw in zip(schools, replies, strict=True):
            found[school_id] = _feeds(raw, {resource for s, resource in feeds if s == school_id})
        return {(school_id, resource): found[school_id][resource] for school_id, resource in feeds}

    async def feed(self, school_id: int, resource: str) -> FeedStatus:
        fields = [f"{resource}.{name}" for name in (*_FLOATS, *_INTS)]
        values = await self._redis.hmget(self._keys.poll_status(school_id), fields)
        feed = FeedStatus(resource=resource)
        for name, value in zip((*_FLOATS, *_INTS), values, strict=True):
            if value is not None:
                setattr(feed, name, float(as_text(value)) if name in _FLOATS else int(as_text(value)))
        return feed

    async def started(
        self, school_id: int, resource: str, at: float | None = None, *, due_at: float | None = None
    ) -> None:
        now = at or time.time()
        mapping = {
            f"{resource}.last_started": repr(now),
            f"{resource}.last_due": repr(min(due_at or now, now)),
        }
        await self._redis.hset(self._keys.poll_status(school_id), mapping=mapping)  # type: ignore[arg-type]

    async def succeeded(
        self, school_id: int, resource: str, count: int, pages: int, *, changes: int | None = None
    ) -> float | None:
        """Record a complete scan. With `changes` (what it found), it also adds to the feed's change history
        and returns the seconds since the previous complete scan (None for a first scan). Read, then
        written, under the feed's lease: no other replica writes this feed meanwhile."""
        key = self._keys.poll_status(school_id)
        now = time.time()
        mapping = {
            f"{resource}.last_success": repr(now),
            f"{resource}.consecutive_failures": "0",
            f"{resource}.count": str(count),
            f"{resource}.pages": str(pages),
        }
        interval = None
        if changes is not None:
            values = await self._redis.hmget(key, [f"{resource}.{name}" for name in _HISTORY])
            started, scanned, summed, seconds, at = (None if v is None else float(as_text(v)) for v in values)
            started = now if started is None else min(started, now)
            if scanned is not None and started > scanned:
                interval = started - scanned
                summed, seconds = observe(summed or 0.0, seconds or 0.0, at, interval, changes, started)
                mapping[f"{resource}.decayed_changes"] = repr(summed)
                mapping[f"{resource}.decayed_seconds"] = repr(seconds)
                mapping[f"{resource}.decayed_at"] = repr(started)
            mapping[f"{resource}.scanned_at"] = repr(started)
            mapping[f"{resource}.changes"] = str(changes)
        await self._redis.hset(key, mapping=mapping)  # type: ignore[arg-type]
        return interval

    async def failed(self, school_id: int, resource: str, error: str) -> None:
        key = self._keys.poll_status(school_id)
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.hset(
                key,
                mapping={
                    f"{resource}.last_error": error[:500],
                    f"{resource}.last_error_at": repr(time.time()),
                },
            )
            pipe.hincrby(key, f"{resource}.consecutive_failures", 1)
            await pipe.execute()


def _feeds(raw: Mapping[Any, Any], resources: Iterable[str]) -> dict[str, FeedStatus]:
    """The feeds of one school's status hash."""
    feeds = {name: FeedStatus(resource=name) for name in resources}
    for key, value in raw.items():
        resource, _, name = as_text(key).partition(".")
        feed = feeds.get(resource)
        if feed is None or not name:
            continue  # a feed no longer watched, or a field of an older layout
        text = as_text(value)
        if name in _FLOATS:
            setattr(feed, name, float(text))
        elif name in _INTS:
            setattr(feed, name, int(text))
        elif name == "last_error":
            feed.last_error = text
    return feeds


def _summary(school_id: int, feeds: dict[str, FeedStatus]) -> PollStatus:
    started = [f.last_started for f in feeds.values()]
    dues = [f.last_due for f in feeds.values() if f.last_due is not None]
    successes = [f.last_success for f in feeds.values()]
    errors = [f for f in feeds.values() if f.last_error_at is not None]
    latest_error = max(errors, key=lambda f: f.last_error_at or 0.0, default=None)
    return PollStatus(
        school_id=school_id,
        last_started=_oldest(started),
        last_due=min(dues, default=None),
        last_success=_oldest(successes),
        last_error=latest_error.last_error if latest_error else None,
        last_error_at=latest_error.last_error_at if latest_error else None,
        learners=feeds["learners"].count if "learners" in feeds else None,
        debtors=feeds["debtors"].count if "debtors" in feeds else None,
        consecutive_failures=max((f.consecutive_failures for f in feeds.values()), default=0),
        feeds=feeds,
    )


def _oldest(times: list[float | None]) -> float | None:
    """The oldest of every feed's time, None until every feed has one: "each feed has, since then"."""
    if not times or any(t is None for t in times):
        return None
    return min(t for t in times if t is not None)
