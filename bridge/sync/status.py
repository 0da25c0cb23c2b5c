"""What the bridge knows about each school's polling: last start, last success, last error, counts.

Kept in one small hash per school so `/v1/schools` and the due check of every replica read the same
facts. Written only by the replica that holds the school's lease.
"""

from __future__ import annotations

import time

import msgspec
import redis.asyncio as aioredis

from bridge.store.codec import as_text
from bridge.store.keys import Keys


class PollStatus(msgspec.Struct, kw_only=True):
    school_id: int
    last_started: float | None = None
    last_due: float | None = None
    """When the school became due for the poll that started last (its job's fire time)."""
    last_success: float | None = None
    last_error: str | None = None
    last_error_at: float | None = None
    learners: int | None = None
    debtors: int | None = None
    consecutive_failures: int = 0


_FLOATS = ("last_started", "last_due", "last_success", "last_error_at")
_INTS = ("learners", "debtors", "consecutive_failures")


class PollStatusStore:
    def __init__(self, redis: aioredis.Redis, keys: Keys) -> None:
        self._redis = redis
        self._keys = keys

    async def get(self, school_id: int) -> PollStatus:
        raw = await self._redis.hgetall(self._keys.poll_status(school_id))
        fields: dict[str, object] = {"school_id": school_id}
        for key, value in raw.items():
            name, text = as_text(key), as_text(value)
            if name in _FLOATS:
                fields[name] = float(text)
            elif name in _INTS:
                fields[name] = int(text)
            elif name == "last_error":
                fields[name] = text
        return msgspec.convert(fields, PollStatus)

    async def started(self, school_id: int, at: float | None = None, *, due_at: float | None = None) -> None:
        now = at or time.time()
        mapping = {"last_started": repr(now), "last_due": repr(min(due_at or now, now))}
        await self._redis.hset(self._keys.poll_status(school_id), mapping=mapping)  # type: ignore[arg-type]

    async def succeeded(self, school_id: int, counts: dict[str, int]) -> None:
        mapping: dict[str, str] = {"last_success": repr(time.time()), "consecutive_failures": "0"}
        mapping.update({name: str(count) for name, count in counts.items()})  # "debtors": 40, ...
        await self._redis.hset(self._keys.poll_status(school_id), mapping=mapping)  # type: ignore[arg-type]

    async def failed(self, school_id: int, error: str) -> None:
        key = self._keys.poll_status(school_id)
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.hset(key, mapping={"last_error": error[:500], "last_error_at": repr(time.time())})
            pipe.hincrby(key, "consecutive_failures", 1)
            await pipe.execute()
