"""Noticing that Redis lost the bridge's data (a restart without persistence, a flush).

The first replica to start writes a marker key with a random id. Every replica reads it before each
integrations tick and each school poll (bridge/app.py), and remembers the id it saw. The store was reset
when a replica finds:

- the marker gone while it knew one;
- a marker with another id than the one it knew (a replica that never knew the lost data looked first and
  wrote a new one);
- no marker, but the bridge's other keys (`{schools}:known`, `{integrations}:baseline`, ...), even as a
  brand-new replica: the marker alone was lost.

A brand-new replica that finds an empty store is a first start, not a reset. A replica that finds the reset
logs one error and counts it (`d6_bridge_store_resets_total`), and records in the marker when it was found
(`reset_at`), so that every replica, including one that never knew the lost data, shows it in readiness
for an hour and keeps the schools' new baselines silent (`recent_reset`), even under
`BRIDGE_EMIT_INITIAL_SNAPSHOT`. A store that was reset while no replica ran cannot be told from a new
deployment. See docs/operations.md, store resets.

A marker without `reset_at` is *unconfirmed* while it is young (`unconfirmed`): an older replica that knew
the lost data may not have looked yet. Under `BRIDGE_EMIT_INITIAL_SNAPSHOT` the integrations watcher waits
for that to pass before the first list (and so before any school's first poll), so that a reset seen first
by a new replica is not told as a flood of `*.created`.

After a reset every school takes a silent new baseline (its snapshot is gone) and its sequence starts
again at 1.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from typing import Final

import msgspec
import redis.asyncio as aioredis
import structlog
from redis.exceptions import WatchError

from bridge import metrics
from bridge.store.keys import Keys

log = structlog.get_logger(__name__)

SHOW_RESET_SECONDS: Final = 3600.0


class Marker(msgspec.Struct, kw_only=True, frozen=True):
    id: str
    created: float
    reset_at: float | None = None


_ENCODE: Final = msgspec.json.Encoder()
_DECODE: Final = msgspec.json.Decoder(Marker)


class StoreMarker:
    """One process's view of the store's identity."""

    def __init__(self, redis: aioredis.Redis, keys: Keys) -> None:
        self._redis = redis
        self._keys = keys
        self._key = keys.store_marker()
        self._seen: Marker | None = None
        self._lock = asyncio.Lock()  # one check at a time: a reset is found (logged, counted) once

    @property
    def reset_at(self) -> float | None:
        """When the store was last found reset, as far as this process knows."""
        return None if self._seen is None else self._seen.reset_at

    def recent_reset(self, now: float | None = None) -> bool:
        at = self.reset_at
        return at is not None and (time.time() if now is None else now) - at < SHOW_RESET_SECONDS

    def unconfirmed(self, window: float, now: float | None = None) -> bool:
        """True while the marker this process knows records no reset and is younger than `window`: a
        replica that knew the data before may still find that this store was reset."""
        seen = self._seen
        if seen is None:
            return True
        return seen.reset_at is None and (time.time() if now is None else now) - seen.created < window

    async def check(self) -> bool:
        """Read (or write) the marker; True when this call found the store reset."""
        async with self._lock:
            return await self._check()

    async def _check(self) -> bool:
        known = self._seen
        current = await self._read()
        lost = False
        if current is None:
            # Gone while this process knew one, or never written while the bridge's data is there.
            lost = known is not None or await self._has_bridge_data()
            now = time.time()
            fresh = Marker(id=secrets.token_hex(8), created=now, reset_at=now if lost else None)
            if await self._redis.set(self._key, _ENCODE.encode(fresh), nx=True):
                current = fresh
            else:
                current = await self._read()  # another replica wrote one first
            if current is None:
                return False  # lost again at once: the next check sees it
        found = lost or (known is not None and current.id != known.id)
        if found:
            current = await self._record_reset(current)
            metrics.STORE_RESETS.inc()
            log.error(
                "store reset detected: Redis lost the bridge's data; every school takes a silent new "
                "baseline and its sequence starts again at 1",
                previous_marker_created=known.created if known else None,
                marker_created=current.created,
            )
        self._seen = current
        return found

    async def _record_reset(self, current: Marker) -> Marker:
        """Make the store's marker say that it was reset (unless it already does), so that every replica
        learns of it; returns the marker this process keeps."""
        if current.reset_at is not None:
            return current
        noticed = msgspec.structs.replace(current, reset_at=time.time())
        async with self._redis.pipeline(transaction=True) as pipe:
            try:
                await pipe.watch(self._key)
                raw = await pipe.get(self._key)
                if raw is not None and _decode(raw) == current:
                    pipe.multi()  # type: ignore[no-untyped-call]
                    pipe.set(self._key, _ENCODE.encode(noticed))
                    await pipe.execute()
                    return noticed
            except WatchError:
                pass
        # Changed meanwhile: another replica recorded the reset (keep its marker), or the marker is gone or
        # replaced again (keep this one: the next check finds that reset too).
        now = await self._read()
        return now if now is not None and now.id == current.id and now.reset_at is not None else noticed

    async def _has_bridge_data(self) -> bool:
        """Whether the store holds keys that only a replica that had written the marker writes."""
        k = self._keys
        keys = [k.known_schools(), k.integrations_baseline(), k.integrations_polled(), k.event_locations()]
        for key in keys:  # one at a time: they live in different cluster slots
            if await self._redis.exists(key):
                return True
        return False

    async def last_reset(self) -> float | None:
        """The reset time recorded in the store's marker (any replica), or found by this process."""
        current = await self._read()
        times = [t for t in (None if current is None else current.reset_at, self.reset_at) if t is not None]
        return max(times, default=None)

    async def _read(self) -> Marker | None:
        raw = await self._redis.get(self._key)
        if raw is None:
            return None
        marker = _decode(raw)
        if marker is None:
            log.warning("store marker unreadable; writing a new one")
            await self._redis.delete(self._key)
        return marker


def _decode(raw: bytes | str) -> Marker | None:
    try:
        return _DECODE.decode(raw)
    except msgspec.DecodeError:
        return None
