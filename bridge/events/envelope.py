"""The event envelope (SPEC section 5) and its ids.

Event ids are ULIDs ("evt_" + 26 Crockford base32 characters: 48 bits of milliseconds, 80 random bits),
so sorting ids sorts events by time. The global listing relies on that: its indexes are sorted sets
ordered by member, and a time window is a range of ids.

`sequence` is assigned by the commit script in Redis, not here: the envelope is encoded with sequence 0
and `split_for_sequence` cuts the bytes around that number so the script can splice in the real one.
That is why `sequence` has no default (it must always be encoded) and sits right after `school_id`.
"""

from __future__ import annotations

import os
import threading
import time
from datetime import UTC, datetime
from typing import Any, Final

import msgspec

EVENT_TYPES: Final = frozenset(
    {
        "integration.authorised",
        "integration.activated",
        "integration.deactivated",
        "integration.revoked",
        "debtor.created",
        "debtor.updated",
        "debtor.removed",
        "learner.created",
        "learner.updated",
        "learner.removed",
        "webhook.test",
    }
)

ID_PREFIX: Final = "evt_"
_CROCKFORD: Final = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_DECODE: Final = {c: i for i, c in enumerate(_CROCKFORD)}
_RANDOM_BITS: Final = 80
_RANDOM_MAX: Final = (1 << _RANDOM_BITS) - 1


class FieldChange(msgspec.Struct, frozen=True):
    """One changed top-level field; both values always present (None when added or removed)."""

    old: Any
    new: Any


class Event(msgspec.Struct, kw_only=True, frozen=True, omit_defaults=True):
    """The webhook body. Field order is the wire order."""

    id: str
    type: str
    timestamp: str
    school_id: int
    sequence: int
    resource: str
    resource_id: str
    data: dict[str, Any]
    changes: dict[str, FieldChange] | None = None


ENCODER: Final = msgspec.json.Encoder()
DECODER: Final = msgspec.json.Decoder(Event)


def encode_event(event: Event) -> bytes:
    return ENCODER.encode(event)


def decode_event(body: bytes) -> Event:
    return DECODER.decode(body)


def new_event(
    type: str,
    *,
    school_id: int,
    resource: str,
    resource_id: str,
    data: dict[str, Any],
    changes: dict[str, FieldChange] | None = None,
    now: float | None = None,
) -> Event:
    """An event detected at `now` (default: the clock), with sequence 0 until the commit numbers it."""
    if type not in EVENT_TYPES:
        raise ValueError(f"unknown event type {type!r}")
    at = time.time() if now is None else now
    return Event(
        id=new_event_id(at),
        type=type,
        timestamp=format_timestamp(at),
        school_id=school_id,
        sequence=0,
        resource=resource,
        resource_id=resource_id,
        data=data,
        changes=changes,
    )


def format_timestamp(at: float) -> str:
    """RFC 3339 UTC with microseconds and "Z", e.g. 2026-11-22T11:02:03.123456Z."""
    return datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


_SEQ_MARK: Final = b',"sequence":0,'


def split_for_sequence(event: Event) -> tuple[bytes, bytes]:
    """The envelope encoded with sequence 0, cut so that `head + str(seq) + tail` is the real body.

    Every field before `sequence` is bridge-made (id, type, timestamp, an int), so the first match is it.
    """
    body = ENCODER.encode(msgspec.structs.replace(event, sequence=0))
    at = body.index(_SEQ_MARK)
    cut = at + len(_SEQ_MARK) - 2
    return body[:cut], body[cut + 1 :]


# --- ULID ids ------------------------------------------------------------------------------------------


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
