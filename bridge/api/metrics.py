"""`GET /metrics`: every series of `bridge.metrics` in the Prometheus text format (version 0.0.4).

No auth, like `/health/*`: the scrape comes from inside the deployment. Before rendering, the gauges
that describe the shared store are refreshed from Redis (`state.services.subscriptions` and
`state.services.dispatcher`, when the app set them), and `state.services.refresh_metrics()` is awaited
when it exists, so other parts can set their own gauges at scrape time. A refresh is bounded in time;
if it fails (Redis down or slow) the page still renders, with those gauges at their last known
values, and `d6_bridge_gauge_refresh_failures_total` counts the miss.
"""

from __future__ import annotations

import asyncio
from typing import Any, Final

import structlog
from litestar import Response, get
from litestar.datastructures import State
from prometheus_client import generate_latest
from redis.exceptions import RedisError

from bridge import metrics
from bridge.delivery.stats import refresh_delivery_gauges

log = structlog.get_logger(__name__)

REFRESH_TIMEOUT_SECONDS: Final = 2.0
# Litestar appends "; charset=utf-8" to text types itself (prometheus_client's constant carries it too).
MEDIA_TYPE: Final = "text/plain; version=0.0.4"


async def refresh_gauges(state: State) -> bool:
    """Refresh the store-backed gauges from what the app put in `state.services`; False if that failed."""
    services: Any = getattr(state, "services", None)
    if services is None:
        return True
    dispatcher = getattr(services, "dispatcher", None)
    store = getattr(services, "subscriptions", None) or getattr(dispatcher, "store", None)
    extra = getattr(services, "refresh_metrics", None)
    try:
        async with asyncio.timeout(REFRESH_TIMEOUT_SECONDS):
            if store is not None:
                await refresh_delivery_gauges(store, dispatcher)
            if callable(extra):
                await extra()
    except (RedisError, OSError, TimeoutError) as error:
        metrics.GAUGE_REFRESH_FAILURES.inc()
        log.warning("metrics gauges not refreshed", error=f"{type(error).__name__}: {error}".rstrip(": "))
        return False
    except Exception:
        metrics.GAUGE_REFRESH_FAILURES.inc()
        log.exception("metrics gauges refresh crashed")
        return False
    return True


@get(
    "/metrics",
    media_type=MEDIA_TYPE,
    summary="Prometheus metrics (text format 0.0.4)",
    tags=["operations"],
)
async def metrics_endpoint(state: State) -> Response[bytes]:
    await refresh_gauges(state)
    return Response(generate_latest(metrics.REGISTRY), media_type=MEDIA_TYPE)
