"""The hand-off: from the delivery stream (published events, in order) to the delivery queues.

One replica at a time runs it (a lock with a TTL that the holder renews), so each school's events reach
`Intake.fan_out` in stream order, which is `sequence` order per school: ordered lanes depend on it.
The holder reads entries after the shared cursor, fans them out, then moves the cursor and trims the
stream behind it. A crash between the fan-out and the cursor move makes the next holder fan the same
entries out again; `fan_out` queues an event for a subscription only once, so nothing is doubled.

An entry names its event (id, school, sequence, type); the body is read from the school's `bodies` hash
now, in one round trip per batch (events/log.py `envelopes`), so an erasure that overwrote it is seen, and
an erased event fans out nothing. An entry written before that hash carries its own body, used only when
the store has none. After the fan-out the batch's erased state is read again, and what an erasure reached
meanwhile is dropped from the queues (delivery/erasure.py says why that closes the race).
"""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import Mapping
from typing import Any, Final

import redis.asyncio as aioredis
import structlog
from redis.exceptions import RedisError

from bridge.delivery.erasure import drop_deliveries
from bridge.delivery.intake import Intake
from bridge.delivery.models import OutgoingEvent
from bridge.delivery.queue import DeliveryQueue
from bridge.delivery.store import SubscriptionStore
from bridge.events.log import EventLog, Place, is_erased_body
from bridge.loops import Background, poll
from bridge.store.codec import as_bytes, as_text
from bridge.store.keys import Keys
from bridge.store.scripts import Scripts

log = structlog.get_logger(__name__)

BATCH: Final = 2000
"""Stream entries fanned out in one step at most. Each step takes about seven round trips, each waiting a
turn of a busy event loop: at 500 a step, a backlog's fan-out paced the deliveries (bench/RESULTS.md
section 12); the enqueue calls stay at `ENQUEUE_BATCH` (1,000) events each."""
FIRST_BATCH: Final = 100
"""The first step after one that found the stream's end takes this many entries, and each step after a
full one four times more, up to `BATCH`: a backlog's first deliveries go out while the rest is fanned out
(2,000 entries took 70 to 100 ms before the first was queued)."""
LOCK_SECONDS: Final = 10.0
IDLE_SECONDS: Final = 0.2


def _place(fields: Mapping[Any, Any] | None) -> Place:
    assert fields is not None
    # int() reads the digits of bytes as well as of text (a place per entry: `as_int` costs twice as much)
    return as_text(fields[b"id"]), int(fields[b"school_id"]), int(fields[b"sequence"])


class Handoff:
    def __init__(
        self,
        redis: aioredis.Redis,
        keys: Keys,
        intake: Intake,
        queue: DeliveryQueue,
        subscriptions: SubscriptionStore,
        scripts: Scripts,
        *,
        watch_stream: bool = False,
    ) -> None:
        """With `watch_stream`, an idle holder waits on the delivery stream itself (a blocking read) rather
        than for `wake`: the hand-off process has no poller beside it to wake it (handoff_process.py)."""
        self.redis = redis
        self.keys = keys
        self.intake = intake
        self._queue = queue
        self._subscriptions = subscriptions
        self._owner = secrets.token_hex(8)
        self._scripts = scripts
        self._events = EventLog(redis, keys)
        self._loop = Background("event-handoff", self._run)
        self._watch_stream = watch_stream
        self._held = False
        self._cursor = "0-0"
        self._size = FIRST_BATCH
        """How many entries the next step asks for."""
        self._full = False
        """Whether the last step took all it asked for (more may wait)."""

    @property
    def running(self) -> bool:
        return self._loop.running

    def start(self) -> None:
        self._loop.start()

    def wake(self) -> None:
        self._loop.wake()

    async def stop(self) -> None:
        await self._loop.stop()
        with contextlib.suppress(RedisError, OSError):
            if await self.redis.get(self.keys.handoff_lock()) == self._owner.encode():
                await self.redis.delete(self.keys.handoff_lock())

    async def _run(self) -> None:
        await poll(
            self._turn,
            self._idle,
            failed="hand-off failed; retrying",
            crashed="hand-off crashed; retrying",
            running=self._loop.go_on,
        )

    async def _turn(self) -> int:
        """One batch if this process holds the lock; how many entries moved."""
        self._held = await self._hold()
        return await self.step() if self._held else 0

    async def _idle(self, moved: int | None) -> None:
        """After a short batch (or a failed one), wait for a wake-up or `IDLE_SECONDS`; after a full one
        (all it asked for), go on at once. Watching the stream, a holder after a successful batch waits for
        an entry after the cursor instead, at most as long."""
        if moved and self._full:
            return
        if self._watch_stream and self._held and moved is not None:
            with contextlib.suppress(RedisError, OSError):  # the next turn fails and logs it
                stream = self.keys.delivery_stream()
                await self.redis.xread({stream: self._cursor}, count=1, block=int(IDLE_SECONDS * 1000))
                return
        await self._loop.idle(IDLE_SECONDS)

    async def _hold(self) -> bool:
        """Take the lock, or extend it if this process holds it."""
        key, ms = self.keys.handoff_lock(), int(LOCK_SECONDS * 1000)
        if await self.redis.set(key, self._owner, nx=True, px=ms):
            return True
        if await self.redis.get(key) == self._owner.encode():
            await self.redis.pexpire(key, ms)
            return True
        return False

    async def step(self) -> int:
        """Fan out the next batch after the cursor (`FIRST_BATCH` to `BATCH` entries); returns how many
        entries moved."""
        cursor_key, stream = self.keys.handoff_cursor(), self.keys.delivery_stream()
        raw = await self.redis.get(cursor_key)
        cursor = self._cursor = as_text(raw) if raw is not None else "0-0"
        size = self._size
        entries = await self.redis.xrange(stream, min=f"({cursor}", max="+", count=size)
        self._full = len(entries or ()) >= size
        self._size = min(BATCH, size * 4) if self._full else FIRST_BATCH
        if not entries:
            return 0
        places = [_place(fields) for _, fields in entries]
        stored = await self._events.envelopes(places)
        events: list[OutgoingEvent] = []
        fanned: list[Place] = []
        for place, (_entry, fields) in zip(places, entries, strict=True):
            assert fields is not None
            body = stored.get(place[0]) or fields.get(b"body")
            if body is None or is_erased_body(as_bytes(body)):
                continue  # erased (or, past the retention, gone): nothing to send
            event_id, school_id, sequence = place
            events.append(
                OutgoingEvent.of(event_id, school_id, as_text(fields[b"type"]), sequence, as_bytes(body))
            )
            fanned.append(place)
        await self.intake.fan_out(events)
        overtaken = await self._events.erased_among(fanned)
        if overtaken:
            await drop_deliveries(self.redis, self.keys, self._queue, self._subscriptions, overtaken)
            log.info("queued events an erasure reached meanwhile dropped", events=len(overtaken))
        last = as_text(entries[-1][0])
        if await self._scripts.handoff_advance(keys=[cursor_key], args=[cursor, last]):
            self._cursor = last
            await self.redis.xtrim(stream, minid=last, approximate=False)
        return len(entries)
