"""The event log as users see it: list newest first with filters and a cursor, get by id, trim.

The listing indexes are sorted sets whose scores are all 0, ordered by member: event ids are ULIDs, so
member order is time order, a time window is a lexicographic range of ids, and a cursor is simply the last
id of the previous page. One index per filter combination (all, per type, per school, per school and type)
keeps every page one ZREVRANGEBYLEX, whatever the filter. Bodies stay in the school's slot, in its
`bodies` hash by sequence (the school's event stream holds each event's id and type); the location hash
says where (school, sequence). A stream written before that hash holds the envelopes itself: `envelopes`
reads the hash first and falls back to the stream.

An erased event (`POST /v1/erasure`, docs/personal-data.md) keeps its id, type, sequence, timestamp and
place in every index, but its `data` (and `changes`, if it had them) are `{"erased": true}`: that envelope
overwrote its body in the `bodies` hash, and the school's `erased` hash records it too (sync/snapshot.py
`erase` writes both). An event erased before the `bodies` hash lost its stream entry instead, and its
envelope is found in the `erased` hash alone.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any, Final

import msgspec
import redis.asyncio as aioredis

from bridge.events.envelope import Event, decode_event, encode_event
from bridge.events.ids import event_id_bound, event_id_ms, is_event_id
from bridge.store.codec import as_bytes, as_int, as_text, entry_seq
from bridge.store.keys import META_PUBLISHED, META_SEQ, Keys

MAX_LIMIT: Final = 500
ERASED: Final[Mapping[str, Any]] = {"erased": True}
"""What an erased event's `data` and `changes` become."""
_TRIM_BATCH: Final = 1000
_STREAM_PAGE: Final = 200
Moment = datetime | float
Page = tuple[list[Event], str | None]
Events = list[Event]
Bodies = list[bytes]
Ids = list[str]
Place = tuple[str, int, int]
"""Where an event's body is: (event id, school id, sequence)."""
RecordEvents = list[tuple[int, str, bytes]]
"""(sequence, event id, envelope) of each event of one record."""


