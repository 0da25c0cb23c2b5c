"""Reply values from redis-py, typed `bytes | str` (and sometimes None), as the one type the caller wants.

The bridge's clients use `decode_responses=False`, so replies are bytes; these helpers keep mypy honest
without a cast at every call.
"""

from __future__ import annotations

import struct
from typing import Any


def as_bytes(value: Any) -> bytes:
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode()
    raise TypeError(f"expected bytes from Redis, got {type(value).__name__}")


def as_text(value: Any) -> str:
    if isinstance(value, bytes):
        return value.decode()
    if isinstance(value, str):
        return value
    raise TypeError(f"expected text from Redis, got {type(value).__name__}")


def as_int(value: Any, default: int = 0) -> int:
    """An integer reply or stored counter; `default` when the field is absent."""
    if value is None:
        return default
    return int(as_text(value)) if isinstance(value, bytes | str) else int(value)


def entry_seq(entry_id: Any) -> int:
    """The sequence of a school event stream entry (entry id "<sequence>-0")."""
    return int(as_text(entry_id).split("-", 1)[0])


def packed(*fields: bytes | str) -> bytes:
    """Fields as one script argument: their lengths (4 bytes each, big-endian), then the fields (a script
    reads them back with `fields` of store/scripts.py). One argument for a batch instead of one per field:
    redis-py encodes every argument of a call on its own, which made the largest Python cost of a batch."""
    data = [field.encode() if isinstance(field, str) else field for field in fields]
    header = _HEADERS.get(len(data))
    if header is None:
        header = _HEADERS[len(data)] = struct.Struct(f">{len(data)}I")
    return header.pack(*map(len, data)) + b"".join(data)


_HEADERS: dict[int, struct.Struct] = {}
