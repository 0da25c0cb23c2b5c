"""Delivery: subscriptions, signing, URL checks and the dispatcher (ordered lanes, retries, dead letters).

Wiring (in the app's lifespan):

    keys = Keys(settings.redis_prefix)  # bridge.store.keys: every key, the delivery side's too
    guard = UrlGuard(allow_private=settings.allow_private_urls)
    subscriptions = SubscriptionStore(redis, keys, guard)
    dispatcher = Dispatcher(redis, settings, subscriptions, events=event_source)
    await dispatcher.start()
    ...
    await dispatcher.stop(grace=10.0)

The detection side hands events over with `await dispatcher.fan_out([OutgoingEvent(...), ...])`.
`GET /v1/events/{id}` reads `await delivery_states(dispatcher, event_id)` (`tracking.py`); `GET /metrics`
calls `await refresh_delivery_gauges(subscriptions, dispatcher)` (`stats.py`) before rendering.
"""

from __future__ import annotations

from bridge.delivery.dispatcher import Dispatcher
from bridge.delivery.models import EventSource, OutgoingEvent, Subscription
from bridge.delivery.stats import DeliveryTotals, refresh_delivery_gauges
from bridge.delivery.store import SubscriptionStore
from bridge.delivery.tracking import EventDeliveryState, delivery_states
from bridge.delivery.urls import UrlGuard

__all__ = [
    "DeliveryTotals",
    "Dispatcher",
    "EventDeliveryState",
    "EventSource",
    "OutgoingEvent",
    "Subscription",
    "SubscriptionStore",
    "UrlGuard",
    "delivery_states",
    "refresh_delivery_gauges",
]
