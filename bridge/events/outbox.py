"""Publishing: from a school's event stream to the global listing and the delivery hand-off.

A commit appends events to the school's own stream (one slot, atomic with the snapshot). Publishing copies
every event with a sequence above the school's `published` watermark into the `{events}` slot, in one
script per batch: the location hash (event id -> school, sequence, type), the listing indexes, and one
entry in the delivery stream that delivery workers consume. Then the watermark moves forward. No body
leaves the school's slot: the hand-off entry names the event, and the hand-off reads its envelope from the
school's `bodies` hash when it fans it out (delivery/handoff.py), so an erasure overwrites the one copy.

The steps sit in two slots, so they cannot be one transaction; instead each is idempotent. The publish
script adds an event only if its location was not yet recorded (HSETNX), so a crash between the script and
the watermark just means the next publish finds the events already there and adds nothing twice, not even
to the delivery stream. The watermark only moves forward. `publish_pending` sweeps every known school
whose watermark lags its sequence: run it at start and periodically, so a crash right after a commit
delays events but never loses them.
"""

from __future__ import annotations

from typing import Final

import redis.asyncio as aioredis
import structlog

from bridge.store.codec import as_int, as_text, entry_seq
from bridge.store.keys import META_PUBLISHED, META_SEQ, Keys
from bridge.store.scripts import Scripts

log = structlog.get_logger(__name__)

BATCH: Final = 500


class Outbox:
    """Moves committed events into the global structures; safe to run from every replica at once."""

    def __init__(self, redis: aioredis.Redis, keys: Keys, scripts: Scripts, *, batch: int = BATCH) -> None:
        self._redis = redis
        self._keys = keys
        self._scripts = scripts
        self._batch = batch

    async def publish(self, school_id: int) -> int:
        """Publish the school's unpublished events, oldest first; returns how many were newly added."""
        k = self._keys
        meta, stream = k.school_meta(school_id), k.school_events(school_id)
        added = 0
        while True:
            published = as_int(await self._redis.hget(meta, META_PUBLISHED))
            entries = await self._redis.xrange(stream, min=f"{published + 1}-0", max="+", count=self._batch)
            if not entries:
                return added
            keys = [k.event_locations(), k.event_index(), k.delivery_stream()]
            args: list[bytes | str] = [str(school_id)]
            last_seq = published
            for entry_id, fields in entries:
                assert fields is not None
                last_seq = entry_seq(entry_id)
                etype = as_text(fields[b"type"])
                keys += [
                    k.event_index(type=etype),
                    k.event_index(school_id=school_id),
                    k.event_index(type=etype, school_id=school_id),
                ]
                args += [fields[b"id"], str(last_seq), etype]
            added += int(await self._scripts.publish(keys=keys, args=args))
            await self._scripts.advance_published(keys=[meta], args=[last_seq])
            if len(entries) < self._batch:
                return added

    async def pending(self) -> dict[int, int]:
        """Schools whose watermark lags their sequence, with how many events each has unpublished."""
        schools = [int(m) for m in await self._redis.smembers(self._keys.known_schools())]
        async with self._redis.pipeline(transaction=False) as pipe:
            for school_id in schools:
                pipe.hmget(self._keys.school_meta(school_id), [META_SEQ, META_PUBLISHED])
            replies = await pipe.execute()
        lagging = {}
        for school_id, (seq, published) in zip(schools, replies, strict=True):
            behind = as_int(seq) - as_int(published)
            if behind > 0:
                lagging[school_id] = behind
        return lagging

    async def publish_pending(self) -> int:
        """Publish every school that has unpublished events; returns how many events were added."""
        added = 0
        for school_id in sorted(await self.pending()):
            count = await self.publish(school_id)
            if count:
                log.info("published pending events", school_id=school_id, events=count)
            added += count
        return added
