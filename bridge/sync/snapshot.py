"""The per (school, resource) snapshot in Redis, and the atomic commit of a diff with its events.

A snapshot is two hashes in the school's slot: id -> digests and the record's sequence (all that a diff
needs, read with one HGETALL) and id -> last known record, packed by store/records.py (read only for
changed and removed ids).

A digest-hash value (docs/development.md#the-diff-fast-path) is the record's 16-byte canonical digest, then,
for a record that came in a raw scan, `x` and the 8-byte digest of its bytes as d6 sent them (sync/diff.py
`stored_digest`; `r` and BLAKE2b's before), then its sequence. A value without the raw part (written before
raw digests were kept, or of a resource scanned decoded) reads as before: its byte 17 is a digit or nothing,
never a mark.

Beside the hash, the raw scans' commits keep the raw digests of the feed's records as one set
(docs/development.md#the-diff-fast-path): the `raws` string ("<verified>\n", then 8 bytes a digest) as last
written whole, and `raws+` / `raws-`, the digests added and removed since (sync/diff.py `KnownRaws`,
`RawUpdate`). The next raw scan reads them in one step (`known_raws`) and the stored values of the records
it decoded alone (`stored_values`). Each digest they make known is the raw digest stored for exactly one
record, and they are taken only while meta's `raws:<r>` equals the version: an erasure moves the version
alone, a purge deletes both, and a commit that keeps no set deletes it.

The record's sequence (docs/events.md#per-record-sequence) is the school sequence of the last event that told
its current state: ASCII decimal after the digests, none for 0 (a record taken in a silent baseline, or
written before sequences were kept). The diff sees only the digests (`load` cuts the sequence off); the
commit script writes the sequence, since only it knows the events' sequences: each upsert names the event of
its batch that told it (`_told`), and one no event told keeps the sequence it had (so does a retag, which
rewrites the raw digest alone).

The school's `meta` hash holds the per-resource version, baseline flag, record count and last successful
poll time, plus the school's event `seq` and `published` watermark.

The commit is one Lua script (store/scripts.py COMMIT) in the school's slot. It checks the fencing token
and the snapshot version, then writes the snapshot changes and appends the events to the school's event
stream, numbering them with the school's next sequences. The sequence is spliced into each envelope by the
script (`split_for_sequence`), so commits of different resources of one school never conflict over
numbers. A process killed at any instant leaves either the old snapshot and no events, or the new
snapshot and all of them.

Resources: every catalogue prefix (bridge/catalogue.py: "debtor", "learner", ...) and "integration".
The client-integrations list is global, but its events
need per-school sequences, so it is committed per school: the pairs of school N ("N:api_type_id") are the
`integration` snapshot of school N, in N's slot, one commit per school whose pairs changed. Every school
that ever committed is in the global set `{schools}:known` (added before the first commit of each of its
feeds, version 0, so a crash right after a commit still leaves the school findable by `publish_pending`;
nothing removes a school from it, and a store that lost it lost the versions too). The global token check
of the integrations watcher cannot be verified from a school's slot: integration commits pass
`token=None` (or hold `Lease(name="integration")` per school) and rely on the version check, which alone
already rules out a duplicate or lost event when two writers race.
"""

from __future__ import annotations

import sys
import time
from array import array
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Final

import msgspec
import redis.asyncio as aioredis

from bridge.catalogue import INTEGRATION, SNAPSHOT_RESOURCES
from bridge.errors import LeaseLost, SnapshotConflict, StoreCorrupt
from bridge.events.envelope import Event, split_for_sequence
from bridge.store.codec import as_bytes, as_text
from bridge.store.keys import (
    META_PUBLISHED,
    META_SEQ,
    SCHOOL_FLAGS,
    Keys,
    meta_baseline,
    meta_count,
    meta_handon,
    meta_polled,
    meta_raws,
    meta_version,
)
from bridge.store.records import pack_record, unpack_record
from bridge.store.scripts import Scripts
from bridge.sync.diff import (
    DIGEST_BYTES,
    RAW_AT,
    RAW_DIGEST_BYTES,
    RAW_END,
    RAW_MARK,
    DiffPlan,
    DiffResult,
    KnownRaws,
    PreviousSnapshot,
    RawUpdate,
    Record,
)

