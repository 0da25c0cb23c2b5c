"""What each subscription receives of an event: its `fields`, `redact` and `payload`
(docs/personal-data.md#send-each-subscriber-only-what-it-needs).

The event log keeps one envelope per event; a subscription with any of these options gets its own body,
projected from that envelope when the event is queued for it, and signed as sent. Every send follows the
subscription as it is when sent (docs/delivery.md): if it changed since, the worker projects the body
again from the logged envelope (`Worker._recut`), whatever queued it (a retry, a retried dead letter,
a replay, a redelivery). The id, type, timestamp, school, sequence and resource
stay what they are; only `data` and `changes` differ:

- `fields` (per event `resource`): the only `data` fields sent. The record's ids are always kept: the
  catalogue's identity field and every `*_id`. Once `fields` is set it is the whole allow-list: a resource
  it does not name arrives with its ids alone. `changes` is cut to the same fields, and an `*.updated`
  whose changes all fall outside them is not sent at all (`project` answers None: recorded as skipped).
- `redact`: these fields arrive masked, all but their last four characters replaced by `*`, in `data` and
  in both sides of `changes`. A value of four characters or fewer is masked whole, so that no short value
  arrives as it is.
- `payload: "thin"`: no `data`, and `changes` reduced to the field names (`{"grade": {}}`); the subscriber
  reads the rest with `GET /v1/subscriptions/{id}/events/{event_id}` and its subscription token.

A subscription with none of these options costs nothing here: `shape_of` answers None and its events go
out as logged, byte for byte.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final, Literal

import msgspec

from bridge.catalogue import BY_PREFIX, INTEGRATION

Payload = Literal["full", "thin"]
PAYLOADS: Final = ("full", "thin")
RESOURCES: Final = (*BY_PREFIX, INTEGRATION)
"""The event `resource` values that `fields` may name."""
KEEP_VISIBLE: Final = 4
MASK: Final = "*"


class Shape(msgspec.Struct, kw_only=True, frozen=True):
    """A subscription's options, ready to apply."""

    fields: Mapping[str, frozenset[str]] | None = None
    redact: frozenset[str] = frozenset()
    thin: bool = False

    def allows(self, resource: str, field: str) -> bool:
        if self.fields is None or field.endswith("_id"):
            return True
        entry = BY_PREFIX.get(resource)
        if entry is not None and field == entry.identity:
            return True
        return field in self.fields.get(resource, ())


class Envelope(msgspec.Struct, kw_only=True, omit_defaults=True):
    """The envelope as projection reads and writes it; field order is the wire order (events/envelope.py)."""

    id: str
    type: str
    timestamp: str
    school_id: int
    sequence: int
    resource: str
    resource_id: str
    data: dict[str, Any] | msgspec.UnsetType = msgspec.UNSET
    changes: dict[str, Any] | None = None
    origin: dict[str, Any] | None = None


_decoder: Final = msgspec.json.Decoder(Envelope)
_encoder: Final = msgspec.json.Encoder()
_plain: Final = msgspec.json.Encoder(order="sorted")


def shape_of(options: Any) -> Shape | None:
    """The shape of anything with `fields`, `redact` and `payload` (a Subscription); None when none is set."""
    fields: dict[str, list[str]] | None = options.fields
    redact: list[str] | None = options.redact
    if fields is None and not redact and options.payload == "full":
        return None
    return Shape(
        fields=None if fields is None else {name: frozenset(kept) for name, kept in fields.items()},
        redact=frozenset(redact or ()),
        thin=options.payload == "thin",
    )


def decode(body: bytes) -> Envelope:
    return _decoder.decode(body)


def project(envelope: Envelope, shape: Shape, *, may_skip: bool = True) -> bytes | None:
    """The body this shape sends of `envelope`, or None when it is an update that is not to be sent."""
    resource = envelope.resource
    changes = envelope.changes
    if changes is not None and shape.fields is not None:
        changes = {name: change for name, change in changes.items() if shape.allows(resource, name)}
        if not changes and may_skip and envelope.type.endswith(".updated"):
            return None
    if shape.thin:
        data: dict[str, Any] | msgspec.UnsetType = msgspec.UNSET
        if changes is not None:
            changes = {name: {} for name in changes}
    else:
        data = envelope.data
        if shape.fields is not None and isinstance(data, dict):
            data = {name: value for name, value in data.items() if shape.allows(resource, name)}
        if shape.redact:
            if isinstance(data, dict):
                data = {name: mask(v) if name in shape.redact else v for name, v in data.items()}
            if changes is not None:
                changes = {
                    name: _mask_change(change) if name in shape.redact else change
                    for name, change in changes.items()
                }
    projected = msgspec.structs.replace(envelope, data=data, changes=changes)
    return _encoder.encode(projected)


def project_record(resource: str, data: Mapping[str, Any], shape: Shape) -> dict[str, Any]:
    """One record's `data` as `shape` lets it out, cut and masked as `project` cuts an envelope's `data`
    (the state API's rows, docs/consumers.md): the ids always kept, `redact` masked, nothing when thin."""
    if shape.thin:
        return {}
    kept = {name: value for name, value in data.items() if shape.allows(resource, name)}
    if shape.redact:
        kept = {name: mask(value) if name in shape.redact else value for name, value in kept.items()}
    return kept


def project_body(body: bytes, shape: Shape, *, may_skip: bool = True) -> bytes | None:
    return project(decode(body), shape, may_skip=may_skip)


def mask(value: Any) -> Any:
    """All but the last four characters replaced by `*` (a value of four or fewer: all of it); None and ""
    stay as they are; a number or an object is masked as its JSON text."""
    if value is None or value == "":
        return value
    text = value if isinstance(value, str) else _plain.encode(value).decode()
    if len(text) <= KEEP_VISIBLE:
        return MASK * len(text)
    return MASK * (len(text) - KEEP_VISIBLE) + text[-KEEP_VISIBLE:]


def _mask_change(change: Any) -> Any:
    if isinstance(change, dict):
        return {side: mask(value) for side, value in change.items()}
    return change
