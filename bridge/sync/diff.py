"""What changed between the stored snapshot and a complete new scan. Pure: no I/O.

Diffing is two steps so that the store reads old records only for the ids that need them:

    plan = plan_diff(previous, records, id_of)        # hashes the scan, compares with stored hashes
    old = await snapshots.records(school, resource, plan.need_old)
    result = finish_diff(plan, old)                     # field changes, removals, the hold-back rule

Records arrive normalised (d6/records.py), so comparing canonical bytes (sorted keys) means a reordered
object or `"40"` vs `40` is no change.

Mass-removal hold-back (docs/guarantees.md#detection-rules): when a scan would remove more than half of a
snapshot of at least 20 records, the removals are held back: nothing is emitted, the records stay in the
snapshot, and the held id set is stored as a marker. The next complete scan confirms it if it again lacks
every held id; then the held ids are removed (and emitted). If some came back, it is not confirmed: the
remaining removals are judged afresh (a mass again: a new hold; a few: ordinary removals). Creates and
updates are never held.

Raw scans (docs/development.md#the-diff-fast-path): the poller hands over most feeds' pages with their
records still in bytes. Each record's bytes are hashed (`raw_digest`), and the snapshot keeps that raw
digest beside the canonical one, so a record whose bytes are the very bytes stored last time is unchanged:
it is neither decoded, nor normalised, nor hashed again. Every other record is decoded and diffed as above,
on its canonical digest: a retyped id or reordered keys change its bytes but not its canonical digest, so
it is no change, and only its raw digest is rewritten, silently (`retag`), for the next scan's fast path. A
record whose id was seen earlier in the scan always takes the slow path, so the duplicate rule below sees
the same rows, with the same digests, as it does without the fast path.

A raw scan is planned one of two ways:

    sighting = sight_raw(known.known, pages, id_of)           # the snapshot's raw digests, one packed string
    plan = plan_sighted(known, sighting, await stored(sighting.records))   # the decoded ids' values only
    # or, when either answers None (an id twice, a record gone, no valid packed digests):
    plan = plan_raw_diff(await snapshots.load(...), pages, id_of)          # every stored value

The first reads the snapshot's raw digests as one string (`PreviousSnapshot.known`, written by each raw
scan's commit: `DiffResult.raws`) and the stored values of the decoded ids alone; its id for a record taken
on its bytes is implicit: each known digest is the raw digest stored for exactly one record. The second
reads every stored value, as every scan did before.

Duplicate ids (docs/guarantees.md): a scan in which one id appears twice (the list moved under the cursor, or
d6 repeated a row) is not trusted at once. The plan names the ids (`duplicated`) and a digest of the whole
scan (`scan_digest`: every id with its last row, and every row of a duplicated id in order); it is
`trusted` only when the snapshot's `unsettled` digest, stored by the scan before, is the same: two
consecutive scans agree. Then it is diffed as usual, the last row of an id winning. The poller stores the
digest of a scan it does not trust, and clears it after a trusted one. A transaction feed's keys
(d6/finance.py `TransactionKeys`) give the same key to one row repeated on two pages, so the same rule
covers its exact repeats across a page boundary.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from itertools import chain
from typing import Any, Final, Protocol

import msgspec
from xxhash import xxh3_64_intdigest

from bridge.errors import D6MalformedResponse
from bridge.events.envelope import FieldChange

Record = dict[str, Any]

HOLD_MIN_RECORDS: Final = 20
DIGEST_BYTES: Final = 16
RAW_DIGEST_BYTES: Final = 8
RAW_MARK: Final = b"x"
"""What precedes a raw digest in the snapshot's value (sync/snapshot.py). It names the hash (`raw_digest`)
and stands for the normalisation of bridge/d6/records.py as well: were either to change, a new mark makes
every stored raw digest unknown, and the next scan takes the slow path once (and stores the new mark),
rather than trusting records hashed or normalised the old way. `r` was BLAKE2b's, before."""
RAW_TRUST_SECONDS: Final = 24 * 3600.0
"""How long a feed's records are taken on their bytes before a scan decodes every one of them again
(`plan_raw_diff(..., trust_bytes=False)`): a change whose bytes hash as its old bytes did (a collision of
the 64-bit raw digest) is found within this time."""
RAW_AT: Final = DIGEST_BYTES + len(RAW_MARK)
RAW_END: Final = RAW_AT + RAW_DIGEST_BYTES
"""Where a digest-hash value holds its raw digest (`value[RAW_AT:RAW_END]`), when it has one."""
_CANONICAL: Final = msgspec.json.Encoder(order="sorted")
_SCALARS: Final = frozenset({str, int, bool, type(None)})
"""Types whose equal values encode alike (not float: -0.0 == 0.0, and their JSON differs)."""


