"""What the delivery side stores and exchanges: outgoing events, subscriptions, deliveries, attempts."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Final, Literal, Protocol

import msgspec

from bridge.catalogue import BY_NAME, EVENT_FAMILIES, EVENT_TYPES, RESYNC_EVENT_TYPES, SNAPSHOT_EVENT_TYPES
from bridge.errors import BridgeError
from bridge.events.ids import event_id_ms

SECRET_OVERLAP_SECONDS = 24 * 3600


class DeliveryError(BridgeError):
    """A delivery-side request that cannot be done as asked (bad filter, unknown id, refused URL)."""


class UnknownSubscription(DeliveryError):
    def __init__(self, subscription_id: str) -> None:
        self.subscription_id = subscription_id
        super().__init__(f"no subscription with id {subscription_id!r}")


class OutgoingEvent(msgspec.Struct, kw_only=True, frozen=True):
    """One event as the detection side hands it over: `body` is the exact envelope that is signed."""

    event_id: str
    school_id: int
    event_type: str
    sequence: int
    timestamp: float
    body: bytes

    @classmethod
    def of(cls, event_id: str, school_id: int, event_type: str, sequence: int, body: bytes) -> OutgoingEvent:
        """The one way to build it: `timestamp` (when it was detected) is read from the ULID id."""
        return cls(
            event_id=event_id,
            school_id=school_id,
            event_type=event_type,
            sequence=sequence,
            timestamp=event_id_ms(event_id) / 1000,
            body=body,
        )


class EventSource(Protocol):
    """Read access to the event log, for replays and redeliveries (implemented over the event log)."""

    async def get(self, event_id: str) -> OutgoingEvent | None: ...

    def window(self, since: float, until: float | None) -> AsyncIterator[OutgoingEvent]: ...


def unknown_event_types(patterns: list[str]) -> list[str]:
    """The patterns that name no catalogue type: exact types, `family.*` or `*` are fine."""
    bad = []
    for pattern in patterns:
        if pattern == "*" or pattern in EVENT_TYPES:
            continue
        if pattern.endswith(".*") and pattern[:-2] in EVENT_FAMILIES:
            continue
        bad.append(pattern)
    return bad


def type_matches(patterns: list[str] | None, event_type: str) -> bool:
    """Whether a subscription's `event_types` take `event_type`. A `resync.*` marker goes with the
    snapshot events it frames (docs/events.md#resyncs): it matches whenever some `*.snapshot` type does,
    whether or not `resync.*` is listed."""
    if event_type in RESYNC_EVENT_TYPES:
        return bool(snapshot_types(patterns))
    return _listed(patterns, event_type)


def snapshot_types(patterns: list[str] | None) -> list[str]:
    """The `*.snapshot` types these `event_types` take: a resync (and `"initial": "snapshot"`) needs one."""
    return [event_type for event_type in SNAPSHOT_EVENT_TYPES if _listed(patterns, event_type)]


def _listed(patterns: list[str] | None, event_type: str) -> bool:
    if patterns is None:
        return True
    for pattern in patterns:
        if pattern in ("*", event_type):
            return True
        if pattern.endswith(".*") and event_type.startswith(pattern[:-1]):
            return True
    return False


Initial = Literal["none", "snapshot"]
INITIALS: Final = ("none", "snapshot")
DeliveryKind = Literal["webhook", "pull"]
DELIVERY_KINDS: Final = ("webhook", "pull")
"""`webhook`: POSTed to `url`; `pull`: no `url`, read from its feed (docs/pull.md)."""


class Subscription(msgspec.Struct, kw_only=True):
    """A consumer and what it wants: a webhook endpoint, or a pull feed. Stored as a Redis hash, one JSON
    value per field."""

    id: str
    url: str
    """Empty for a pull subscription."""
    secret: str
    event_types: list[str] | None = None
    school_ids: list[int] | None = None
    description: str | None = None
    ordered: bool = True
    enabled: bool = True
    disabled_reason: str | None = None
    created_at: float
    updated_at: float
    previous_secret: str | None = None
    previous_secret_expires_at: float | None = None
    failing_since: float | None = None
    fields: dict[str, list[str]] | None = None
    """Per event `resource`, the only `data` fields sent (ids always kept); see delivery/projection.py."""
    redact: list[str] | None = None
    """Fields sent masked to their last four characters, in `data` and `changes`."""
    payload: Literal["full", "thin"] = "full"
    """`thin`: no `data`, `changes` reduced to the field names."""
    initial: Initial = "none"
    """`snapshot`: a resync of its scope at creation, and of each feed that takes a new baseline
    (docs/api.md#automatic-snapshots); set at creation only."""
    delivery: DeliveryKind = "webhook"
    """`pull`: nothing is POSTed; its deliveries wait in its feed until a reader commits past them
    (delivery/feed.py); set at creation only."""
    reshaped_at: float | None = None
    """When the options that choose and cut its bodies (`event_types`, `school_ids`, `fields`, `redact`,
    `payload`) last changed (None: `updated_at` says, as in subscriptions stored before it was kept)."""

    @property
    def pulled(self) -> bool:
        return self.delivery == "pull"

    @property
    def shaped_at(self) -> float:
        """Since when its bodies are chosen and cut as they are now: a delivery cut since then goes out as
        queued, whatever else changed (enabled again after an outage, a secret rotated, a new url)."""
        return self.updated_at if self.reshaped_at is None else self.reshaped_at

    def matches(self, event_type: str, school_id: int) -> bool:
        if self.school_ids is not None and school_id not in self.school_ids:
            return False
        return type_matches(self.event_types, event_type)

    def follows_baselines(self, school_id: int, resource: str) -> bool:
        """Whether a new baseline of this feed (`resource` as `debtors`) is resynced to it: created with
        `"initial": "snapshot"`, and its scope takes the feed's snapshot type
        (docs/api.md#automatic-snapshots)."""
        return self.initial == "snapshot" and self.matches(BY_NAME[resource].snapshot_type, school_id)

    def signing_secrets(self, now: float) -> list[str]:
        """The current secret, and the previous one while its 24 h overlap lasts."""
        live = [self.secret]
        if self.previous_secret and (self.previous_secret_expires_at or 0) > now:
            live.append(self.previous_secret)
        return live


DeliveryState = Literal["pending", "dead"]
TraceOutcome = Literal["skipped", "erased", "expired"]


class Delivery(msgspec.Struct, kw_only=True):
    """One event on its way to one subscription; kept (with its body) until delivered."""

    id: str
    subscription_id: str
    event_id: str
    event_type: str
    school_id: int
    sequence: int
    event_timestamp: float
    body: bytes
    created_at: float
    attempts: int = 0
    state: DeliveryState = "pending"
    last_status: int | None = None
    last_error: str | None = None
    last_attempt_at: float | None = None
    dead_at: float | None = None
    replay: bool = False
    projected_at: float | None = None
    """The subscription's `updated_at` whose options cut `body` (None: when `created_at` says, as in entries
    stored before it was kept). A subscription changed since gets the body cut again when it is sent."""

    @property
    def shaped_at(self) -> float:
        """Since when `body` follows the subscription's options."""
        return self.created_at if self.projected_at is None else self.projected_at


class DeliveryTrace(msgspec.Struct, array_like=True, omit_defaults=True):
    """Which delivery of an event to a subscription is the latest, and how it ended if it succeeded.

    While the delivery is queued (or dead) only `delivery_id` is set and its `Delivery` record tells
    the rest; on success the record is removed and the trace keeps when, after how many attempts and
    with which status. The encoding of a trace with only `delivery_id` is deterministic, so a script
    can compare it byte for byte. An event that was never sent here says why in `outcome`: `skipped`
    (an update outside the subscription's `fields`, or an event it no longer matched when its delivery was
    to be sent; `delivery_id` is "" when it was never queued), `erased` (its
    delivery was dropped by an erasure) or `expired` (dropped by retention before it could go out).
    """

    delivery_id: str
    delivered_at: float | None = None
    attempts: int = 0
    status: int | None = None
    outcome: TraceOutcome | None = None
    at: float | None = None
    """When the `outcome` was recorded."""


class ErasureEntry(msgspec.Struct, kw_only=True):
    """One erasure in the journal (`Keys.erasures`): what it erases, and the events no dispatcher may send
    while it runs and for a while after (a fan-out that read the event just before it began)."""

    school_id: int
    resource: str
    record_id: str
    event_ids: list[str]
    started_at: float
    done_at: float | None = None


class AttemptResult(msgspec.Struct, kw_only=True):
    """What one HTTP attempt came to."""

    status_code: int | None = None
    error: str | None = None
    duration_ms: float
    response_body: str = ""
    retry_after: float | None = None
    signed_at: int | None = None
    """The `webhook-timestamp` the request was signed with (None when no request was attempted)."""

    @property
    def ok(self) -> bool:
        return self.error is None and self.status_code is not None and 200 <= self.status_code < 300


class Attempt(msgspec.Struct, kw_only=True, array_like=True):
    """One line of a subscription's attempt log, stored as a msgpack array (`encode_attempt`): about 110
    bytes where the JSON object it was before took 260, and the log holds up to 10,000 of them."""

    at: float
    delivery_id: str
    event_id: str
    event_type: str
    school_id: int
    attempt: int
    outcome: str
    status_code: int | None = None
    error: str | None = None
    duration_ms: float
    response_body: str = ""
    signed_at: int | None = None
    """The request's `webhook-timestamp` (entries written before it was kept have None)."""


def answered(
    result: AttemptResult,
    *,
    at: float,
    delivery_id: str,
    event_id: str,
    event_type: str,
    school_id: int,
    attempt: int,
    outcome: str,
) -> Attempt:
    """The attempt log's line for a request that was sent (a queued delivery's or a test send's)."""
    return Attempt(
        at=at,
        delivery_id=delivery_id,
        event_id=event_id,
        event_type=event_type,
        school_id=school_id,
        attempt=attempt,
        outcome=outcome,
        status_code=result.status_code,
        error=result.error,
        duration_ms=result.duration_ms,
        response_body=result.response_body,
        signed_at=result.signed_at,
    )


_ATTEMPT_ENCODER = msgspec.msgpack.Encoder()
_ATTEMPT_DECODER = msgspec.msgpack.Decoder(Attempt)
_JSON_OBJECT = msgspec.json.Decoder(dict[str, object])


def encode_attempt(attempt: Attempt) -> bytes:
    """An attempt as the attempt log stores it."""
    return _ATTEMPT_ENCODER.encode(attempt)


def decode_attempt(raw: bytes) -> Attempt:
    """An attempt log entry; also one written as a JSON object, as the log was before."""
    if raw[:1] == b"{":
        found = _JSON_OBJECT.decode(raw)
        row = [found.get(field.name, field.default) for field in msgspec.structs.fields(Attempt)]
        return msgspec.convert(row, Attempt)
    return _ATTEMPT_DECODER.decode(raw)
