"""`GET /metrics`: every series of `bridge.metrics` in the Prometheus text format (version 0.0.4).

No auth, like `/health/*`: the scrape comes from inside the deployment. The handler receives `gauges`:
before rendering, the gauges that describe the shared store are refreshed from Redis (the delivery side's,
from the subscription store and the delivery worker), then `more` is awaited when given (a serve process's
poll gauges), so other parts can set their own gauges at scrape time. A refresh is bounded in time; if
it fails (Redis down or slow) the page still renders, with those gauges at their last known values, and
`d6_bridge_scrape_refresh_failures_total` counts the miss.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Final

import structlog
from litestar import Response, get
from prometheus_client import generate_latest
from redis.exceptions import RedisError

from bridge import metrics
from bridge.api.common import Injected
from bridge.delivery.stats import refresh_delivery_gauges
from bridge.delivery.store import SubscriptionStore
from bridge.delivery.worker import Worker

log = structlog.get_logger(__name__)

REFRESH_TIMEOUT_SECONDS: Final = 2.0
# Litestar appends "; charset=utf-8" to text types itself (prometheus_client's constant carries it too).
MEDIA_TYPE: Final = "text/plain; version=0.0.4"


@dataclass(frozen=True, kw_only=True)
class Gauges:
    """What a scrape refreshes before rendering."""

    subscriptions: SubscriptionStore
    worker: Worker
    more: Callable[[], Awaitable[None]] | None = None

    async def refresh(self) -> bool:
        """Refresh the store-backed gauges; False if that failed (counted, logged, never raised)."""
        try:
            async with asyncio.timeout(REFRESH_TIMEOUT_SECONDS):
                await refresh_delivery_gauges(self.subscriptions, self.worker)
                if self.more is not None:
                    await self.more()
        except (RedisError, OSError, TimeoutError) as error:
            metrics.SCRAPE_REFRESH_FAILURES.inc()
            log.warning("metrics gauges not refreshed", error=f"{type(error).__name__}: {error}".rstrip(": "))
            return False
        except Exception:
            metrics.SCRAPE_REFRESH_FAILURES.inc()
            log.exception("metrics gauges refresh crashed")
            return False
        return True


@get(
    "/metrics",
    media_type=MEDIA_TYPE,
    summary="Prometheus metrics (text format 0.0.4)",
    operation_id="getMetrics",
    tags=["operations"],
)
async def metrics_endpoint(gauges: Injected[Gauges]) -> Response[bytes]:
    await gauges.refresh()
    return Response(generate_latest(metrics.REGISTRY), media_type=MEDIA_TYPE)
