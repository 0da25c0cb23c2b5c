"""Identifiers: ULIDs, the one id maker of the bridge.

Event ids are ULIDs ("evt_" + 26 Crockford base32 characters: 48 bits of milliseconds, 80 random bits),
so sorting ids sorts events by time. The global listing relies on that: its indexes are sorted sets
ordered by member, and a time window is a range of ids. Delivery ids ("dlv_") use the same maker.
"""

from __future__ import annotations

import os
import threading
import time
from datetime import UTC, datetime
from typing import Final

ID_PREFIX: Final = "evt_"
_CROCKFORD: Final = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_DECODE: Final = {c: i for i, c in enumerate(_CROCKFORD)}
_RANDOM_BITS: Final = 80
_RANDOM_MAX: Final = (1 << _RANDOM_BITS) - 1


class UlidGenerator:
    """ULIDs that increase strictly within this process, even within one millisecond.

    Within a millisecond (or if the clock steps back) the previous id's random part is incremented, as the
    ULID spec's monotonic mode does. The state is the one module-level mutable thing here: ids must be
    ordered across every caller in the process.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._last_ms = -1
        self._last_random = 0

    def next(self, at: float | None = None) -> int:
        ms = int((time.time() if at is None else at) * 1000)
        with self._lock:
            if ms <= self._last_ms:
                ms = self._last_ms
                rand = self._last_random + 1
                if rand > _RANDOM_MAX:
                    ms, rand = ms + 1, int.from_bytes(os.urandom(10), "big") >> 1
            else:
                # Top bit clear leaves room to increment many times within one millisecond.
                rand = int.from_bytes(os.urandom(10), "big") >> 1
            self._last_ms, self._last_random = ms, rand
        return (ms << _RANDOM_BITS) | rand


_GENERATOR: Final = UlidGenerator()


def _encode128(value: int) -> str:
    chars = []
    for _ in range(26):
        chars.append(_CROCKFORD[value & 31])
        value >>= 5
    return "".join(reversed(chars))


def ulid(at: float | None = None, generator: UlidGenerator | None = None) -> str:
    """26 Crockford base32 characters, strictly increasing within this process."""
    return _encode128((generator or _GENERATOR).next(at))


def new_event_id(at: float | None = None, generator: UlidGenerator | None = None) -> str:
    """A fresh "evt_" ULID for time `at` (default: now); unique and time-sortable."""
    return ID_PREFIX + _encode128((generator or _GENERATOR).next(at))


def event_id_at(at: float) -> str:
    """An id for exactly the millisecond `at`, outside the monotonic sequence (imports, tests).

    Unique by its 80 random bits; use `new_event_id` for events detected now.
    """
    return ID_PREFIX + _encode128((int(at * 1000) << _RANDOM_BITS) | int.from_bytes(os.urandom(10), "big"))


def event_id_bound(at: float, *, upper: bool) -> str:
    """The smallest (or largest) possible event id of the millisecond `at`: a time bound for ranges."""
    ms = int(at * 1000)
    return ID_PREFIX + _encode128((ms << _RANDOM_BITS) | (_RANDOM_MAX if upper else 0))


def event_id_ms(event_id: str) -> int:
    """The millisecond Unix time encoded in an event id; ValueError if it is not one of ours."""
    if not is_event_id(event_id):
        raise ValueError(f"not an event id: {event_id!r}")
    value = 0
    for char in event_id[len(ID_PREFIX) : len(ID_PREFIX) + 10]:
        value = (value << 5) | _DECODE[char]
    return value


def event_id_time(event_id: str) -> datetime:
    """When the event with this id was created (UTC, millisecond precision)."""
    return datetime.fromtimestamp(event_id_ms(event_id) / 1000, UTC)


def is_event_id(value: str) -> bool:
    body = value[len(ID_PREFIX) :]
    return (
        value.startswith(ID_PREFIX)
        and len(body) == 26
        and body[0] in "01234567"
        and all(c in _DECODE for c in body)
    )
