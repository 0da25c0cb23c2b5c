"""Noticing that Redis lost the bridge's data (a restart without persistence, a flush).

The first replica to start writes a marker key with a random id. Every replica reads it on each
integrations tick and remembers the id it saw. When the key is gone, the store was reset: the first
replica to notice writes a new marker that records when (`reset_at`), logs one error and counts it;
the others see the new id and learn of the reset from the marker itself, so every replica's readiness
shows it. A store that was reset while no replica ran cannot be told from a new deployment.

After a reset every school takes a silent new baseline (its snapshot is gone) and its sequence starts
again at 1; `recent_reset` lets the pollers keep that baseline silent even under
`BRIDGE_EMIT_INITIAL_SNAPSHOT`.
"""

from __future__ import annotations

import secrets
import time
from typing import Final

import msgspec
import redis.asyncio as aioredis
import structlog

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
        self._key = keys.store_marker()
        self._seen: Marker | None = None

    @property
    def reset_at(self) -> float | None:
        """When the store was last found reset, as far as this process knows."""
        return None if self._seen is None else self._seen.reset_at

    def recent_reset(self, now: float | None = None) -> bool:
        at = self.reset_at
        return at is not None and (time.time() if now is None else now) - at < SHOW_RESET_SECONDS

    async def check(self) -> bool:
        """Read (or write) the marker; True when this call found the store reset."""
        current = await self._read()
        found = False
        if current is None:
            now = time.time()
            reset = self._seen is not None
            fresh = Marker(id=secrets.token_hex(8), created=now, reset_at=now if reset else None)
            if await self._redis.set(self._key, _ENCODE.encode(fresh), nx=True):
                current, found = fresh, reset
            else:
                current = await self._read()
            if found:
                metrics.STORE_RESETS.inc()
                log.error(
                    "store reset detected: Redis lost the bridge's data; every school takes a silent new "
                    "baseline and its sequence starts again at 1",
                    previous_marker_created=self._seen.created if self._seen else None,
                )
        if current is not None:
            self._seen = current
        return found

    async def last_reset(self) -> float | None:
        """The reset time recorded in the store's marker, for readiness (any replica)."""
        current = await self._read()
        return None if current is None else current.reset_at

    async def _read(self) -> Marker | None:
        raw = await self._redis.get(self._key)
        if raw is None:
            return None
        try:
            return _DECODE.decode(raw)
        except msgspec.DecodeError:
            log.warning("store marker unreadable; writing a new one")
            await self._redis.delete(self._key)
            return None
