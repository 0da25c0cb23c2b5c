"""A delivery as the subscription is now: the one rule for what is sent (worker.py) or read (feed.py).

A delivery is sent, or read from a feed, as the subscription is when that happens, whatever queued it
(docs/delivery.md): `withheld` says when it is dropped instead, `recut` cuts its body again when the
subscription's options that choose and cut bodies changed since (`Subscription.shaped_at`), and `as_now`
does both.
"""

from __future__ import annotations

import time

import msgspec

from bridge.catalogue import BY_NAME, RESYNC_EVENT_TYPES, SNAPSHOT_KIND, is_snapshot_type
from bridge.delivery.models import Delivery, EventSource, Subscription, TraceOutcome
from bridge.delivery.projection import decode, project, shape_of
from bridge.delivery.queue import DeliveryQueue
from bridge.delivery.store import erasing_record
from bridge.events.log import ERASED


def withheld(
    subscription: Subscription, delivery: Delivery, *, erasing: frozenset[str], expired_before: float
) -> TraceOutcome | None:
    """Why a delivery is dropped instead of sent, if it is: its event is being erased (`erased`); it has
    waited since before `expired_before` (the retention: `expired`, one the retention pass did not see, an
    earlier delivery of an event redelivered since); the subscription changed since and its `event_types` or
    `school_ids` no longer match the event (`skipped`; a redelivery named to a subscription goes regardless
    of its filters as they were when asked)."""
    if erasing and (delivery.event_id in erasing or _snapshot_of_erased(delivery, erasing)):
        return "erased"
    if delivery.created_at < expired_before:
        return "expired"
    if delivery.shaped_at < subscription.shaped_at and not subscription.matches(
        delivery.event_type, delivery.school_id
    ):
        return "skipped"
    if delivery.created_at < subscription.shaped_at and _marker_no_longer_wanted(subscription, delivery):
        return "skipped"
    return None


class _MarkerData(msgspec.Struct):
    resource: str


class _Marker(msgspec.Struct):
    data: _MarkerData


_marker = msgspec.json.Decoder(_Marker)


def _marker_no_longer_wanted(subscription: Subscription, delivery: Delivery) -> bool:
    """A resync's marker (`resync.started`, `resync.completed`: queued never to be cut again) for a feed the
    subscription, changed since, no longer takes: its scope no longer has the school or the feed's snapshot
    type (docs/consumers.md#resync). The markers carry no record, but the school's counts are its too."""
    if delivery.event_type not in RESYNC_EVENT_TYPES:
        return False
    try:
        entry = BY_NAME.get(_marker.decode(delivery.body).data.resource)
    except msgspec.DecodeError:
        return False
    return entry is not None and not subscription.matches(entry.snapshot_type, delivery.school_id)


class _Named(msgspec.Struct):
    resource_id: str


_named = msgspec.json.Decoder(_Named)


def _snapshot_of_erased(delivery: Delivery, erasing: frozenset[str]) -> bool:
    """A resync's snapshot of a record being erased: read before the erasure began and queued after it
    looked through the queues (resync.py drops it once it sees that, and until then it is not sent)."""
    if not is_snapshot_type(delivery.event_type):
        return False
    prefix = delivery.event_type.removesuffix(f".{SNAPSHOT_KIND}")
    try:
        record_id = _named.decode(delivery.body).resource_id
    except msgspec.DecodeError:
        return False
    return erasing_record(delivery.school_id, prefix, record_id) in erasing


def as_it_is(
    subscription: Subscription, delivery: Delivery, *, erasing: frozenset[str], expired_before: float
) -> bool:
    """Whether the delivery goes out as it was queued (nothing to drop, nothing to cut again): what
    `as_now` would give back unchanged, told without its round of the event loop (the usual case)."""
    return (
        delivery.shaped_at >= subscription.shaped_at
        and withheld(subscription, delivery, erasing=erasing, expired_before=expired_before) is None
    )


async def recut(
    events: EventSource | None, subscription: Subscription, delivery: Delivery
) -> Delivery | TraceOutcome:
    """The delivery with its body cut again by the subscription's options as they are now, from the
    event's envelope in the log (a body cut before cannot give back what it left out: a `redact` or
    `fields` taken off must bring the values back); from the stored body when the log has the event no
    more (that can only narrow it). `skipped` for an update whose changes all fall outside `fields` now,
    `erased` for an event the log says was erased."""
    logged = None if events is None else await events.get(delivery.event_id)
    envelope = decode(delivery.body if logged is None else logged.body)
    if logged is not None and envelope.data == ERASED:
        return "erased"
    shape = shape_of(subscription)
    if shape is None:
        body: bytes | None = delivery.body if logged is None else logged.body
    else:
        body = project(envelope, shape)
    if body is None:
        return "skipped"
    return msgspec.structs.replace(delivery, body=body, projected_at=subscription.updated_at)


async def as_now(
    queue: DeliveryQueue,
    events: EventSource | None,
    subscription: Subscription,
    delivery: Delivery,
    *,
    erasing: frozenset[str],
    expired_before: float,
) -> Delivery | TraceOutcome:
    """The delivery as the subscription, as it is now, wants it: itself, or its body cut again (`recut`);
    or why it is not sent (`withheld`, or what `recut` found), having dropped it from the queue."""
    outcome = withheld(subscription, delivery, erasing=erasing, expired_before=expired_before)
    if outcome is None and delivery.shaped_at < subscription.shaped_at:
        cut = await recut(events, subscription, delivery)
        if isinstance(cut, Delivery):
            return cut
        outcome = cut
    if outcome is None:
        return delivery
    await queue.drop(subscription.id, delivery, now=time.time(), outcome=outcome, leased_too=True)
    return outcome