def canonical(value: Any) -> bytes:
    return _CANONICAL.encode(value)


def digest(record: Record) -> bytes:
    """BLAKE2b-128 of the canonical JSON: what the snapshot stores per record."""
    return hashlib.blake2b(_CANONICAL.encode(record), digest_size=DIGEST_BYTES).digest()


raw_digest: Final[Callable[[Any], int]] = xxh3_64_intdigest
"""A record's bytes as d6 sent them (`msgspec.Raw`, bytes) hashed: XXH3, 64 bits, as an integer. Not a
cryptographic hash, but a fast one: it runs on every record of every scan, and the canonical digest that
decides a change stays BLAKE2b (see `RAW_TRUST_SECONDS` for what a collision could cost)."""


def stored_digest(digest: bytes, raw: int | None) -> bytes:
    """The digest part of a snapshot value: the canonical digest, then the raw digest when known."""
    return digest if raw is None else digest + RAW_MARK + raw.to_bytes(RAW_DIGEST_BYTES, "little")


class RawRows(Protocol):
    """A page of a raw scan (bridge/d6/pagination.py `Page`): its records' bytes, and a way to decode one
    (normalised and checked, raising `D6MalformedResponse` as the client does)."""

    @property
    def rows(self) -> list[msgspec.Raw] | None: ...

    def record(self, index: int) -> Record: ...


RAW_LOG_MIN: Final = 32
RAW_LOG_SHARE: Final = 8
"""A commit adds to the raw digests stored as one set (`RawUpdate(whole=False)`) while the digests added
and removed since it was last written whole stay under RAW_LOG_MIN or 1/RAW_LOG_SHARE of it; past that it
writes the set whole again. So the log costs at most an eighth of the set's memory, or 256 bytes for a
small feed (whose set is cheap to write whole)."""


class KnownRaws(msgspec.Struct, frozen=True):
    """The raw digests stored as one set: `base` as last written whole, then those `added` and `removed` by
    the commits since. A digest in `removed` is not known, even if added again later: decoding a record
    is always safe, taking one on its bytes only when they are surely its stored bytes."""

    base: Sequence[int]
    added: Sequence[int] = ()
    removed: Sequence[int] = ()

    def unknown(self, seen: set[int]) -> set[int]:
        """The digests of `seen` not known."""
        unknown = seen.difference(self.base, self.added)
        if self.removed:
            unknown |= seen.intersection(self.removed)
        return unknown

    @property
    def log(self) -> int:
        """How many digests commits added or removed since the set was last written whole."""
        return len(self.added) + len(self.removed)


class RawUpdate(msgspec.Struct, frozen=True):
    """What a commit does to the raw digests stored as one set (`KnownRaws`)."""

    digests: Collection[int]
    whole: bool
    """True: `digests` are every one, written anew. False: they are added, and the commit script removes
    the stored raw digest of each record it rewrites or deletes."""


