"""What the bridge knows about each feed's polling: last start, last success, last error, counts, cost.

A feed is one watched resource of one school (bridge/catalogue.py). All of a school's feeds are kept in one
small hash per school, one field per (resource, fact): `debtors.last_success`, `learners.count`, ... so
`/v1/schools` reads a school in one round trip and the due check of every replica reads the same facts.
Written only by the replica that holds the feed's lease.

`get(school)` also sums the feeds up for the school as a whole: every feed has started a poll since
`last_started` and succeeded since `last_success` (the oldest of the feeds' times; None until each feed has
one), its last error is the latest of any feed, and it fails as much as its worst feed.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Final

import msgspec
import redis.asyncio as aioredis

from bridge.store.codec import as_text
from bridge.store.keys import Keys


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


_FLOATS: Final = ("last_started", "last_due", "last_success", "last_error_at")
_INTS: Final = ("count", "pages", "consecutive_failures")


class PollStatusStore:
    def __init__(self, redis: aioredis.Redis, keys: Keys, resources: Sequence[str] = ("debtors", "learners")):
        self._redis = redis
        self._keys = keys
        self.resources = tuple(resources)
        """The watched feeds: the school's summary covers these."""

    async def get(self, school_id: int) -> PollStatus:
        raw = await self._redis.hgetall(self._keys.poll_status(school_id))
        feeds = {name: FeedStatus(resource=name) for name in self.resources}
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
        return _summary(school_id, feeds)

    async def failing(self, school_ids: Sequence[int]) -> set[int]:
        """The schools whose last poll of some watched feed failed, in one round trip."""
        fields = [f"{resource}.consecutive_failures" for resource in self.resources]
        async with self._redis.pipeline(transaction=False) as pipe:
            for school_id in school_ids:
                pipe.hmget(self._keys.poll_status(school_id), fields)
            replies = await pipe.execute()
        return {s for s, values in zip(school_ids, replies, strict=True) if any(v and int(v) for v in values)}

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

    async def succeeded(self, school_id: int, resource: str, count: int, pages: int) -> None:
        mapping = {
            f"{resource}.last_success": repr(time.time()),
            f"{resource}.consecutive_failures": "0",
            f"{resource}.count": str(count),
            f"{resource}.pages": str(pages),
        }
        await self._redis.hset(self._keys.poll_status(school_id), mapping=mapping)  # type: ignore[arg-type]

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
