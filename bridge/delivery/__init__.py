"""Delivery: subscriptions, signing, URL checks, and the parts that move deliveries (ordered lanes,
retries, dead letters), each with one job and each given its parts from outside:

    intake.py    events in: fan-out, replays' and redeliveries' enqueue, pairs not sent recorded as skipped
    worker.py    claim, send, record the outcome (`Worker._record`: the one place it is recorded)
    service.py   what the API and the console do: attempt logs, test sends, replays, redeliveries,
                 dead letters, where an event stands with each subscription

Wiring (in `Services.build`, bridge/app.py; every part built once and handed down):

    keys = Keys(settings.redis_prefix)  # bridge.store.keys: every key, the delivery side's too
    subscriptions = SubscriptionStore(redis, keys, UrlGuard(...), scripts=scripts)
    queue = DeliveryQueue(redis, keys, scripts)
    sender = Sender(subscriptions.guard, timeout=..., concurrency=...)
    worker = Worker(settings, queue, subscriptions, sender, Completer(queue, cutoff), events=source)
    intake = Intake(redis, queue, subscriptions, on_queued=worker.wake)
    deliveries = DeliveryService(queue, subscriptions, intake, sender, events=source, on_requeued=worker.wake)

The detection side hands events over with `await intake.fan_out([OutgoingEvent(...), ...])` (the hand-off
does, handoff.py). `GET /metrics` calls `await refresh_delivery_gauges(subscriptions, worker)`
(`stats.py`) before rendering.
"""

from __future__ import annotations

from bridge.delivery.intake import Intake
from bridge.delivery.models import EventSource, OutgoingEvent, Subscription
from bridge.delivery.service import DeliveryService, EventDeliveryState
from bridge.delivery.stats import DeliveryTotals, refresh_delivery_gauges
from bridge.delivery.store import SubscriptionStore
from bridge.delivery.urls import UrlGuard
from bridge.delivery.worker import Worker

__all__ = [
    "DeliveryService",
    "DeliveryTotals",
    "EventDeliveryState",
    "EventSource",
    "Intake",
    "OutgoingEvent",
    "Subscription",
    "SubscriptionStore",
    "UrlGuard",
    "Worker",
    "refresh_delivery_gauges",
]