class PreviousSnapshot(msgspec.Struct, kw_only=True, frozen=True):
    """What the store knows before a scan; `version` is the optimistic-concurrency check of the commit."""

    hashes: dict[str, bytes]
    """Id -> canonical digest: of every record (`load`), or, on a sighted raw scan (`plan_sighted`), of the
    decoded ones only (`size` counts them all)."""
    raws: dict[int, str] = {}
    """Raw digest -> id, for the records stored with one (a raw digest two ids share is left out)."""
    hold: frozenset[str] | None = None
    version: int = 0
    baseline: bool = False
    unsettled: bytes | None = None
    """The `scan_digest` of the last scan that was not trusted (an id in it twice); None after a clean one."""
    known: KnownRaws | None = None
    """The raw digests the raw scans' commits stored as one set (`DiffResult.raws`), when still valid at
    this version: each known one is the raw digest stored for exactly one record. None: read every
    value."""
    size: int | None = None
    """How many records the snapshot holds, when `hashes` does not have them all."""
    verified: float = 0.0
    """When a scan last decoded every record of the feed (0: not known)."""

    @property
    def count(self) -> int:
        """How many records the snapshot holds."""
        return len(self.hashes) if self.size is None else self.size


class RecordChange(msgspec.Struct, kw_only=True, frozen=True):
    """One created, updated or removed record. For removals `record` is the last known record."""

    id: str
    record: Record
    changes: dict[str, FieldChange] | None = None


class DiffPlan(msgspec.Struct, kw_only=True, frozen=True):
    previous: PreviousSnapshot
    records: dict[str, Record]
    digests: dict[str, bytes]
    created: list[str]
    changed: list[str]
    missing: list[str]
    duplicates: int
    compare: Callable[[Record], Record] | None = None
    duplicated: tuple[str, ...] = ()
    """The ids that appeared more than once in the scan, sorted."""
    scan_digest: bytes | None = None
    """With `duplicated`: what the next scan must match to be trusted (see the module docstring)."""
    raws: dict[str, int] = {}
    """Id -> raw digest of its (last) row, for the rows a raw scan decoded."""
    retag: list[str] = []
    """Ids unchanged but for their bytes: only their stored raw digest is rewritten."""
    skipped: int = 0
    """Rows of a raw scan taken as unchanged on their bytes alone."""
    kept: Collection[int] | None = None
    """The raw digests of those rows; None when the scan's raw digests are not to be stored as a set (a scan
    not raw, or with two records of one raw digest)."""
    verified: float | None = 0.0
    """When a scan last decoded every record (`PreviousSnapshot.verified`); None: this one did."""
    old: dict[str, Record] | None = None
    """The last known records of the decoded ids, when read with the plan (`plan_sighted`); None: read
    them for `need_old` (sync/snapshot.py `old_records`)."""

    @property
    def trusted(self) -> bool:
        """Whether the scan may be diffed: no id twice, or the scan before was this same scan."""
        return not self.duplicated or self.previous.unsettled == self.scan_digest

    @property
    def need_old(self) -> list[str]:
        """The ids whose stored records `finish_diff` needs: changed and missing ones."""
        return self.changed + self.missing


class DiffResult(msgspec.Struct, kw_only=True, frozen=True):
    created: list[RecordChange]
    updated: list[RecordChange]
    removed: list[RecordChange]
    held_back: int
    hold: frozenset[str] | None
    """The hold-back marker to store (None clears it)."""
    upserts: list[tuple[str, bytes, Record]]
    """(id, digest, record) to write into the snapshot: every created and updated record. The digest is
    the canonical one, followed by the raw one when the record came raw (`stored_digest`)."""
    retags: list[tuple[str, bytes]] = []
    """(id, digest) of records whose snapshot value alone is rewritten: a new raw digest, nothing else."""
    raws: RawUpdate | None = None
    """What the commit does to the raw digests stored as one set (`PreviousSnapshot.known`); None deletes
    them."""
    verified: float | None = 0.0
    """As `DiffPlan.verified`: stored with `raws` written whole."""
    deletes: list[str]
    """Ids to delete from the snapshot: the emitted removals."""
    version: int
    """The snapshot version this diff was computed against."""
    duplicates: int = 0

    @property
    def empty(self) -> bool:
        return not (self.created or self.updated or self.removed)


