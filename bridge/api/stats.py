"""`GET /v1/subscriptions/{id}/stats`: how a subscription's deliveries went over a recent window.

Read from the subscription's attempt log (the same log `.../deliveries` lists), newest first, back to the
start of the window: attempts, how many succeeded, the success rate, and two latencies:
- `latency_ms`: for each successful delivery of a queued event, from the event's detection (the time in
  its id) to the end of the attempt that delivered it, retries included (a replayed or redelivered event
  counts from its first detection, so a replay shows as a long latency);
- `duration_ms`: each attempt's own duration (address check, POST, reading the answer).

Test sends count as attempts but have no detection latency. A window with more than `MAX_ATTEMPTS`
attempts is read up to that many (`complete` is then false).
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from typing import Annotated, Final

import msgspec
from litestar import Controller, get
from litestar.params import FromPath, QueryParameter

from bridge.api.auth import admin_guard
from bridge.api.common import Injected
from bridge.api.contract import SECURITY, error_responses
from bridge.delivery.models import Attempt
from bridge.delivery.service import DeliveryService
from bridge.delivery.store import SubscriptionStore
from bridge.events.ids import event_id_ms, is_event_id

MAX_ATTEMPTS: Final = 20_000
PAGE: Final = 500
TEST_DELIVERY: Final = "test"


class Spread(msgspec.Struct, kw_only=True):
    """Milliseconds: the median, the 95th percentile and the largest (nearest rank)."""

    p50: float
    p95: float
    max: float


class SubscriptionStats(msgspec.Struct, kw_only=True):
    subscription_id: str
    window_seconds: int
    attempts: int
    delivered: int
    failed: int
    success_rate: float | None
    """Delivered attempts over all attempts, 0 to 1; null when there were none."""
    latency_ms: Spread | None
    """Detection to delivery of the events delivered in the window; null when none was."""
    duration_ms: Spread | None
    complete: bool
    """False when the window held more than 20,000 attempts and only the newest were read."""


def spread(values: Sequence[float]) -> Spread | None:
    if not values:
        return None
    ordered = sorted(values)

    def rank(share: float) -> float:
        return round(ordered[max(0, math.ceil(share * len(ordered)) - 1)], 1)

    return Spread(p50=rank(0.5), p95=rank(0.95), max=round(ordered[-1], 1))


def summarise(
    subscription_id: str, window: int, attempts: Sequence[Attempt], complete: bool
) -> SubscriptionStats:
    delivered = [a for a in attempts if a.outcome == "ok"]
    latencies = [
        a.at * 1000 - event_id_ms(a.event_id)
        for a in delivered
        if a.delivery_id != TEST_DELIVERY and is_event_id(a.event_id)
    ]
    return SubscriptionStats(
        subscription_id=subscription_id,
        window_seconds=window,
        attempts=len(attempts),
        delivered=len(delivered),
        failed=len(attempts) - len(delivered),
        success_rate=round(len(delivered) / len(attempts), 4) if attempts else None,
        latency_ms=spread([max(0.0, ms) for ms in latencies]),
        duration_ms=spread([a.duration_ms for a in attempts]),
        complete=complete,
    )


class StatsController(Controller):
    path = "/v1/subscriptions"
    tags = ["deliveries"]
    guards = [admin_guard]
    security = SECURITY

    @get(
        "/{subscription_id:str}/stats",
        summary="Success rate and latency of a subscription's deliveries over a recent window",
        responses=error_responses(404),
    )
    async def get_subscription_stats(
        self,
        subscriptions: Injected[SubscriptionStore],
        deliveries: Injected[DeliveryService],
        subscription_id: FromPath[str],
        window_seconds: Annotated[
            int, QueryParameter(ge=60, le=7 * 86400, description="seconds back from now (default 3600)")
        ] = 3600,
    ) -> SubscriptionStats:
        await subscriptions.get(subscription_id)
        start = time.time() - window_seconds
        seen: list[Attempt] = []
        before: float | None = None
        while len(seen) < MAX_ATTEMPTS:
            page = await deliveries.attempts(subscription_id, before=before, limit=PAGE)
            seen += [a for a in page if a.at >= start]
            if len(page) < PAGE or page[-1].at < start:
                return summarise(subscription_id, window_seconds, seen, complete=True)
            before = page[-1].at
        return summarise(subscription_id, window_seconds, seen[:MAX_ATTEMPTS], complete=False)
