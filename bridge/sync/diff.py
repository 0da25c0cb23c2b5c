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
records still in bytes (`plan_raw_diff`). Each record's bytes are hashed (`raw_digest`), and
the snapshot keeps that raw digest beside the canonical one, so a record whose bytes are the very bytes
stored last time is unchanged: its id comes from the snapshot (raw digest -> id), and it is neither
decoded, nor normalised, nor hashed again. Every other record is decoded and diffed as above, on its
canonical digest: a retyped id or reordered keys change its bytes but not its canonical digest, so it is
no change, and only its raw digest is rewritten, silently (`retag`), for the next scan's fast path. A
record whose id was seen earlier in the scan always takes the slow path, so the duplicate rule below sees
the same rows, with the same digests, as it does without the fast path.

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
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Final, Protocol

import msgspec

from bridge.errors import D6MalformedResponse
from bridge.events.envelope import FieldChange

Record = dict[str, Any]

HOLD_MIN_RECORDS: Final = 20
DIGEST_BYTES: Final = 16
RAW_DIGEST_BYTES: Final = 8
RAW_MARK: Final = b"r"
"""What precedes a raw digest in the snapshot's value (sync/snapshot.py). It stands for the normalisation
of bridge/d6/records.py as well: were that to change, a new mark makes every stored raw digest unknown, and
the next scan takes the slow path once (and stores the new mark), rather than trusting records normalised
the old way."""
_CANONICAL: Final = msgspec.json.Encoder(order="sorted")


def canonical(value: Any) -> bytes:
    return _CANONICAL.encode(value)


def digest(record: Record) -> bytes:
    """BLAKE2b-128 of the canonical JSON: what the snapshot stores per record."""
    return hashlib.blake2b(_CANONICAL.encode(record), digest_size=DIGEST_BYTES).digest()


def raw_digest(row: Any) -> bytes:
    """A record's bytes as d6 sent them (`msgspec.Raw`, bytes) hashed: the first 8 bytes of BLAKE2b-512
    (cheaper than asking BLAKE2b for 8 bytes: no keyword to parse, in a loop over every record)."""
    return hashlib.blake2b(row).digest()[:RAW_DIGEST_BYTES]


def stored_digest(digest: bytes, raw: bytes | None) -> bytes:
    """The digest part of a snapshot value: the canonical digest, then the raw digest when known."""
    return digest if raw is None else digest + RAW_MARK + raw


class RawRows(Protocol):
    """A page of a raw scan (bridge/d6/pagination.py `Page`): its records' bytes, and a way to decode one
    (normalised and checked, raising `D6MalformedResponse` as the client does)."""

    @property
    def rows(self) -> list[msgspec.Raw] | None: ...

    def record(self, index: int) -> Record: ...


class PreviousSnapshot(msgspec.Struct, kw_only=True, frozen=True):
    """What the store knows before a scan; `version` is the optimistic-concurrency check of the commit."""

    hashes: dict[str, bytes]
    raws: dict[bytes, str] = {}
    """Raw digest -> id, for the records stored with one (a raw digest two ids share is left out)."""
    hold: frozenset[str] | None = None
    version: int = 0
    baseline: bool = False
    unsettled: bytes | None = None
    """The `scan_digest` of the last scan that was not trusted (an id in it twice); None after a clean one."""


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
    raws: dict[str, bytes] = {}
    """Id -> raw digest of its (last) row, for the rows a raw scan decoded."""
    retag: list[str] = []
    """Ids unchanged but for their bytes: only their stored raw digest is rewritten."""
    skipped: int = 0
    """Rows of a raw scan taken as unchanged on their bytes alone."""

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
) -> DiffPlan:
    """`plan_diff` of a raw scan: a record whose bytes the snapshot knows (its raw digest) is unchanged and
    costs its hash; the others are decoded (`page.record`) and planned as `plan_diff` plans them. Only for
    resources whose records are identified by their own content, one row one record (see the module
    docstring). `digests` then holds the decoded records' digests only.

    The common case goes page by page (hash every row, look every digest up); a scan in which an id comes
    twice is planned again row by row, in order (`_plan_in_order`), as the duplicate rule needs."""
    key = _key_function(id_of)
    get, blake2b = previous.raws.get, hashlib.blake2b
    found: list[str | None] = []
    unknown: list[tuple[RawRows, int, bytes]] = []  # (page, index, raw digest) of each row to decode
    for page in pages:  # the hot loop: tens of thousands of records
        raws = [blake2b(row).digest()[:RAW_DIGEST_BYTES] for row in page.rows or ()]
        ids = list(map(get, raws))
        if None in ids:
            unknown += [(page, index, raws[index]) for index, rid in enumerate(ids) if rid is None]
        found += ids
    skipped = len(found) - len(unknown)
    seen = set(found)
    seen.discard(None)
    if len(seen) != skipped:  # the same bytes twice
        return _plan_in_order(previous, pages, key, compare)
    scanned: dict[str, Record] = {}
    digests: dict[str, bytes] = {}
    decoded: dict[str, bytes] = {}
    encode = _CANONICAL.encode
    for page, index, raw in unknown:
        record = page.record(index)
        rid = key(record)
        if rid in seen or rid in scanned:  # an id twice
            return _plan_in_order(previous, pages, key, compare)
        scanned[rid] = record
        digests[rid] = blake2b(encode(record), digest_size=DIGEST_BYTES).digest()
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
    )


def _sort_decoded(
    previous: PreviousSnapshot,
    scanned: Mapping[str, Record],
    digests: Mapping[str, bytes],
    raws: Mapping[str, bytes],
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
) -> DiffPlan:
    """`plan_raw_diff` row by row: a row whose bytes the snapshot knows, of an id not seen yet in the scan,
    is unchanged; any other row is decoded, so every row of an id seen twice is decoded but the first, and
    the plan (`duplicated`, `scan_digest`, the last row winning) is the one `plan_diff` makes."""
    known, old = previous.raws, previous.hashes
    scanned: dict[str, Record] = {}
    digests: dict[str, bytes] = {}
    raws: dict[str, bytes] = {}
    repeats: dict[str, list[bytes]] = {}
    first: set[str] = set()  # ids taken on their bytes
    encode, blake2b = _CANONICAL.encode, hashlib.blake2b
    for page in pages:
        for index, row in enumerate(page.rows or ()):
            raw = blake2b(row).digest()[:RAW_DIGEST_BYTES]
            rid = known.get(raw)
            if rid is not None and rid not in digests:  # the bytes stored last time: unchanged
                digests[rid] = old[rid]
                first.add(rid)
                continue
            record = page.record(index)
            rid = key(record)
            row_digest = blake2b(encode(record), digest_size=DIGEST_BYTES).digest()
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
        skipped=len(first - scanned.keys()),
    )


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
    remove_ids, hold, held_back = decide_removals(missing, len(plan.previous.hashes), plan.previous.hold)
    removed = [RecordChange(id=rid, record=old_records.get(rid) or {}) for rid in remove_ids]
    raws = plan.raws
    upserts = [
        (rid, stored_digest(plan.digests[rid], raws.get(rid)), plan.records[rid])
        for rid in plan.created + plan.changed
        if rid not in erased
    ]
    retags = [(rid, stored_digest(plan.digests[rid], raws[rid])) for rid in plan.retag]
    return DiffResult(
        created=created,
        updated=updated,
        removed=removed,
        held_back=held_back,
        hold=hold,
        upserts=upserts,
        retags=retags,
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
        elif canonical(old_form[field]) != canonical(new_form[field]):
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
