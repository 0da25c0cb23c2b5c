"""The event envelope (docs/events.md#the-envelope) and the one timestamp format of the bridge.

Event ids come from `bridge.events.ids` (time-sortable ULIDs).

`sequence` is assigned by the commit script in Redis, not here: the envelope is encoded with sequence 0
and `split_for_sequence` cuts the bytes around that number so the script can splice in the real one.
That is why `sequence` has no default (it must always be encoded) and sits right after `school_id`.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Annotated, Any, Final, TypeAlias

import msgspec

from bridge.catalogue import EVENT_TYPES as CATALOGUE_EVENT_TYPES
from bridge.events.ids import new_event_id

EVENT_TYPES: Final = frozenset(CATALOGUE_EVENT_TYPES)

Timestamp: TypeAlias = Annotated[
    str,
    msgspec.Meta(
        extra_json_schema={"format": "date-time"},
        description="RFC 3339, UTC, e.g. 2026-11-22T11:02:03.123456Z",
    ),
]
"""A time as the bridge writes every time (`format_timestamp`), typed `date-time` in every schema."""


class FieldChange(msgspec.Struct, frozen=True):
    """One changed top-level field; both values always present (None when added or removed)."""

    old: Any
    new: Any


class Event(msgspec.Struct, kw_only=True, frozen=True, omit_defaults=True):
    """The webhook body. Field order is the wire order."""

    id: str
    type: str
    timestamp: Timestamp
    school_id: int
    sequence: int
    resource: str
    resource_id: str
    data: dict[str, Any]
    changes: Mapping[str, FieldChange | bool] | None = None
    """Each changed field, old and new; an erased event's is `{"erased": true}` (bridge/events/log.py)."""
    origin: Mapping[str, Any] | None = None
    """On a change a write-back command made: `{"command_id", "idempotency_key"}` (docs/commands.md)."""


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