_CHUNK: Final = 1000
MAX_PAGE: Final = 5000
"""The largest `limit` of `read_records` (Lua's `unpack` of one page stays far below its limit)."""
_UNBODY_PAGE: Final = 500
_PACK: Final = msgspec.msgpack.Encoder()
_UNPACK_IDS: Final = msgspec.msgpack.Decoder(list[str])
_MARKS: Final = (RAW_MARK, b"r")
"""Today's mark of a raw digest, and the marks before it: a value with any of them has 8 bytes of raw
digest before its sequence."""
_LITTLE: Final = sys.byteorder == "little"


def sequence_of(value: bytes) -> int:
    """The record's sequence in a digest-hash value (see the module docstring)."""
    start = RAW_END if value[DIGEST_BYTES:RAW_AT] in _MARKS else DIGEST_BYTES
    return int(value[start:] or 0)


def pack_digests(raws: Iterable[int]) -> bytes:
    """Raw digests as the snapshot stores them: 8 bytes each, little-endian."""
    digests = array("Q", raws)
    if not _LITTLE:
        digests.byteswap()
    return digests.tobytes()


def unpack_digests(value: bytes) -> array[int] | None:
    """The digests `pack_digests` packed; None if `value` is not such a string."""
    if len(value) % RAW_DIGEST_BYTES:
        return None
    digests = array("Q")
    digests.frombytes(value)
    if not _LITTLE:
        digests.byteswap()
    return digests


def raw_update(update: RawUpdate | None, verified: float) -> bytes:
    """The commit script's argument for `update` (store/scripts.py COMMIT)."""
    if update is None:
        return b""
    if update.whole:
        return b"=%d\n" % int(verified) + pack_digests(update.digests)
    return b"+" + pack_digests(update.digests)


def _known(version: int, raws: Any, base: Any, added: Any, removed: Any) -> tuple[float, KnownRaws | None]:
    """(verified, the raw digests as one set) from what `_facts` read: the set only if kept up to date at
    `version` (`raws`, meta's raws:<r>) and readable."""
    head, newline, body = as_bytes(base).partition(b"\n") if base else (b"", b"", b"")
    verified = float(head) if newline and head.isdigit() else 0.0
    if not newline or raws is None or int(raws) != version:
        return verified, None
    whole = unpack_digests(body)
    more = unpack_digests(as_bytes(added or b""))
    fewer = unpack_digests(as_bytes(removed or b""))
    if whole is None or more is None or fewer is None:
        return verified, None
    return verified, KnownRaws(whole, more, fewer)


class ResourceMeta(msgspec.Struct, kw_only=True, frozen=True):
    version: int = 0
    baseline: bool = False
    count: int = 0
    last_polled: float | None = None


class SchoolMeta(msgspec.Struct, kw_only=True, frozen=True):
    school_id: int
    seq: int = 0
    published: int = 0
    resources: dict[str, ResourceMeta] = {}


class SchoolFlags(msgspec.Struct, kw_only=True, frozen=True):
    """Integration state kept in the school's `meta` hash, written atomically with the events it causes."""

    denied: float | None = None
    """Since when d6 has refused the school's data while the integrations list still shows it."""
    revoked: float | None = None
    """Since when the school has had no pair in the integrations list; since its denial when it was denied
    first (the purge clock counts from the first loss of authorisation, and leaving the list clears
    `denied`)."""
    purged: float | None = None
    """When its record snapshots were purged (`BRIDGE_REVOKED_PURGE_DAYS`)."""


FLAG_FIELDS: Final = SCHOOL_FLAGS


class ErasureOutcome(msgspec.Struct, kw_only=True, frozen=True):
    events: int
    """Events of the record whose stream entries were erased now."""
    body_removed: bool
    """Whether the snapshot still held the record's body (removed now)."""
    digest: bool
    """Whether the snapshot knows the record (its digest stays)."""


class RecordRow(msgspec.Struct, kw_only=True, frozen=True):
    resource_id: str
    sequence: int
    data: dict[str, Any] | None
    """None: the record was erased (only its digest is kept, docs/personal-data.md)."""


class RecordsPage(msgspec.Struct, kw_only=True, frozen=True):
    rows: list[RecordRow]
    as_of_sequence: int
    """The school's sequence (meta `seq`) when the page was read, in the same step."""
    next_after: str | None
    """The resource_id to continue after (keyset), None on the last page."""


