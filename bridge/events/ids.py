"""Identifiers: ULIDs, the one id maker of the bridge.

Event ids are ULIDs ("evt_" + 26 Crockford base32 characters: 48 bits of milliseconds, 80 random bits),
so sorting ids sorts events by time. The global listing relies on that: its indexes are sorted sets
ordered by member, and a time window is a range of ids. Delivery ids ("dlv_") use the same maker.
"""

from __future__ import annotations

import os
import re
import threading
import time
from datetime import UTC, datetime
from typing import Final

ID_PREFIX: Final = "evt_"
_CROCKFORD: Final = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
# Encoding takes 10 bits at a time from a table of character pairs, decoding goes through `int(text, 32)`
# with the alphabet translated: a loop over 26 characters cost more than signing a delivery.
_PAIRS: Final = [a + b for a in _CROCKFORD for b in _CROCKFORD]
_PAIR_SHIFTS: Final = tuple(range(120, -1, -10))
_TO_INT32: Final = str.maketrans(_CROCKFORD, "0123456789abcdefghijklmnopqrstuv")
_ID_BODY: Final = re.compile(r"[0-7][0-9A-HJKMNP-TV-Z]{25}")
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
    """26 Crockford characters: two zero bits, then the 128 bits (130 = 13 pairs of 5 bits)."""
    return "".join([_PAIRS[(value >> shift) & 1023] for shift in _PAIR_SHIFTS])


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
    return int(event_id[len(ID_PREFIX) : len(ID_PREFIX) + 10].translate(_TO_INT32), 32)


def event_id_time(event_id: str) -> datetime:
    """When the event with this id was created (UTC, millisecond precision)."""
    return datetime.fromtimestamp(event_id_ms(event_id) / 1000, UTC)


def is_event_id(value: str) -> bool:
    return value.startswith(ID_PREFIX) and _ID_BODY.fullmatch(value, len(ID_PREFIX)) is not None
