"""Totals of the delivery side read from Redis, and the Prometheus gauges they feed.

Counters move as deliveries happen (see the worker); what is *in* the store (pending deliveries,
dead letters, subscriptions by state) is read when someone asks: `GET /metrics` calls
`refresh_delivery_gauges` before rendering. The cost is one pipelined round trip of two cheap
commands (HLEN, ZCARD) per subscription (`SubscriptionStore.counts_of`); the subscription list comes from
the store's cache.
"""

from __future__ import annotations

import msgspec

from bridge import metrics
from bridge.delivery.store import SubscriptionStore
from bridge.delivery.worker import Worker


class DeliveryTotals(msgspec.Struct, kw_only=True, frozen=True):
    """What the shared store holds now, over every subscription."""

    enabled: int
    disabled: int
    pending: int
    """Deliveries queued and not yet delivered or dead-lettered (disabled subscriptions included)."""
    dead: int


async def delivery_totals(store: SubscriptionStore) -> DeliveryTotals:
    subscriptions = (await store.current()).subscriptions
    pending = dead = 0
    for pending_here, dead_here in await store.counts_of([s.id for s in subscriptions]):
        pending += max(0, pending_here)
        dead += dead_here
    enabled = sum(1 for s in subscriptions if s.enabled)
    return DeliveryTotals(enabled=enabled, disabled=len(subscriptions) - enabled, pending=pending, dead=dead)


async def refresh_delivery_gauges(store: SubscriptionStore, worker: Worker | None = None) -> DeliveryTotals:
    """Set the store-backed delivery gauges (and this process's in-flight count); Redis errors propagate."""
    if worker is not None:
        metrics.DELIVERIES_IN_FLIGHT.set(worker.in_flight)
    totals = await delivery_totals(store)
    metrics.PENDING_DELIVERIES.set(totals.pending)
    metrics.DEAD_LETTERS.set(totals.dead)
    metrics.SUBSCRIPTIONS.labels(state="enabled").set(totals.enabled)
    metrics.SUBSCRIPTIONS.labels(state="disabled").set(totals.disabled)
    return totals