class CommitResult(msgspec.Struct, kw_only=True, frozen=True):
    version: int
    events: list[Event]
    """The committed events with their sequences."""


ORIGIN_SECONDS: Final = 24 * 3600.0
"""How long what a write-back command changed is remembered for the `origin` of its event."""


class SnapshotStore:
    """Reads snapshots for diffing and commits diffs with their events."""

    def __init__(self, redis: aioredis.Redis, keys: Keys, scripts: Scripts) -> None:
        self._redis = redis
        self._keys = keys
        self._scripts = scripts

    async def origins(
        self, school_id: int, *, keep_seconds: float = ORIGIN_SECONDS
    ) -> dict[str, dict[str, Any]]:
        """What write-back commands changed lately (`note:<id>`, `promise:<id>` -> `{command_id,
        idempotency_key, kind}`, docs/commands.md), for the `origin` of the events that tell it; entries older
        than `keep_seconds` are dropped as they are read."""
        key = self._keys.command_origins(school_id)
        raw: Any = await self._redis.hgetall(key)
        found: dict[str, dict[str, Any]] = {}
        old: list[str] = []
        cutoff = time.time() - keep_seconds
        for field, value in raw.items():
            entry = msgspec.json.decode(value)
            if entry.get("at", 0) < cutoff:
                old.append(as_text(field))
            else:
                found[as_text(field)] = {k: entry.get(k) for k in ("command_id", "idempotency_key", "kind")}
        if old:
            await self._redis.hdel(key, *old)
        return found

    async def load(self, school_id: int, resource: str) -> PreviousSnapshot:
        """Digests, hold marker, version and baseline flag, read in one transaction (one slot)."""
        _check(resource)
        k = self._keys
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.hgetall(k.snapshot_hashes(school_id, resource))
            self._facts(pipe, school_id, resource)
            raw_hashes, *facts = await pipe.execute()
        ids = [key.decode() for key in raw_hashes]  # tens of thousands of records: comprehensions only
        values = list(raw_hashes.values())
        hashes = dict(zip(ids, [value[:DIGEST_BYTES] for value in values], strict=True))
        at, end, mark = RAW_AT, RAW_END, RAW_MARK
        marked = [(v[at:end], rid) for rid, v in zip(ids, values, strict=True) if v[DIGEST_BYTES:at] == mark]
        digests = array("Q")
        digests.frombytes(b"".join(raw for raw, _ in marked))
        if not _LITTLE:
            digests.byteswap()
        pairs = list(zip(digests, (rid for _, rid in marked), strict=True))
        raws = dict(pairs)
        if len(raws) != len(pairs):  # two ids, one raw digest: neither is taken on its bytes
            for raw, count in Counter(raw for raw, _ in pairs).items():
                if count > 1:
                    del raws[raw]
        return msgspec.structs.replace(_previous(*facts), hashes=hashes, raws=raws)

    async def known_raws(self, school_id: int, resource: str) -> PreviousSnapshot | None:
        """What a raw scan needs first: the snapshot's raw digests as one set (`known`), its size and the
        facts `load` reads, without a digest (`hashes` empty); None when no valid set is stored (see the
        module docstring): then `load`."""
        _check(resource)
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.hlen(self._keys.snapshot_hashes(school_id, resource))
            self._facts(pipe, school_id, resource)
            size, *facts = await pipe.execute()
        previous = _previous(*facts)
        if previous.known is None:
            return None
        return msgspec.structs.replace(previous, size=int(size))

    def _facts(self, pipe: Any, school_id: int, resource: str) -> None:
        """Queue the reads `_previous` takes apart."""
        k = self._keys
        pipe.get(k.snapshot_hold(school_id, resource))
        fields = [meta_version(resource), meta_baseline(resource), meta_raws(resource)]
        pipe.hmget(k.school_meta(school_id), fields)
        pipe.get(k.snapshot_dup(school_id, resource))
        for key in k.snapshot_raws(school_id, resource):
            pipe.get(key)

    async def stored_values(
        self, school_id: int, resource: str, ids: Sequence[str]
    ) -> tuple[dict[str, bytes], dict[str, Record]]:
        """The digest-hash values of `ids` and their last known records (those present), for `plan_sighted`
        (sync/diff.py), read in one step: the records are those of the ids a scan decoded, which are nearly
        all changed."""
        _check(resource)
        k = self._keys
        values: dict[str, bytes] = {}
        records: dict[str, Record] = {}
        for start in range(0, len(ids), _CHUNK):
            chunk = list(ids[start : start + _CHUNK])
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.hmget(k.snapshot_hashes(school_id, resource), chunk)
                pipe.hmget(k.snapshot_records(school_id, resource), chunk)
                found, packed = await pipe.execute()
            for rid, value, raw in zip(chunk, found, packed, strict=True):
                if value is not None:
                    values[rid] = as_bytes(value)
                if raw is not None:
                    records[rid] = unpack_record(as_bytes(raw))
        return values, records

    async def old_records(self, school_id: int, resource: str, plan: DiffPlan) -> dict[str, Record]:
        """The last known records `finish_diff` needs (`plan.need_old`): those read with the plan, or read
        now."""
        if plan.old is not None:
            return {rid: plan.old[rid] for rid in plan.need_old if rid in plan.old}
        return await self.records(school_id, resource, plan.need_old)

    async def unsettle(self, school_id: int, resource: str, scan_digest: bytes | None, ttl: float) -> None:
        """Store the digest of a scan not trusted (an id in it twice, sync/diff.py), or clear it (None)."""
        _check(resource)
        key = self._keys.snapshot_dup(school_id, resource)
        if scan_digest is None:
            await self._redis.delete(key)
        else:
            await self._redis.set(key, scan_digest, px=max(1, int(ttl * 1000)))

    async def records(self, school_id: int, resource: str, ids: Sequence[str]) -> dict[str, Record]:
        """The last known records of `ids` (those present), fetched in chunks."""
        _check(resource)
        key = self._keys.snapshot_records(school_id, resource)
        found: dict[str, Record] = {}
        for start in range(0, len(ids), _CHUNK):
            chunk = list(ids[start : start + _CHUNK])
            for rid, raw in zip(chunk, await self._redis.hmget(key, chunk), strict=True):
                if raw is not None:
                    found[rid] = unpack_record(as_bytes(raw))
        return found

    async def all_records(self, school_id: int, resource: str) -> dict[str, Record]:
        raw = await self._redis.hgetall(self._keys.snapshot_records(school_id, resource))
        return {as_text(key): unpack_record(as_bytes(value)) for key, value in raw.items()}

    async def commit(
        self,
        school_id: int,
        resource: str,
        result: DiffResult,
        events: Sequence[Event],
        *,
        token: int | None,
        lease: str = "poll",
        now: float | None = None,
        flags: Mapping[str, float | None] | None = None,
    ) -> CommitResult:
        """Apply `result` and append `events` atomically; raise LeaseLost or SnapshotConflict on refusal.

        Commit after every complete scan, even one without changes: it records the poll time, the baseline
        flag and the hold-back marker. `flags` sets (a time) or clears (None) school flags in the same step.
        """
        _check(resource)
        for event in events:
            if event.school_id != school_id:
                raise ValueError(f"event {event.id} belongs to school {event.school_id}, not {school_id}")
        k = self._keys
        at = time.time() if now is None else now
        args: list[Any] = [
            "" if token is None else str(token),
            resource,
            result.version,
            repr(at),
            _PACK.encode(sorted(result.hold)) if result.hold else b"",
            len(result.upserts) + len(result.retags),
            len(result.deletes),
            len(events),
            len(flags or {}),
            raw_update(result.raws, at if result.verified is None else result.verified),
        ]
        told = _told(events)
        for rid, dig, record in result.upserts:
            args += (rid, dig, pack_record(record), told.get(rid, 0))
        for rid, dig in result.retags:  # no record: the script rewrites the value alone
            args += (rid, dig, b"", 0)
        args += result.deletes
        for event in events:
            head, tail = split_for_sequence(event)
            args += (event.id, event.type, head, tail)
        for name, value in (flags or {}).items():
            if name not in FLAG_FIELDS:
                raise ValueError(f"unknown school flag {name!r}")
            args += (name, "" if value is None else repr(value))
        keys = [
            k.lease(school_id, lease),
            k.school_meta(school_id),
            k.snapshot_hashes(school_id, resource),
            k.snapshot_records(school_id, resource),
            k.snapshot_hold(school_id, resource),
            k.school_events(school_id),
            k.school_bodies(school_id),
            *k.snapshot_raws(school_id, resource),
        ]
        if result.version == 0:  # the feed's first commit (a round trip saved on every other one)
            await self._redis.sadd(k.known_schools(), str(school_id))
        reply = await self._scripts.commit(keys=keys, args=args)
        status = as_text(reply[0])
        if status == "lost_lease":
            raise LeaseLost(f"school {school_id}: token {token} does not hold the {lease} lease")
        if status == "conflict":
            raise SnapshotConflict(
                f"school {school_id} {resource}: snapshot is at version {as_text(reply[1])}, "
                f"diff was made against {result.version}"
            )
        if status != "ok":
            raise StoreCorrupt(f"school {school_id}: {as_text(reply[1])}")
        first, version = int(reply[1]), int(reply[3])
        numbered = [msgspec.structs.replace(e, sequence=first + n) for n, e in enumerate(events)]
        return CommitResult(version=version, events=numbered)

    async def read_records(
        self,
        school_id: int,
        resource: str,
        *,
        after: str | None = None,
        limit: int = 100,
        ids: Sequence[str] | None = None,
    ) -> RecordsPage:
        """A page of the snapshot with each record's sequence, and the school's sequence read in the same
        step (Redis only). Keyset-paged after `after` in id order (integers by value, then the others as
        text: store/scripts.py RECORDS_PAGE); with `ids`, exactly those that exist, in that order, unpaged.
        A resource without a snapshot has no rows."""
        _check(resource)
        k = self._keys
        meta, hashes, stored = (
            k.school_meta(school_id),
            k.snapshot_hashes(school_id, resource),
            k.snapshot_records(school_id, resource),
        )
        if ids is not None:
            wanted = list(dict.fromkeys(ids))
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.hget(meta, META_SEQ)
                if wanted:
                    pipe.hmget(hashes, wanted)
                    pipe.hmget(stored, wanted)
                seq, *found = await pipe.execute()
            rows = _rows(zip(wanted, *found, strict=True)) if wanted else []
            return RecordsPage(rows=rows, as_of_sequence=int(seq or 0), next_after=None)
        if not 1 <= limit <= MAX_PAGE:
            raise ValueError(f"limit must be 1 to {MAX_PAGE}, not {limit}")
        reply = await self._scripts.records_page(keys=[meta, hashes, stored], args=[after or "", limit])
        seq, more, page, values, records = reply
        rows = _rows(zip(map(as_text, page), values, records, strict=True))
        return RecordsPage(
            rows=rows,
            as_of_sequence=int(seq),
            next_after=rows[-1].resource_id if int(more) and rows else None,
        )

    async def erased_among(self, school_id: int, resource: str, ids: Sequence[str]) -> set[str]:
        """Those of `ids` whose records were erased (the digest kept, the body gone), in one step and
        without reading a record."""
        _check(resource)
        if not ids:
            return set()
        keys = [
            self._keys.snapshot_hashes(school_id, resource),
            self._keys.snapshot_records(school_id, resource),
        ]
        return {as_text(rid) for rid in await self._scripts.erased_among(keys=keys, args=list(ids))}

    async def freeze_ids(self, school_id: int, resource: str, into: str, ttl: float) -> tuple[int, int]:
        """Write the feed's record ids, in `read_records`' order, to the list `into` (in the school's slot;
        it expires after `ttl` seconds). Returns the school's sequence and the number of ids, read in the
        same step."""
        _check(resource)
        keys = [self._keys.school_meta(school_id), self._keys.snapshot_hashes(school_id, resource), into]
        seq, count = await self._scripts.freeze_ids(keys=keys, args=[int(ttl * 1000)])
        return int(seq), int(count)

    async def meta(self, school_id: int) -> SchoolMeta:
        raw = await self._redis.hgetall(self._keys.school_meta(school_id))
        fields = {as_text(key): as_text(value) for key, value in raw.items()}
        resources = {}
        for resource in SNAPSHOT_RESOURCES:
            if meta_version(resource) not in fields:
                continue
            polled = fields.get(meta_polled(resource))
            resources[resource] = ResourceMeta(
                version=int(fields[meta_version(resource)]),
                baseline=fields.get(meta_baseline(resource)) == "1",
                count=int(fields.get(meta_count(resource), 0)),
                last_polled=float(polled) if polled else None,
            )
        return SchoolMeta(
            school_id=school_id,
            seq=int(fields.get(META_SEQ, 0)),
            published=int(fields.get(META_PUBLISHED, 0)),
            resources=resources,
        )

    async def flags(self, school_id: int) -> SchoolFlags:
        values = await self._redis.hmget(self._keys.school_meta(school_id), list(FLAG_FIELDS))
        return _flags(values)

    async def flags_of(self, school_ids: Sequence[int]) -> dict[int, SchoolFlags]:
        """The flags of many schools in one round trip."""
        async with self._redis.pipeline(transaction=False) as pipe:
            for school_id in school_ids:
                pipe.hmget(self._keys.school_meta(school_id), list(FLAG_FIELDS))
            replies = await pipe.execute()
        return {school_id: _flags(values) for school_id, values in zip(school_ids, replies, strict=True)}

    async def handed_on(self, school_id: int, resource: str) -> None:
        """The feed's new baseline has been handed on to automatic snapshots."""
        await self._redis.hdel(self._keys.school_meta(school_id), meta_handon(resource))

    async def hand_ons_left(
        self, school_ids: Sequence[int], resources: Sequence[str], *, before: float, now: float
    ) -> list[tuple[int, str]]:
        """The new baselines committed before `before` and not yet handed on (a replica died or failed in
        between), each taken over for this caller: another caller gets it again only after as long."""
        fields = [meta_handon(resource) for resource in resources]
        async with self._redis.pipeline(transaction=False) as pipe:
            for school_id in school_ids:
                pipe.hmget(self._keys.school_meta(school_id), fields)
            replies: list[Any] = await pipe.execute()
        left = []
        for school_id, values in zip(school_ids, replies, strict=True):
            for resource, field, value in zip(resources, fields, values, strict=True):
                if value is None or float(value) >= before:
                    continue
                keys = [self._keys.school_meta(school_id)]
                if await self._scripts.handon_claim(keys=keys, args=[field, as_text(value), repr(now)]):
                    left.append((school_id, resource))
        return left

    async def pair_ids(self, school_ids: Sequence[int]) -> set[str]:
        """Every (school, API type) pair the integration snapshots of these schools hold."""
        async with self._redis.pipeline(transaction=False) as pipe:
            for school_id in school_ids:
                pipe.hkeys(self._keys.snapshot_hashes(school_id, INTEGRATION))
            replies = await pipe.execute()
        return {as_text(pair) for pairs in replies for pair in pairs}

    async def purge(self, school_id: int, cutoff: float, resources: Sequence[str]) -> bool:
        """Delete the record snapshots of a school revoked or denied since before `cutoff` (atomic, once)."""
        k = self._keys
        keys = [k.school_meta(school_id)]
        for resource in resources:
            _check(resource)
            keys += [
                k.snapshot_hashes(school_id, resource),
                k.snapshot_records(school_id, resource),
                k.snapshot_hold(school_id, resource),
                *k.snapshot_raws(school_id, resource),
            ]
        args = [repr(cutoff), repr(time.time()), *resources]
        return bool(await self._scripts.purge_snapshots(keys=keys, args=args))

    async def has_record(self, school_id: int, resource: str, record_id: str) -> bool:
        """Whether the snapshot knows the record (its digest), whether or not it still keeps its body."""
        _check(resource)
        return bool(await self._redis.hexists(self._keys.snapshot_hashes(school_id, resource), record_id))

    async def erase(
        self,
        school_id: int,
        resource: str,
        record_id: str,
        *,
        seq: int,
        events: Sequence[tuple[int, str, bytes]],
    ) -> ErasureOutcome | None:
        """Erase one record in the school's slot, atomically (store/scripts.py ERASE_RECORD): `events`
        (sequence, id, erased envelope) overwrite their envelopes in the school's `bodies` hash, and the
        snapshot keeps the record's digest but not its body, so the next poll neither re-creates nor
        removes it (sync/diff.py). A hash overwritten is gone from memory at once and from Redis's files
        at their next save or rewrite; a stream would keep a deleted entry's bytes (docs/personal-data.md).

        A school whose event stream was written before the `bodies` hash has it rewritten first, once
        (EVENTS_UNBODY: one script over the school's stream, so commits wait for it).

        `seq` is the school's sequence when the events were read; None means the school has moved on since
        (or has unpublished events): publish, read again and retry.
        """
        _check(resource)
        k = self._keys
        keys = [
            k.school_meta(school_id),
            k.snapshot_hashes(school_id, resource),
            k.snapshot_records(school_id, resource),
            k.school_events(school_id),
            k.school_erased(school_id),
            k.school_bodies(school_id),
        ]
        args: list[Any] = [resource, record_id, seq, len(events)]
        for sequence, event_id, body in events:
            args += (sequence, event_id, body)
        reply = await self._scripts.erase_record(keys=keys, args=args)
        if as_text(reply[0]) == "unbody":
            await self.unbody(school_id)
            reply = await self._scripts.erase_record(keys=keys, args=args)
        if as_text(reply[0]) != "ok":
            return None
        return ErasureOutcome(
            events=int(reply[1]), body_removed=bool(int(reply[2])), digest=bool(int(reply[3]))
        )

    async def unbody(self, school_id: int) -> int:
        """Rewrite the school's event stream without envelopes (store/scripts.py EVENTS_UNBODY); returns how
        many entries it kept."""
        k = self._keys
        keys = [
            k.school_meta(school_id),
            k.school_events(school_id),
            k.school_bodies(school_id),
            k.school_events_rewrite(school_id),
        ]
        return int(await self._scripts.events_unbody(keys=keys, args=[_UNBODY_PAGE]))

    async def known_schools(self) -> list[int]:
        members = await self._redis.smembers(self._keys.known_schools())
        return sorted(int(m) for m in members)

    async def integrations_baselined(self) -> bool:
        """Whether this deployment recorded its first integrations list (silent: docs/guarantees.md)."""
        return bool(await self._redis.exists(self._keys.integrations_baseline()))

    async def mark_integrations_baselined(self) -> None:
        await self._redis.set(self._keys.integrations_baseline(), repr(time.time()), nx=True)

    async def integration_pair_counts(self, school_ids: Sequence[int]) -> dict[int, int]:
        """How many (school, API type) pairs each school's integration snapshot holds, in one round trip."""
        async with self._redis.pipeline(transaction=False) as pipe:
            for school_id in school_ids:
                pipe.hlen(self._keys.snapshot_hashes(school_id, INTEGRATION))
            return dict(zip(school_ids, map(int, await pipe.execute()), strict=True))