def plan_diff(
    previous: PreviousSnapshot,
    records: Iterable[Record],
    id_of: str | Callable[[Record], str],
    compare: Callable[[Record], Record] | None = None,
    *,
    keys: Sequence[str] | None = None,
) -> DiffPlan:
    """Hash the new scan and sort ids into created / changed / missing. `id_of` is a field or a function;
    `keys`, when given, are the records' ids in order instead (a transaction scan's `TransactionKeys`).

    `compare` gives the form records are compared in (amounts normalised). Digests are of the records as
    sent, so an unchanged record costs what it costs without one; a record whose digest moved is compared
    in that form by `finish_diff`, and one that differs only in form updates the snapshot silently."""
    scanned: dict[str, Record] = {}
    digests: dict[str, bytes] = {}
    repeats: dict[str, list[bytes]] = {}  # a duplicated id -> the digest of each of its rows, in order
    encode, blake2b = _CANONICAL.encode, hashlib.blake2b  # the hot loop: tens of thousands of records
    if keys is None:
        key = _key_function(id_of)
        keyed: Iterable[tuple[str, Record]] = ((key(record), record) for record in records)
    else:
        keyed = zip(keys, records, strict=True)
    for rid, record in keyed:
        row = blake2b(encode(record), digest_size=DIGEST_BYTES).digest()
        if rid in scanned:  # the same id twice: the last row wins, and the scan is not trusted at once
            repeats.setdefault(rid, [digests[rid]]).append(row)
        scanned[rid] = record
        digests[rid] = row
    duplicates, duplicated, scan_digest = _repeated(digests, repeats)
    old = previous.hashes
    created = [rid for rid in scanned if rid not in old]
    changed = [rid for rid in scanned if rid in old and old[rid] != digests[rid]]
    missing = sorted(rid for rid in old if rid not in scanned)
    return DiffPlan(
        previous=previous,
        records=scanned,
        digests=digests,
        created=created,
        changed=changed,
        missing=missing,
        duplicates=duplicates,
        compare=compare,
        duplicated=duplicated,
        scan_digest=scan_digest,
    )


def plan_raw_diff(
    previous: PreviousSnapshot,
    pages: Iterable[RawRows],
    id_of: str | Callable[[Record], str],
    compare: Callable[[Record], Record] | None = None,
    *,
    trust_bytes: bool = True,
) -> DiffPlan:
    """`plan_diff` of a raw scan, against every stored value (`load`): a record whose bytes the snapshot
    knows (its raw digest) is unchanged and costs its hash; the others are decoded (`page.record`) and
    planned as `plan_diff` plans them. Only for resources whose records are identified by their own content,
    one row one record (see the module docstring). `digests` then holds the decoded records' digests only.
    Without `trust_bytes`, every record is decoded (and a record whose bytes are known is no retag).

    The common case goes page by page (hash every row, look every digest up); a scan in which an id comes
    twice is planned again row by row, in order (`_plan_in_order`), as the duplicate rule needs."""
    key = _key_function(id_of)
    lookup: dict[int, str] = previous.raws if trust_bytes else {}
    get = lookup.get
    found: list[str | None] = []
    kept: list[int] = []
    unknown: list[tuple[RawRows, int, int]] = []  # (page, index, raw digest) of each row to decode
    for page in pages:  # the hot loop: tens of thousands of records
        raws = list(map(raw_digest, page.rows or ()))
        ids = list(map(get, raws))
        if None in ids:
            kept += [raw for raw, rid in zip(raws, ids, strict=True) if rid is not None]
            unknown += [(page, index, raws[index]) for index, rid in enumerate(ids) if rid is None]
        else:
            kept += raws
        found += ids
    skipped = len(kept)
    seen = set(found)
    seen.discard(None)
    if len(seen) != skipped:  # the same bytes twice
        return _plan_in_order(previous, pages, key, compare, trust_bytes=trust_bytes)
    scanned: dict[str, Record] = {}
    digests: dict[str, bytes] = {}
    decoded: dict[str, int] = {}
    for page, index, raw in unknown:
        record = page.record(index)
        rid = key(record)
        if rid in seen or rid in scanned:  # an id twice
            return _plan_in_order(previous, pages, key, compare, trust_bytes=trust_bytes)
        scanned[rid] = record
        digests[rid] = digest(record)
        decoded[rid] = raw
    created, changed, retag = _sort_decoded(previous, scanned, digests, decoded)
    old = previous.hashes
    missing: list[str] = []
    if skipped + len(scanned) - len(created) != len(old):  # not every stored id came back
        missing = sorted(rid for rid in old if rid not in seen and rid not in scanned)
    return DiffPlan(
        previous=previous,
        records=scanned,
        digests=digests,
        created=created,
        changed=changed,
        missing=missing,
        duplicates=0,
        compare=compare,
        raws=decoded,
        retag=retag,
        skipped=skipped,
        kept=_kept(kept, decoded, {*created, *changed, *retag}),
        verified=previous.verified if skipped else None,
    )