class EventLog:
    """Read side of the published events, plus retention."""

    def __init__(self, redis: aioredis.Redis, keys: Keys) -> None:
        self._redis = redis
        self._keys = keys

    async def list(
        self,
        type: str | None = None,
        school_id: int | None = None,
        since: Moment | None = None,
        until: Moment | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> Page:
        """One page, newest first, and the cursor of the next page (None on the last one).

        `since` and `until` are inclusive (millisecond precision). ValueError on a cursor that is not an
        event id or a limit outside 1..500.
        """
        if not 1 <= limit <= MAX_LIMIT:
            raise ValueError(f"limit must be between 1 and {MAX_LIMIT}")
        top = "+" if until is None else "[" + event_id_bound(_seconds(until), upper=True)
        if cursor is not None:
            if not is_event_id(cursor):
                raise ValueError("cursor is not one this API gave out")
            if top == "+" or cursor < top[1:]:
                top = "(" + cursor
        bottom = "-" if since is None else "[" + event_id_bound(_seconds(since), upper=False)
        index = self._keys.event_index(type=type, school_id=school_id)
        raw = await self._redis.zrevrangebylex(index, top, bottom, start=0, num=limit + 1)
        ids = [as_text(member) for member in raw]
        page, more = ids[:limit], len(ids) > limit
        events = await self._bodies(page)
        return events, (page[-1] if more and page else None)

    async def ids(self, since: Moment, until: Moment | None, *, after: str | None, limit: int) -> Ids:
        """Up to `limit` ids of a window (`since` and `until` as in `list`), oldest first, strictly after the
        id `after` when given: the way through a window forwards, a page at a time."""
        bottom = "[" + event_id_bound(_seconds(since), upper=False)
        if after is not None and after >= bottom[1:]:
            bottom = "(" + after
        top = "+" if until is None else "[" + event_id_bound(_seconds(until), upper=True)
        raw = await self._redis.zrangebylex(self._keys.event_index(), bottom, top, start=0, num=limit)
        return [as_text(member) for member in raw]

    async def get(self, event_id: str) -> Event | None:
        """The published event with this id, or None."""
        if not is_event_id(event_id):
            return None
        found = await self._bodies([event_id])
        return found[0] if found else None

    async def _bodies(self, ids: Ids) -> Events:
        return [decode_event(body) for body in await self.raw(ids)]

    async def raw(self, ids: Ids) -> Bodies:
        """The exact envelope bytes (as signed and sent) of the published events among `ids`, in order."""
        if not ids:
            return []
        locations = await self._redis.hmget(self._keys.event_locations(), ids)
        places = [
            (eid, *_location(loc)[:2]) for eid, loc in zip(ids, locations, strict=True) if loc is not None
        ]
        found = await self.envelopes(places)
        return [found[eid] for eid, _school, _seq in places if eid in found]

    async def envelopes(self, places: Sequence[Place]) -> dict[str, bytes]:
        """The envelope of each event at its place, by event id (an event the store no longer holds, past
        the retention, is left out). One round trip for bodies in the `bodies` hash; stored data written
        before it is read from the stream entry, or the `erased` hash, in a second."""
        if not places:
            return {}
        k = self._keys
        bodies = await self._per_school(places, k.school_bodies)
        found = {
            eid: as_bytes(body)
            for (eid, _school, _seq), body in zip(places, bodies, strict=True)
            if body is not None and _names(as_bytes(body), eid)
        }
        missing = [place for place in places if place[0] not in found]
        if not missing:
            return found
        async with self._redis.pipeline(transaction=False) as pipe:
            for _eid, school_id, seq in missing:
                pipe.xrange(k.school_events(school_id), min=f"{seq}-0", max=f"{seq}-0")
                pipe.hget(k.school_erased(school_id), str(seq))
            replies = await pipe.execute()
        for n, (eid, _school, _seq) in enumerate(missing):
            entries, erased = replies[2 * n], replies[2 * n + 1]
            fields = entries[0][1] if entries else None
            if fields and b"body" in fields and as_text(fields[b"id"]) == eid:
                found[eid] = as_bytes(fields[b"body"])
            elif erased is not None and _names(as_bytes(erased), eid):
                found[eid] = as_bytes(erased)
        return found

    async def _per_school(self, places: Sequence[Place], key: Callable[[int], str]) -> Sequence[Any]:
        """The field `seq` of each place's school hash `key(school)`, in the order of `places`: one HMGET
        per school, all in one round trip."""
        seqs: dict[int, list[str]] = {}
        for _eid, school_id, seq in places:
            seqs.setdefault(school_id, []).append(str(seq))
        async with self._redis.pipeline(transaction=False) as pipe:
            for school_id, fields in seqs.items():
                pipe.hmget(key(school_id), fields)
            replies: Any = await pipe.execute()
        values = {
            (school_id, field): value
            for (school_id, fields), reply in zip(seqs.items(), replies, strict=True)
            for field, value in zip(fields, reply, strict=True)
        }
        return [values[(school_id, str(seq))] for _eid, school_id, seq in places]

    async def erased_among(self, places: Sequence[Place]) -> set[str]:
        """The ids among `places` of events an erasure reached (the `erased` hash): one round trip."""
        if not places:
            return set()
        replies = await self._per_school(places, self._keys.school_erased)
        return {
            eid
            for (eid, _school, _seq), body in zip(places, replies, strict=True)
            if body is not None and _names(as_bytes(body), eid)
        }

    async def events_of_record(
        self, school_id: int, resource: str, record_id: str
    ) -> tuple[int, RecordEvents, Ids]:
        """For an erasure: the school's sequence when read, every event of one record not erased yet as
        (sequence, id, body), and the ids of the record's events that are erased already.

        Reads the whole stream (the retention's worth of the school's events) and the bodies of the
        resource's events: erasures are rare.
        """
        k = self._keys
        stream = k.school_events(school_id)
        seq = as_int(await self._redis.hget(k.school_meta(school_id), META_SEQ))
        erased: Ids = []
        erased_seqs: set[int] = set()
        for raw_seq, raw in (await self._redis.hgetall(k.school_erased(school_id))).items():
            probe = _PROBE.decode(as_bytes(raw))
            erased_seqs.add(int(as_text(raw_seq)))
            if probe.resource == resource and probe.resource_id == record_id:
                erased.append(probe.id)
        prefix = resource + "."
        found: RecordEvents = []
        start = "-"
        while True:
            entries = await self._redis.xrange(stream, min=start, max="+", count=_STREAM_PAGE) or []
            places = [
                (as_text(fields[b"id"]), school_id, entry_seq(entry_id))
                for entry_id, fields in entries
                if fields is not None
                and as_text(entry_id).endswith("-0")
                and entry_seq(entry_id) not in erased_seqs
                and as_text(fields[b"type"]).startswith(prefix)
            ]
            bodies = await self.envelopes(places)
            for eid, _school, entry in places:
                body = bodies.get(eid)
                if body is not None and _PROBE.decode(body).resource_id == record_id:
                    found.append((entry, eid, body))
            if len(entries) < _STREAM_PAGE:
                break
            start = "(" + as_text(entries[-1][0])
        return seq, found, erased

    async def trim(self, retention_days: float, *, now: float | None = None) -> int:
        """Remove events older than the retention from every structure; returns how many were listed.

        Indexes and locations go together in one MULTI per batch ({events} slot). Each school's stream is
        trimmed up to its oldest young event, never past its published watermark. The delivery stream's
        entry ids are the server's milliseconds, so MINID trims it by time.
        """
        cutoff = (time.time() if now is None else now) - retention_days * 86400
        below = "(" + event_id_bound(cutoff, upper=False)
        k = self._keys
        removed = 0
        while True:
            raw = await self._redis.zrangebylex(k.event_index(), "-", below, start=0, num=_TRIM_BATCH)
            if not raw:
                break
            ids = [as_text(member) for member in raw]
            locations = await self._redis.hmget(k.event_locations(), ids)
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.zrem(k.event_index(), *ids)
                for eid, loc in zip(ids, locations, strict=True):
                    if loc is None:
                        continue
                    school_id, _seq, etype = _location(loc)
                    pipe.zrem(k.event_index(type=etype), eid)
                    pipe.zrem(k.event_index(school_id=school_id), eid)
                    pipe.zrem(k.event_index(type=etype, school_id=school_id), eid)
                pipe.hdel(k.event_locations(), *ids)
                await pipe.execute()
            removed += len(ids)
        for school_id in [int(m) for m in await self._redis.smembers(k.known_schools())]:
            await self._trim_school(school_id, int(cutoff * 1000))
        await self._redis.xtrim(k.delivery_stream(), minid=f"{int(cutoff * 1000)}-0", approximate=False)
        return removed

    async def _trim_school(self, school_id: int, cutoff_ms: int) -> None:
        stream = self._keys.school_events(school_id)
        published = as_int(await self._redis.hget(self._keys.school_meta(school_id), META_PUBLISHED))
        first: int | None = None
        start = "-"
        while True:
            entries = await self._redis.xrange(stream, min=start, max="+", count=_STREAM_PAGE) or []
            keep_from: int | None = None
            for entry_id, fields in entries:
                seq = entry_seq(entry_id)
                if seq > published or fields is None or event_id_ms(as_text(fields[b"id"])) >= cutoff_ms:
                    keep_from = seq
                    break
            if first is None and entries:
                first = entry_seq(entries[0][0])
            if keep_from is not None or len(entries) < _STREAM_PAGE:
                if keep_from is None and entries:
                    keep_from = entry_seq(entries[-1][0]) + 1
                if keep_from is not None and first is not None:
                    # the bodies first: a crash in between leaves stream entries without one (past the
                    # retention, no longer listed), never a body no trim would find again
                    await self._trim_bodies(school_id, first, keep_from)
                    await self._redis.xtrim(stream, minid=f"{keep_from}-0", approximate=False)
                    await self._trim_erased(school_id, keep_from)
                return
            start = f"{entry_seq(entries[-1][0]) + 1}-0"

    async def _trim_bodies(self, school_id: int, first: int, keep_from: int) -> None:
        """The envelopes of the sequences the stream trim removes (from its first entry on)."""
        key = self._keys.school_bodies(school_id)
        for low in range(first, keep_from, _TRIM_BATCH):
            await self._redis.hdel(key, *[str(s) for s in range(low, min(low + _TRIM_BATCH, keep_from))])

    async def _trim_erased(self, school_id: int, keep_from: int) -> None:
        """The erased envelopes go with the part of the stream that retention removed."""
        key = self._keys.school_erased(school_id)
        old = [seq for seq in await self._redis.hkeys(key) if int(as_text(seq)) < keep_from]
        if old:
            await self._redis.hdel(key, *old)


class _Probe(msgspec.Struct):
    """What identifies an event's record (decoding it skips `data` and `changes`)."""

    id: str
    resource: str
    resource_id: str


_PROBE: Final = msgspec.json.Decoder(_Probe)


def is_erased(event: Event) -> bool:
    return event.data == ERASED


_ERASED_TAILS: Final = (b',"data":{"erased":true}}', b',"data":{"erased":true},"changes":{"erased":true}}')


def is_erased_body(body: bytes) -> bool:
    """`is_erased` of an envelope without decoding it: `data` and `changes` are its last fields, and an
    erased envelope (`erased_body`) ends with them as `{"erased": true}`."""
    return body.endswith(_ERASED_TAILS)


def logged_bodies(entries: Sequence[Any] | None, bodies: Mapping[Any, Any] | None) -> Bodies:
    """Every envelope of a school's event log in sequence order, from its stream entries (XRANGE) and its
    `bodies` hash (HGETALL): the hash first, the stream entry's own `body` for data written before it."""
    out: Bodies = []
    bodies = bodies or {}
    for entry_id, fields in entries or ():
        seq = str(entry_seq(entry_id))
        body = bodies.get(seq.encode(), bodies.get(seq))
        if body is None and fields is not None:
            body = fields.get(b"body")
        if body is not None:
            out.append(as_bytes(body))
    return out


def erased_body(body: bytes) -> bytes:
    """The envelope with `data` (and `changes`, if present) replaced by `{"erased": true}`; the id, type,
    timestamp, school, sequence, resource and resource id unchanged, in the same order."""
    event = decode_event(body)
    return encode_event(
        msgspec.structs.replace(
            event, data=dict(ERASED), changes=None if event.changes is None else dict(ERASED)
        )
    )


async def school_log(redis: aioredis.Redis, keys: Keys, school_id: int) -> Bodies:
    """Every envelope of the school's event log, in sequence order (`logged_bodies`)."""
    async with redis.pipeline(transaction=True) as pipe:
        pipe.xrange(keys.school_events(school_id))
        pipe.hgetall(keys.school_bodies(school_id))
        entries, bodies = await pipe.execute()
    return logged_bodies(entries, bodies)


def _names(body: bytes, event_id: str) -> bool:
    """Whether the envelope is the event's (its id is its first field)."""
    return body.startswith(b'{"id":"' + event_id.encode() + b'"')


def _location(raw: bytes | str) -> tuple[int, int, str]:
    school, seq, etype = as_text(raw).split(":", 2)
    return int(school), int(seq), etype


def _seconds(moment: Moment) -> float:
    return moment.timestamp() if isinstance(moment, datetime) else float(moment)