def _previous(raw_hold: Any, meta: Sequence[Any], raw_dup: Any, *raw_digests: Any) -> PreviousSnapshot:
    """The facts `_facts` read, no digest yet: `known` set when the raw digests stored as one set are
    valid at the version the snapshot is at."""
    ver, baseline, raws = meta
    version = int(ver or 0)
    verified, known = _known(version, raws, *raw_digests)
    return PreviousSnapshot(
        hashes={},
        hold=frozenset(_UNPACK_IDS.decode(raw_hold)) if raw_hold else None,
        version=version,
        baseline=bool(baseline),
        unsettled=as_bytes(raw_dup) if raw_dup else None,
        known=known,
        verified=verified,
    )


def _flags(values: Sequence[Any]) -> SchoolFlags:
    """The flags from an HMGET of FLAG_FIELDS (absent fields stay None)."""
    return SchoolFlags(**{n: float(as_text(v)) for n, v in zip(FLAG_FIELDS, values, strict=True) if v})


def _told(events: Sequence[Event]) -> dict[str, int]:
    """Record id -> the 1-based index in the batch of the event that tells its new state: the commit script
    writes that event's sequence as the record's. A diff gives a record at most one event."""
    return {event.resource_id: n for n, event in enumerate(events, 1)}


def _rows(found: Iterable[tuple[str, Any, Any]]) -> list[RecordRow]:
    """Rows from (id, digest-hash value, packed record): no value, no record (it is gone)."""
    return [
        RecordRow(
            resource_id=rid,
            sequence=sequence_of(as_bytes(value)),
            data=unpack_record(as_bytes(raw)) if raw is not None else None,
        )
        for rid, value, raw in found
        if value is not None
    ]


def _check(resource: str) -> None:
    if resource not in SNAPSHOT_RESOURCES:
        raise ValueError(f"unknown resource {resource!r}; one of {', '.join(SNAPSHOT_RESOURCES)}")