class Sighting(msgspec.Struct, kw_only=True, frozen=True):
    """A raw scan looked at against the snapshot's raw digests (`sight_raw`): the rows it did not know,
    decoded, and what `plan_sighted` needs of the others."""

    records: dict[str, Record]
    """Id -> record, of the rows decoded (their bytes unknown)."""
    raws: dict[str, int]
    """Id -> raw digest, of the rows decoded."""
    seen: set[int]
    """The raw digest of every row."""
    unknown: set[int]
    """The raw digests of the rows decoded: `seen` less these are the rows taken on their bytes."""

    @property
    def kept(self) -> Collection[int]:
        return _Less(self.seen, self.unknown)


class _Less(Collection[int]):
    """`whole` less `part`, a subset of it, counted at once but listed only when iterated: a sighted scan's
    kept digests are counted on every poll, listed only when the set is written whole (`finish_diff`)."""

    __slots__ = ("_part", "_whole")

    def __init__(self, whole: set[int], part: set[int]) -> None:
        self._whole, self._part = whole, part

    def __len__(self) -> int:
        return len(self._whole) - len(self._part)

    def __contains__(self, value: object) -> bool:
        return value in self._whole and value not in self._part

    def __iter__(self) -> Iterator[int]:
        return iter(self._whole - self._part)


def sight_raw(
    known: KnownRaws, pages: Sequence[RawRows], id_of: str | Callable[[Record], str]
) -> Sighting | None:
    """Step one of a sighted raw scan (see the module docstring): hash every row, decode the rows whose
    digest `known` lacks. None when the scan must be planned against every stored value: the same bytes
    twice, or an id twice among the decoded rows."""
    key = _key_function(id_of)
    hashed = [list(map(raw_digest, page.rows or ())) for page in pages]  # the hot loop: every record
    seen = set(chain.from_iterable(hashed))
    if len(seen) != sum(map(len, hashed)):
        return None
    unknown = known.unknown(seen)
    records: dict[str, Record] = {}
    decoded: dict[str, int] = {}
    if unknown:
        for page, raws in zip(pages, hashed, strict=True):
            if unknown.isdisjoint(raws):
                continue
            for index, raw in enumerate(raws):
                if raw in unknown:
                    record = page.record(index)
                    rid = key(record)
                    if rid in records:
                        return None
                    records[rid] = record
                    decoded[rid] = raw
    return Sighting(records=records, raws=decoded, seen=seen, unknown=unknown)


