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
from typing import Any, Final

import msgspec

from bridge.errors import D6MalformedResponse
from bridge.events.envelope import FieldChange

Record = dict[str, Any]

HOLD_MIN_RECORDS: Final = 20
DIGEST_BYTES: Final = 16
_CANONICAL: Final = msgspec.json.Encoder(order="sorted")


def canonical(value: Any) -> bytes:
    return _CANONICAL.encode(value)


def digest(record: Record) -> bytes:
    """BLAKE2b-128 of the canonical JSON: what the snapshot stores per record."""
    return hashlib.blake2b(_CANONICAL.encode(record), digest_size=DIGEST_BYTES).digest()


class PreviousSnapshot(msgspec.Struct, kw_only=True, frozen=True):
    """What the store knows before a scan; `version` is the optimistic-concurrency check of the commit."""

    hashes: dict[str, bytes]
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
    """(id, digest, record) to write into the snapshot: every created and updated record."""
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
    duplicated = tuple(sorted(repeats))
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
        duplicates=sum(len(rows) - 1 for rows in repeats.values()),
        compare=compare,
        duplicated=duplicated,
        scan_digest=_scan_digest(digests, repeats) if duplicated else None,
    )


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
    upserts = [
        (rid, plan.digests[rid], plan.records[rid])
        for rid in plan.created + plan.changed
        if rid not in erased
    ]
    return DiffResult(
        created=created,
        updated=updated,
        removed=removed,
        held_back=held_back,
        hold=hold,
        upserts=upserts,
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
