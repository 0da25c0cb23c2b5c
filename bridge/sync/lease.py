"""Per-school leases with fencing tokens: one replica polls a school at a time.

A lease is a key in the school's slot holding the holder's token, with a TTL. Tokens come from a
per-school counter, so they only grow: a replica that stalled past its TTL and wakes up still holds an old
token, and the commit script (which compares the lease key with the token in the same atomic step as the
write) refuses its commit. Renew and release act only when the caller's token still holds the lease.

`name` tells leases of one school apart ("poll" for the school poller; e.g. "integration" if the
integrations watcher wants to fence its per-school commits too). All share the school's token counter.
"""

from __future__ import annotations

import redis.asyncio as aioredis

from bridge.store.codec import as_int, as_text
from bridge.store.keys import Keys
from bridge.store.scripts import Scripts


class Lease:
    """Acquire, renew and release school leases of one name."""

    def __init__(self, redis: aioredis.Redis, keys: Keys, scripts: Scripts, *, name: str = "poll") -> None:
        self._redis = redis
        self._keys = keys
        self._scripts = scripts
        self.name = name

    def _pair(self, school_id: int) -> list[str]:
        return [self._keys.lease(school_id, self.name), self._keys.lease_owner(school_id, self.name)]

    async def acquire(self, school_id: int, owner: str, ttl: float) -> int | None:
        """A new fencing token if the lease was free, else None. `ttl` in seconds."""
        keys = [*self._pair(school_id), self._keys.fence(school_id)]
        token = await self._scripts.lease_acquire(keys=keys, args=[owner, _ms(ttl)])
        return None if token is None else int(token)

    async def renew(self, school_id: int, token: int, ttl: float) -> bool:
        """Extend the lease if `token` still holds it; False means stop working on this school."""
        return bool(await self._scripts.lease_renew(keys=self._pair(school_id), args=[str(token), _ms(ttl)]))

    async def release(self, school_id: int, token: int) -> bool:
        """Give the lease back early (so the next poll need not wait for the TTL); no-op if lost."""
        return bool(await self._scripts.lease_release(keys=self._pair(school_id), args=[str(token)]))

    async def holder(self, school_id: int) -> tuple[int, str] | None:
        """(token, owner) of the current holder, for status pages; None when free."""
        token, owner = await self._redis.mget(self._pair(school_id))
        if token is None:
            return None
        return as_int(token), as_text(owner or b"")


def _ms(seconds: float) -> int:
    return max(1, int(seconds * 1000))