def plan_sighted(
    previous: PreviousSnapshot,
    sighting: Sighting,
    stored: Mapping[str, bytes],
    compare: Callable[[Record], Record] | None = None,
    *,
    old: dict[str, Record] | None = None,
) -> DiffPlan | None:
    """Step two: the plan, from the stored values (digest-hash values, sync/snapshot.py) of the decoded ids
    that the snapshot holds (and their records, `old`, when read with them). None when the scan must be
    planned against every stored value: a decoded record's stored bytes came too (its id twice), or a
    stored record did not come back (removals are found, and held back, against every id)."""
    seen, unknown = sighting.seen, sighting.unknown
    hashes: dict[str, bytes] = {}
    digests: dict[str, bytes] = {}
    created: list[str] = []
    changed: list[str] = []
    retag: list[str] = []
    for rid, record in sighting.records.items():
        digests[rid] = row = digest(record)
        value = stored.get(rid)
        if value is None:
            created.append(rid)
            continue
        hashes[rid] = value[:DIGEST_BYTES]
        old_raw = stored_raw(value)
        if old_raw is not None and old_raw in seen and old_raw not in unknown:  # its stored bytes came too
            return None
        (retag if hashes[rid] == row else changed).append(rid)
    kept = sighting.kept
    if len(kept) + len(hashes) != previous.count:
        return None
    return DiffPlan(
        previous=msgspec.structs.replace(previous, hashes=hashes),
        records=sighting.records,
        digests=digests,
        created=created,
        changed=changed,
        missing=[],
        duplicates=0,
        compare=compare,
        raws=sighting.raws,
        retag=retag,
        skipped=len(kept),
        kept=kept,
        verified=previous.verified,
        old=old,
    )


def stored_raw(value: bytes) -> int | None:
    """The raw digest in a digest-hash value (`stored_digest`), if it has one of today's."""
    if value[DIGEST_BYTES:RAW_AT] != RAW_MARK or len(value) < RAW_END:
        return None
    return int.from_bytes(value[RAW_AT:RAW_END], "little")


def _sort_decoded(
    previous: PreviousSnapshot,
    scanned: Mapping[str, Record],
    digests: Mapping[str, bytes],
    raws: Mapping[str, int],
) -> tuple[list[str], list[str], list[str]]:
    """The decoded records of a raw scan as (created, changed, retag): a retag is unchanged but for its
    bytes."""
    old, known = previous.hashes, previous.raws
    created, changed, retag = [], [], []
    for rid in scanned:
        stored = old.get(rid)
        if stored is None:
            created.append(rid)
        elif stored != digests[rid]:
            changed.append(rid)
        elif known.get(raws[rid]) != rid:
            retag.append(rid)
    return created, changed, retag


def _plan_in_order(
    previous: PreviousSnapshot,
    pages: Iterable[RawRows],
    key: Callable[[Record], str],
    compare: Callable[[Record], Record] | None,
    *,
    trust_bytes: bool,
) -> DiffPlan:
    """`plan_raw_diff` row by row: a row whose bytes the snapshot knows, of an id not seen yet in the scan,
    is unchanged; any other row is decoded, so every row of an id seen twice is decoded but the first, and
    the plan (`duplicated`, `scan_digest`, the last row winning) is the one `plan_diff` makes."""
    known, old = previous.raws if trust_bytes else {}, previous.hashes
    scanned: dict[str, Record] = {}
    digests: dict[str, bytes] = {}
    raws: dict[str, int] = {}
    repeats: dict[str, list[bytes]] = {}
    first: dict[str, int] = {}  # ids taken on their bytes -> their raw digest
    for page in pages:
        for index, row in enumerate(page.rows or ()):
            raw = raw_digest(row)
            rid = known.get(raw)
            if rid is not None and rid not in digests:  # the bytes stored last time: unchanged
                digests[rid] = old[rid]
                first[rid] = raw
                continue
            record = page.record(index)
            rid = key(record)
            row_digest = digest(record)
            if rid in digests:  # the same id twice: the last row wins, and the scan is not trusted at once
                repeats.setdefault(rid, [digests[rid]]).append(row_digest)
            scanned[rid] = record
            digests[rid] = row_digest
            raws[rid] = raw
    decoded = {rid: digests[rid] for rid in scanned}
    created, changed, retag = _sort_decoded(previous, scanned, decoded, raws)
    duplicates, duplicated, scan_digest = _repeated(digests, repeats)
    return DiffPlan(
        previous=previous,
        records=scanned,
        digests=digests,
        created=created,
        changed=changed,
        missing=sorted(rid for rid in old if rid not in digests),
        duplicates=duplicates,
        compare=compare,
        duplicated=duplicated,
        scan_digest=scan_digest,
        raws=raws,
        retag=retag,
        skipped=len(first.keys() - scanned.keys()),
        kept=_kept(
            [raw for rid, raw in first.items() if rid not in scanned], raws, {*created, *changed, *retag}
        ),
        verified=previous.verified if first else None,
    )


