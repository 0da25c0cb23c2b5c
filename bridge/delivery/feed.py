"""Pull subscriptions' feeds: read, long-poll, commit, trim; and the wake-up that tells readers on every
replica that something arrived (docs/pull.md).

A pull subscription's deliveries are queued as a webhook subscription's are (the intake, resyncs,
replays, erasure and retention all see the same `deliveries` and `traces`), but instead of `due` and lanes
each gets an entry in the subscription's `feed` stream, in queuing order: the hand-off queues each school's
events in `sequence` order, so the feed keeps every school's order. A cursor is a position in that stream
(the entry id of the last event read), tied to its subscription.

Reading answers the deliveries after a position as the subscription is now (sendtime.py): one dropped
since (erased, expired, no longer matching) is skipped, a body cut again when the subscription changed.
Committing a position removes the deliveries up to it (their traces say delivered) and trims the stream;
retention trims it too. `feed:at` keeps both marks: `committed` and `floor` (everything at or before a mark
is gone), so a cursor behind them is answered as expired rather than silently skipping what was lost.

Waking: whoever queues for a pull subscription publishes its id to one capped stream (`Notices.publish`);
each replica runs one blocking read of it (`Notices`) and wakes its own waiting readers, so a reader costs
Redis nothing while it waits, however many there are. The hand-off process (handoff_process.py) marks its
notices `pushed` when it queued webhook deliveries too: each replica's listener then wakes its worker.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import time
from collections.abc import AsyncGenerator, Awaitable, Callable, Iterable, Iterator, Sequence
from typing import Any, Final

import msgspec
import structlog
from redis.asyncio import Redis
from redis.exceptions import RedisError, ResponseError

from bridge.delivery.models import Delivery, DeliveryTrace, EventSource, Subscription, UnknownSubscription
from bridge.delivery.queue import DeliveryQueue, queued_trace
from bridge.delivery.sendtime import as_now
from bridge.delivery.store import SubscriptionStore
from bridge.errors import Conflict, InvalidRequest
from bridge.loops import Background
from bridge.store.codec import as_text, packed
from bridge.store.keys import Keys
from bridge.store.scripts import Scripts

log = structlog.get_logger(__name__)

MAX_LIMIT: Final = 500
DEFAULT_LIMIT: Final = 100
MAX_WAIT_SECONDS: Final = 30.0
RECHECK_SECONDS: Final = 300.0
"""A follower (`Feed.follow`) reads its feed when woken (something queued for it, its subscription deleted,
the replica's wake-up reader failing), and this often besides, in case a wake-up was lost: 2 Redis
commands a follower every 5 minutes."""
COMMIT_CHUNK: Final = 500
NOTICES_MAXLEN: Final = 10_000
LISTEN_BLOCK_MS: Final = 2_000  # well under the socket timeout (store/redis.py)
_MAX_SEQ: Final = 2**64 - 1

EntryId = tuple[int, int]
"""A stream entry id (milliseconds, sequence); (0, 0) is the start of a feed."""
START: Final[EntryId] = (0, 0)

_delivery = msgspec.msgpack.Decoder(Delivery)
_msgpack = msgspec.msgpack.Encoder()


def parse_id(raw: Any) -> EntryId:
    ms, _, seq = as_text(raw).partition("-")
    return int(ms), int(seq or 0)


def format_id(entry: EntryId) -> str:
    return f"{entry[0]}-{entry[1]}"


def before(entry: EntryId) -> EntryId:
    """The position just before `entry`: reading after it starts at `entry`."""
    ms, seq = entry
    return (ms, seq - 1) if seq else (ms - 1, _MAX_SEQ)


def encode_cursor(subscription_id: str, entry: EntryId) -> str:
    raw = f"{subscription_id}|{format_id(entry)}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(subscription_id: str, cursor: str, *, field: str = "cursor") -> EntryId:
    """The position a cursor stands for; 400 naming `field` when it is not one of this subscription's."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        owner, _, position = raw.rpartition("|")
        entry = parse_id(position)
    except (ValueError, UnicodeDecodeError, binascii.Error):
        raise InvalidRequest(
            field, "is not a feed cursor: pass back meta.next_cursor (or an SSE event id) as it was"
        ) from None
    if owner != subscription_id:
        raise InvalidRequest(field, "is a cursor of another subscription's feed")
    if not (0 <= entry[0] <= _MAX_SEQ and 0 <= entry[1] <= _MAX_SEQ):
        raise InvalidRequest(field, "is not a feed cursor: pass back meta.next_cursor as it was")
    return entry


Allowed = Callable[[], Awaitable[bool]]
"""Whether the reader may still read (its subscription token not revoked): asked again after each wait."""


class FeedEvent(msgspec.Struct, frozen=True):
    position: EntryId
    event_type: str
    body: bytes
    """The envelope as JSON, cut for the subscription."""


class FeedPage(msgspec.Struct, frozen=True):
    events: list[FeedEvent]
    next: EntryId
    """Where the next read starts: after the last entry looked at (skipped ones included)."""
    more: bool
    """Whether entries were left after this page when it was read."""


class Notices:
    """Wake-ups of pull readers: `publish` after queuing, `watch` around a read that may wait; and, when
    `on_pushed` is given, of this replica's delivery worker after another process queued webhooks.

    `announce_pushed`: tell every replica that webhooks were queued (`publish(..., pushed=True)`), set where
    no delivery worker runs beside the parts that queue them (the hand-off process: handoff_process.py);
    elsewhere the worker beside them is woken directly, and a `pushed` alone publishes nothing."""

    def __init__(
        self,
        redis: Redis,
        keys: Keys,
        on_pushed: Callable[[], None] | None = None,
        *,
        announce_pushed: bool = False,
    ) -> None:
        self.redis = redis
        self.keys = keys
        self._on_pushed = on_pushed
        self._announce_pushed = announce_pushed
        self._waiting: dict[str, set[asyncio.Event]] = {}
        self._listener = Background("feed-notices", self._listen)
        self._listening = asyncio.Event()
        """Set once the listener knows where the notices stream stands (`listening`)."""
        self.wakeups = 0
        """Notices read from Redis by this replica's listener (each wakes every local reader it names)."""

    async def publish(self, subscription_ids: Iterable[str], *, pushed: bool = False) -> None:
        """Tell every replica what was queued: these pull subscriptions' readers wake, and with `pushed`
        (webhook deliveries were queued as well, told where `announce_pushed`) every listening replica's
        worker."""
        ids = sorted(set(subscription_ids))
        pushed = pushed and self._announce_pushed
        if not ids and not pushed:
            return
        self._wake(ids)  # readers of this replica at once; the others through the stream
        fields = {"s": ",".join(ids), "p": "1"} if pushed else {"s": ",".join(ids)}
        await self.redis.xadd(self.keys.feed_notices(), fields, maxlen=NOTICES_MAXLEN, approximate=True)  # type: ignore[arg-type]

    @contextlib.contextmanager
    def watch(self, subscription_id: str) -> Iterator[asyncio.Event]:
        """An event set when something is queued for the subscription from now on. Enter it before reading:
        whatever is queued after the read began then wakes the reader."""
        self.start()
        woken = asyncio.Event()
        self._waiting.setdefault(subscription_id, set()).add(woken)
        try:
            yield woken
        finally:
            waiting = self._waiting.get(subscription_id)
            if waiting is not None:
                waiting.discard(woken)
                if not waiting:
                    del self._waiting[subscription_id]

    def start(self) -> None:
        self._listener.start()

    async def listening(self) -> None:
        """Until this replica's listener has found where the notices stream stands: every notice published
        from then on wakes its readers. A reader awaits it before its first read, so a notice published
        between that read and the listener's first blocking read is not lost (only the first reader of a
        replica ever waits: a round trip)."""
        self.start()
        await self._listening.wait()

    async def stop(self) -> None:
        await self._listener.stop()
        self._listening.clear()

    def _wake(self, subscription_ids: Iterable[str]) -> None:
        for sid in subscription_ids:
            for woken in self._waiting.get(sid, ()):
                woken.set()

    async def _listen(self) -> None:
        """One blocking read at a time for the whole replica, from the newest notice on."""
        key = self.keys.feed_notices()
        try:
            newest: Any = await self.redis.xrevrange(key, count=1)
            last = as_text(newest[0][0]) if newest else "0-0"
        except (RedisError, OSError):
            last = "$"  # readers wake on the failure below, and read again
        self._listening.set()
        while self._listener.go_on():
            try:
                replies: Any = await self.redis.xread({key: last}, count=500, block=LISTEN_BLOCK_MS)
            except (RedisError, OSError) as error:
                log.warning("feed wake-up read failed; retrying", error=f"{type(error).__name__}: {error}")
                for waiting in list(self._waiting.values()):  # readers re-read rather than wait it out
                    for woken in waiting:
                        woken.set()
                await asyncio.sleep(1.0)
                continue
            for _stream, entries in replies or ():
                for entry_id, fields in entries:
                    last = as_text(entry_id)
                    self.wakeups += 1
                    if fields[b"s"]:
                        self._wake(as_text(fields[b"s"]).split(","))
                    if b"p" in fields and self._on_pushed is not None:
                        self._on_pushed()


class Feed:
    """Reads and commits pull subscriptions' feeds."""

    def __init__(
        self,
        redis: Redis,
        keys: Keys,
        queue: DeliveryQueue,
        subscriptions: SubscriptionStore,
        notices: Notices,
        *,
        retention_seconds: float,
        events: EventSource | None = None,
    ) -> None:
        self.redis = redis
        self.keys = keys
        self.queue = queue
        self.subscriptions = subscriptions
        self.notices = notices
        self.retention_seconds = retention_seconds
        self._events = events
        self._scripts: Scripts = subscriptions.scripts

    @staticmethod
    def pulled(subscription: Subscription) -> Subscription:
        """The subscription itself when it is a pull one; 409 saying what to do otherwise."""
        if not subscription.pulled:
            raise Conflict(
                "this is a webhook subscription: its events are POSTed to its url, it has no feed; "
                'create a subscription with "delivery": "pull" to read events instead',
                subscription_id=subscription.id,
            )
        return subscription

    async def marks(self, subscription_id: str) -> tuple[EntryId, EntryId]:
        """(committed, floor): everything at or before either is gone from the feed."""
        raw: Any = await self.redis.hmget(self.keys.feed_at(subscription_id), ["committed", "floor"])
        committed, floor = (START if r is None else parse_id(r) for r in raw)
        return committed, floor

    async def start_of(
        self, subscription: Subscription, cursor: str | None, *, field: str = "cursor"
    ) -> EntryId:
        """Where a read starts: after the cursor, or after the committed position without one. A cursor
        behind what was committed or trimmed away is expired (400): its events are gone."""
        committed, floor = await self.marks(subscription.id)
        kept_from = max(committed, floor)
        if cursor is None or cursor == "":
            return kept_from
        entry = decode_cursor(subscription.id, cursor, field=field)
        if entry < kept_from:
            raise InvalidRequest(
                field,
                "is expired: the feed was committed or trimmed by retention past it, so the events after it "
                "are not all there; read without a cursor to start at the committed position",
            )
        if entry > kept_from and entry > await self._newest(subscription.id):
            # A position the feed never gave: reading after it would pass over the events queued before it.
            raise InvalidRequest(
                field, "is ahead of everything this feed has held: pass back a cursor it gave"
            )
        return entry

    async def read(
        self,
        subscription: Subscription,
        after: EntryId,
        *,
        limit: int,
        wait: float = 0.0,
        allowed: Allowed | None = None,
    ) -> FeedPage:
        """Up to `limit` events after `after`; with `wait`, until one is there or `wait` seconds pass. A
        reader whose token `allowed` says was revoked while it waited gets an empty page."""
        deadline = time.monotonic() + wait
        if wait:
            await self.notices.listening()
        first = True
        while True:
            with self.notices.watch(subscription.id) as woken:
                if not first and allowed is not None and not await allowed():
                    return FeedPage(events=[], next=after, more=False)
                first = False
                page = await self._page(subscription, after, limit)
                left = deadline - time.monotonic()
                if page.events or left <= 0:
                    return page
                after = page.next
                if page.more:  # a page of entries all dropped since: read on at once
                    continue
                try:
                    await asyncio.wait_for(woken.wait(), left)
                except TimeoutError:
                    if allowed is not None and not await allowed():
                        return FeedPage(events=[], next=after, more=False)
                    return await self._page(subscription, after, limit)

    async def follow(
        self,
        subscription: Subscription,
        after: EntryId,
        *,
        limit: int,
        keepalive: float,
        allowed: Allowed | None = None,
    ) -> AsyncGenerator[FeedPage | None, None]:
        """Each page of events after `after` as it comes, and None every `keepalive` seconds while none does.
        Idle, it reads nothing until woken or `RECHECK_SECONDS` pass: a follower costs Redis nothing while
        nothing happens. Raises `UnknownSubscription` once the subscription is deleted; ends when `allowed`
        (asked before every read but the first) says the reader's token was revoked (a revoke wakes it)."""
        first = True
        await self.notices.listening()
        while True:
            with self.notices.watch(subscription.id) as woken:  # before the read: a wake-up during it counts
                if not first and allowed is not None and not await allowed():
                    return
                first = False
                page = await self._page(subscription, after, limit)
                after = page.next
                if page.events:
                    yield page
                if page.events or page.more:
                    continue
                idle = time.monotonic()
                while time.monotonic() - idle < RECHECK_SECONDS:
                    try:
                        await asyncio.wait_for(woken.wait(), keepalive)
                    except TimeoutError:
                        yield None
                    else:
                        break

    async def _page(self, subscription: Subscription, after: EntryId, limit: int) -> FeedPage:
        sid = subscription.id
        current = await self.subscriptions.current()
        now_is = next((s for s in current.subscriptions if s.id == sid), None)
        if now_is is None:
            raise UnknownSubscription(sid)
        subscription = now_is  # as it is now: changed since the read began, it cuts by its new options
        rows: Any = await self._scripts.feed_read(
            keys=[self.keys.feed(sid), self.keys.deliveries(sid)], args=[format_id(after), str(limit + 1)]
        )
        pairs = list(zip(rows[::2], rows[1::2], strict=True))
        more = len(pairs) > limit
        pairs = pairs[:limit]
        expired_before = time.time() - self.retention_seconds
        events: list[FeedEvent] = []
        for raw_id, record in pairs:
            if record is None:
                continue  # dropped since it was queued (an erasure, retention)
            delivery = _delivery.decode(record)
            shaped = await as_now(
                self.queue,
                self._events,
                subscription,
                delivery,
                erasing=current.erasing,
                expired_before=expired_before,
            )
            if isinstance(shaped, Delivery):
                events.append(FeedEvent(parse_id(raw_id), shaped.event_type, shaped.body))
        last = parse_id(pairs[-1][0]) if pairs else after
        return FeedPage(events=events, next=last, more=more)

    async def commit(self, subscription: Subscription, cursor: str) -> EntryId:
        """Move the committed position to the cursor (never back: an older one changes nothing); the
        deliveries up to it go, their traces saying delivered. Returns the committed position."""
        sid = subscription.id
        target = decode_cursor(sid, cursor)
        if target > await self._newest(sid):
            raise InvalidRequest(
                "cursor", "is ahead of everything this feed has held: pass back a cursor it gave"
            )
        while True:
            raw: Any = await self.redis.hget(self.keys.feed_at(sid), "committed")
            committed = START if raw is None else parse_id(raw)
            if target <= committed:
                return committed
            entries: Any = await self.redis.xrange(
                self.keys.feed(sid), min=f"({format_id(committed)}", max=format_id(target), count=COMMIT_CHUNK
            )
            upto = target if len(entries) < COMMIT_CHUNK else parse_id(entries[-1][0])
            now = time.time()
            items = []
            for _, fields in entries:
                delivery_id, event_id = as_text(fields[b"d"]), as_text(fields[b"e"])
                done = DeliveryTrace(delivery_id=delivery_id, delivered_at=now)
                items.append(packed(delivery_id, event_id, queued_trace(delivery_id), _msgpack.encode(done)))
            moved = await self._scripts.feed_commit(
                keys=[
                    self.keys.feed(sid),
                    self.keys.deliveries(sid),
                    self.keys.traces(sid),
                    self.keys.feed_at(sid),
                    self.keys.subscription(sid),
                ],
                args=[
                    "" if raw is None else as_text(raw),
                    format_id(upto),
                    format_id((upto[0], upto[1] + 1) if upto[1] < _MAX_SEQ else (upto[0] + 1, 0)),
                    b"".join(items),
                ],
            )
            if moved == -1:
                raise UnknownSubscription(sid)

    async def _newest(self, subscription_id: str) -> EntryId:
        """The id of the newest entry the feed has ever held (START when it never held one)."""
        try:
            info: Any = await self.redis.xinfo_stream(self.keys.feed(subscription_id))
        except ResponseError:  # no such key
            return START
        return parse_id(info["last-generated-id"])

    async def waiting(self, subscription_ids: Sequence[str]) -> list[int]:
        """Per subscription, the entries after its committed position (XLEN: the feed is trimmed up to it)."""
        async with self.redis.pipeline(transaction=False) as pipe:
            for sid in subscription_ids:
                pipe.xlen(self.keys.feed(sid))
            replies: list[Any] = await pipe.execute()
        return [int(n) for n in replies]
