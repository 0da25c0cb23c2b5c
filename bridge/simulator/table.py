"""Id-ordered record tables and the cursor pagination d6 serves over them.

A cursor names the last id a page returned (like d6's `{"id": 2546, "_backward": false}`), never an
offset, so a scan that runs while records are added and removed neither skips nor repeats a record that
existed throughout. Pages start at a bisect into a sorted id list: O(log n + limit), not O(n).
"""

from __future__ import annotations

import base64
import binascii
import bisect
from collections.abc import Callable, Iterator, Mapping
from typing import Any, Protocol, TypeVar

import msgspec

Record = dict[str, Any]
Predicate = Callable[[Record], bool]
T = TypeVar("T")


class NotFound(LookupError):
    """A school or record the caller named does not exist."""


class Cursor(msgspec.Struct, kw_only=True):
    """What a cursor carries. `page` lets the fault injector fail "the n-th page of a scan"."""

    id: int
    backward: bool = msgspec.field(default=False, name="_backward")
    page: int = msgspec.field(default=2, name="_page")


_CURSOR_ENCODER = msgspec.json.Encoder()
_CURSOR_DECODER = msgspec.json.Decoder(Cursor)


def encode_cursor(cursor: Cursor) -> str:
    return base64.urlsafe_b64encode(_CURSOR_ENCODER.encode(cursor)).rstrip(b"=").decode("ascii")


def decode_cursor(text: str) -> Cursor | None:
    """None for anything that is not a cursor this simulator issued."""
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
        cursor = _CURSOR_DECODER.decode(raw)
    except (binascii.Error, ValueError, msgspec.DecodeError):
        return None
    return cursor if cursor.page >= 2 else None


class Page(msgspec.Struct, kw_only=True):
    records: list[Record]
    next_cursor: str | None
    page: int


class Table:
    """Records keyed by integer id, kept in id order for cheap, stable pagination."""

    __slots__ = ("ids", "next_id", "records")

    def __init__(self) -> None:
        self.records: dict[int, Record] = {}
        self.ids: list[int] = []
        self.next_id = 1

    def __len__(self) -> int:
        return len(self.ids)

    def get(self, key: int) -> Record | None:
        return self.records.get(key)

    def allocate(self) -> int:
        """A fresh id, always above every id ever used, so new records sort last."""
        key = self.next_id
        self.next_id += 1
        return key

    def put(self, key: int, record: Record) -> None:
        if key not in self.records:
            if not self.ids or key > self.ids[-1]:
                self.ids.append(key)
            else:
                bisect.insort(self.ids, key)
            self.next_id = max(self.next_id, key + 1)
        self.records[key] = record

    def remove(self, key: int) -> Record | None:
        record = self.records.pop(key, None)
        if record is not None:
            index = bisect.bisect_left(self.ids, key)
            del self.ids[index]
        return record

    def values(self) -> Iterator[Record]:
        records = self.records
        return (records[key] for key in self.ids)

    def page(
        self,
        cursor: Cursor | None,
        *,
        limit: int,
        reverse: bool = False,
        where: Predicate | None = None,
    ) -> Page:
        """One page after `cursor`; `next_cursor` only when at least one more matching record exists."""
        found, next_cursor, number = paginate(self.ids, self.records, cursor, limit, reverse, where)
        return Page(records=found, next_cursor=next_cursor, page=number)


def _keys_after(ids: list[int], cursor: Cursor | None, backward: bool) -> Iterator[int]:
    if backward:
        end = len(ids) if cursor is None else bisect.bisect_left(ids, cursor.id)
        return (ids[index] for index in range(end - 1, -1, -1))
    start = 0 if cursor is None else bisect.bisect_right(ids, cursor.id)
    return (ids[index] for index in range(start, len(ids)))


def paginate(
    ids: list[int],
    records: Mapping[int, T],
    cursor: Cursor | None,
    limit: int,
    reverse: bool = False,
    where: Callable[[T], bool] | None = None,
) -> tuple[list[T], str | None, int]:
    """(items, next cursor, page number) of the page after `cursor` over the sorted `ids`: the pagination
    of every collection, whatever its items are."""
    backward = cursor.backward if cursor is not None else reverse
    number = cursor.page if cursor is not None else 1
    found: list[T] = []
    last = 0
    more = False
    for key in _keys_after(ids, cursor, backward):
        item = records[key]
        if where is not None and not where(item):
            continue
        if len(found) == limit:
            more = True
            break
        found.append(item)
        last = key
    next_cursor = encode_cursor(Cursor(id=last, backward=backward, page=number + 1)) if more else None
    return found, next_cursor, number


class Register(Protocol):
    """What a school's books read of the school: its id, its debtors and learners (`state.School` is one).

    The books (finance, debtor notes) type against this, not `School`, so that the school, which owns its
    books, is not imported back by them."""

    school_id: int
    debtors: Table
    learners: Table

    def learner_ids_of(self, debtor_id: int) -> list[int]: ...