def _kept(taken: list[int], decoded: Mapping[str, int], moved: set[str]) -> list[int] | None:
    """A raw scan's `kept`: the raw digests of the rows taken on their bytes, and of the rows decoded but
    left as stored (decoded although their bytes were known: no raw digest moves). None when two of the
    scan's records share a raw digest: no set is stored then (each of its digests names one record)."""
    kept = taken + [raw for rid, raw in decoded.items() if rid not in moved]
    every = kept + [decoded[rid] for rid in moved]
    return kept if len(set(every)) == len(every) else None


def _repeated(
    digests: Mapping[str, bytes], repeats: Mapping[str, list[bytes]]
) -> tuple[int, tuple[str, ...], bytes | None]:
    """A plan's `duplicates`, `duplicated` and `scan_digest`, from the ids that came twice (each with its
    rows' digests, in order): the duplicate rule, for `plan_diff` and a raw scan planned row by row."""
    scan_digest = _scan_digest(digests, repeats) if repeats else None
    return sum(len(rows) - 1 for rows in repeats.values()), tuple(sorted(repeats)), scan_digest


def _scan_digest(digests: Mapping[str, bytes], repeats: Mapping[str, list[bytes]]) -> bytes:
    """What a suspicious scan was: each id with its (last) row's digest, and each row of a duplicated id."""
    summary = hashlib.blake2b(digest_size=DIGEST_BYTES)
    for rid in sorted(digests):
        summary.update(f"{rid}\0".encode())
        summary.update(digests[rid])
    for rid in sorted(repeats):
        summary.update(f"\1{rid}\0".encode())
        for row in repeats[rid]:
            summary.update(row)
    return summary.digest()


