"""Where one event stands with each subscription (for `GET /v1/events/{id}`).

Each subscription's `traces` hash names, per event, the latest delivery of it (see `queue.py`). While
that delivery is queued or dead its record holds the attempts and last answer, `due` when it may be
tried next and `leases` whether a worker holds it now; once it succeeded the record is gone and the
trace itself says when, after how many attempts, with which status. Reading one event costs two
pipelined round trips: one HGET per subscription, then three cheap reads per delivery still queued.
"""

from __future__ import annotations

from typing import Any, Literal

import msgspec

from bridge.delivery.dispatcher import Dispatcher
from bridge.delivery.models import Delivery, DeliveryTrace, Subscription

EventDeliveryStatus = Literal[
    "pending", "delivering", "retrying", "delivered", "dead", "expired", "skipped", "erased"
]

_trace = msgspec.msgpack.Decoder(DeliveryTrace)
_delivery = msgspec.msgpack.Decoder(Delivery)


class EventDeliveryState(msgspec.Struct, kw_only=True):
    """One event's latest delivery to one subscription. Times are Unix seconds.

    `state`:
    - `pending`: queued, not attempted yet (it may wait behind earlier events of its school on an
      ordered subscription: then `next_attempt_at` is null);
    - `delivering`: an attempt is running now;
    - `retrying`: attempted and failed; `next_attempt_at` says when it is tried again;
    - `delivered`: a 2xx came back (`last_attempt_at` is when);
    - `dead`: retries exhausted; a dead letter (`POST /v1/dead-letters/retry` sends it again);
    - `expired`: the record was removed by retention (if it had not gone out, it never will);
    - `skipped`: not sent: an update whose changes all fall outside the subscription's `fields`, or an
      event the subscription, changed since, no longer matched when it was to be sent;
    - `erased`: not sent (or not again): its delivery was dropped by an erasure (`POST /v1/erasure`).

    `next_attempt_at` is null while the subscription is disabled: its deliveries wait, kept, until it
    is enabled again. A replay or redelivery of the event replaces the earlier delivery here.
    """

    subscription_id: str
    subscription_enabled: bool
    delivery_id: str
    state: EventDeliveryStatus
    attempts: int
    last_status: int | None = None
    last_error: str | None = None
    last_attempt_at: float | None = None
    next_attempt_at: float | None = None


async def delivery_states(dispatcher: Dispatcher, event_id: str) -> list[EventDeliveryState]:
    """For each subscription that has or had a delivery of `event_id`: where it stands, by subscription id."""
    subscriptions = sorted(await dispatcher.store.snapshot(), key=lambda s: s.id)
    if not subscriptions:
        return []
    keys = dispatcher.keys
    async with dispatcher.redis.pipeline(transaction=False) as pipe:
        for subscription in subscriptions:
            pipe.hget(keys.traces(subscription.id), event_id)
        raw_traces: list[Any] = await pipe.execute()
    found = [
        (subscription, _trace.decode(raw))
        for subscription, raw in zip(subscriptions, raw_traces, strict=True)
        if raw is not None
    ]
    queued = [(s, t) for s, t in found if t.delivered_at is None and t.outcome is None]
    rows: list[Any] = []
    if queued:
        async with dispatcher.redis.pipeline(transaction=False) as pipe:
            for subscription, trace in queued:
                pipe.hget(keys.deliveries(subscription.id), trace.delivery_id)
                pipe.zscore(keys.due(subscription.id), trace.delivery_id)
                pipe.hexists(keys.leases(subscription.id), trace.delivery_id)
            rows = await pipe.execute()
    live = {
        subscription.id: (record, due, leased)
        for (subscription, _), record, due, leased in zip(
            queued, rows[::3], rows[1::3], rows[2::3], strict=True
        )
    }
    states = []
    for subscription, trace in found:
        if trace.outcome is not None:
            states.append(_not_sent(subscription, trace))
        elif trace.delivered_at is not None:
            states.append(_delivered(subscription, trace))
        else:
            record, due, leased = live[subscription.id]
            states.append(_queued(subscription, trace, record, due, bool(leased)))
    return states


def _delivered(subscription: Subscription, trace: DeliveryTrace) -> EventDeliveryState:
    return EventDeliveryState(
        subscription_id=subscription.id,
        subscription_enabled=subscription.enabled,
        delivery_id=trace.delivery_id,
        state="delivered",
        attempts=trace.attempts,
        last_status=trace.status,
        last_attempt_at=trace.delivered_at,
    )


def _not_sent(subscription: Subscription, trace: DeliveryTrace) -> EventDeliveryState:
    assert trace.outcome is not None
    return EventDeliveryState(
        subscription_id=subscription.id,
        subscription_enabled=subscription.enabled,
        delivery_id=trace.delivery_id,
        state=trace.outcome,
        attempts=trace.attempts,
        last_attempt_at=None,
    )


def _queued(
    subscription: Subscription, trace: DeliveryTrace, raw: bytes | None, due: float | None, leased: bool
) -> EventDeliveryState:
    if raw is None:
        return EventDeliveryState(
            subscription_id=subscription.id,
            subscription_enabled=subscription.enabled,
            delivery_id=trace.delivery_id,
            state="expired",
            attempts=0,
        )
    delivery = _delivery.decode(raw)
    state: EventDeliveryStatus
    if delivery.state == "dead":
        state = "dead"
    elif leased:
        state = "delivering"
    else:
        state = "retrying" if delivery.attempts else "pending"
    waiting = state in ("pending", "retrying") and subscription.enabled
    return EventDeliveryState(
        subscription_id=subscription.id,
        subscription_enabled=subscription.enabled,
        delivery_id=delivery.id,
        state=state,
        attempts=delivery.attempts,
        last_status=delivery.last_status,
        last_error=delivery.last_error,
        last_attempt_at=delivery.last_attempt_at,
        next_attempt_at=float(due) if waiting and due is not None else None,
    )