def finish_diff(plan: DiffPlan, old_records: Mapping[str, Record]) -> DiffResult:
    """Field-level changes for updates, last known records for removals, and the hold-back rule.

    A digest without a stored record is an erased record (docs/personal-data.md#erase-a-record): it stays
    erased.
    If d6 changed it, nothing is emitted and its old digest stays (so nothing of it is stored again); if
    d6 no longer returns it, it leaves the snapshot silently (nothing of it is left to tell).
    """
    erased = {rid for rid in plan.need_old if rid not in old_records}
    created = [RecordChange(id=rid, record=plan.records[rid]) for rid in plan.created]
    updated = []
    for rid in plan.changed:
        if rid in erased:
            continue
        new = plan.records[rid]
        changes = field_changes(old_records.get(rid, {}), new, plan.compare)
        if changes:  # else only its form changed ("3500" for "3500.00"): the snapshot takes it silently
            updated.append(RecordChange(id=rid, record=new, changes=changes))
    missing = [rid for rid in plan.missing if rid not in erased] if erased else plan.missing
    remove_ids, hold, held_back = decide_removals(missing, plan.previous.count, plan.previous.hold)
    removed = [RecordChange(id=rid, record=old_records.get(rid) or {}) for rid in remove_ids]
    raws = plan.raws
    stored = [rid for rid in plan.created + plan.changed if rid not in erased]
    upserts = [(rid, stored_digest(plan.digests[rid], raws.get(rid)), plan.records[rid]) for rid in stored]
    retags = [(rid, stored_digest(plan.digests[rid], raws[rid])) for rid in plan.retag]
    update = None
    if plan.kept is not None:  # each record stored with today's raw digest: kept, upserted or retagged
        fresh = [*(raws[rid] for rid in stored if rid in raws), *map(raws.__getitem__, plan.retag)]
        known = plan.previous.known
        if known is not None and plan.verified is not None:
            logged = known.log + len(fresh) + len(stored) + len(plan.retag) + len(plan.missing)
            if logged <= max(RAW_LOG_MIN, len(known.base) // RAW_LOG_SHARE):
                update = RawUpdate(fresh, whole=False)
        if update is None:
            update = RawUpdate([*plan.kept, *fresh], whole=True)
    return DiffResult(
        created=created,
        updated=updated,
        removed=removed,
        held_back=held_back,
        hold=hold,
        upserts=upserts,
        retags=retags,
        raws=update,
        verified=plan.verified,
        deletes=remove_ids + sorted(rid for rid in plan.missing if rid in erased),
        version=plan.previous.version,
        duplicates=plan.duplicates,
    )


def diff(
    previous: PreviousSnapshot,
    records: Iterable[Record],
    id_of: str | Callable[[Record], str],
    old_records: Mapping[str, Record],
    compare: Callable[[Record], Record] | None = None,
) -> DiffResult:
    """Both steps at once, when the old records are at hand (tests, small resources)."""
    return finish_diff(plan_diff(previous, records, id_of, compare), old_records)


def field_changes(
    old: Record, new: Record, compare: Callable[[Record], Record] | None = None
) -> dict[str, FieldChange]:
    """Top-level fields whose canonical value differs (in the `compare` form, reported as sent); added and
    removed fields have None on one side."""
    changes: dict[str, FieldChange] = {}
    old_form, new_form = (old, new) if compare is None else (compare(old), compare(new))
    for field, value in new.items():
        if field not in old:
            changes[field] = FieldChange(old=None, new=value)
            continue
        before, after = old_form[field], new_form[field]
        if type(before) is type(after) and type(before) in _SCALARS and before == after:
            continue  # the same text, integer or null: the same canonical value, without encoding either
        if canonical(before) != canonical(after):
            changes[field] = FieldChange(old=old[field], new=value)
    for field, value in old.items():
        if field not in new:
            changes[field] = FieldChange(old=value, new=None)
    return changes


def is_mass_removal(removing: int, previous_count: int) -> bool:
    return previous_count >= HOLD_MIN_RECORDS and removing * 2 > previous_count


def decide_removals(
    missing: list[str], previous_count: int, hold: frozenset[str] | None
) -> tuple[list[str], frozenset[str] | None, int]:
    """(ids to remove now, the new hold marker, how many removals are held back)."""
    if not is_mass_removal(len(missing), previous_count):
        return missing, None, 0
    missing_set = frozenset(missing)
    if hold is None or not hold <= missing_set:
        # A first proposal, or the last one was not confirmed (records came back): hold them all.
        return [], missing_set, len(missing)
    # Confirmed: the held ids are gone twice in a row. Anything newly missing is judged on its own.
    confirmed = sorted(hold)
    extra = sorted(missing_set - hold)
    if extra and is_mass_removal(len(extra), previous_count - len(confirmed)):
        return confirmed, frozenset(extra), len(extra)
    return sorted(missing_set), None, 0


def _key_function(id_of: str | Callable[[Record], str]) -> Callable[[Record], str]:
    if callable(id_of):
        return id_of
    field = id_of

    def key(record: Record) -> str:
        value = record.get(field)
        if type(value) is int:  # the usual case, after normalisation
            return str(value)
        if value is None or isinstance(value, bool | dict | list):
            # The field, never its value (docs/personal-data.md): this text reaches logs and `/v1/schools`.
            raise D6MalformedResponse(f"record without a usable {field} (got {type(value).__name__})")
        return str(value)

    return key
