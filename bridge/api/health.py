"""Liveness and readiness.

`/health/ready` receives `health`: the parts whose state makes the process ready (Redis, the scheduler,
the delivery worker and the hand-off) and those that say when the integrations list was last read and when
the store was last found reset.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass

import msgspec
import redis.asyncio as aioredis
from litestar import Controller, Response, get
from litestar.openapi.datastructures import ResponseSpec
from litestar.status_codes import HTTP_200_OK, HTTP_503_SERVICE_UNAVAILABLE

from bridge.api.common import Injected, rfc3339
from bridge.delivery.handoff import Handoff
from bridge.delivery.handoff_process import HandoffProcess
from bridge.delivery.worker import Worker
from bridge.events.envelope import Timestamp
from bridge.store.marker import SHOW_RESET_SECONDS, StoreMarker
from bridge.sync.scheduler import PollScheduler
from bridge.sync.watcher import IntegrationsWatcher

REDIS_PING_TIMEOUT_SECONDS = 2.0


class Component(msgspec.Struct, kw_only=True):
    name: str
    ok: bool
    detail: str


class Readiness(msgspec.Struct, kw_only=True):
    status: str
    components: list[Component]
    last_integrations_poll_age_seconds: float | None
    store_reset: Timestamp | None = None
    """When Redis was last found to have lost the bridge's data, shown for an hour (readiness stays 200)."""


@dataclass(frozen=True, kw_only=True)
class Health:
    """What readiness looks at."""

    redis: aioredis.Redis
    scheduler: PollScheduler
    worker: Worker
    handoff: Handoff | HandoffProcess
    watcher: IntegrationsWatcher
    marker: StoreMarker


class HealthController(Controller):
    path = "/health"
    tags = ["health"]

    @get("/live", summary="200 while the process runs")
    async def live(self) -> dict[str, str]:
        return {"status": "ok"}

    @get(
        "/ready",
        summary="200 when Redis answers and the scheduler and workers run, else 503",
        responses={503: ResponseSpec(data_container=Readiness, description="Not ready: a component is down")},
    )
    async def ready(self, health: Injected[Health]) -> Response[Readiness]:
        redis = await _redis(health)
        components = [redis, _scheduler(health), _delivery(health)]
        last = reset = None
        if redis.ok:
            with contextlib.suppress(Exception):
                last = await asyncio.wait_for(health.watcher.last_success(), REDIS_PING_TIMEOUT_SECONDS)
            with contextlib.suppress(Exception):
                reset = await asyncio.wait_for(health.marker.last_reset(), REDIS_PING_TIMEOUT_SECONDS)
        ok = all(c.ok for c in components)
        now = time.time()
        body = Readiness(
            status="ready" if ok else "not ready",
            components=components,
            last_integrations_poll_age_seconds=None if last is None else round(now - last, 3),
            store_reset=rfc3339(reset) if reset is not None and now - reset < SHOW_RESET_SECONDS else None,
        )
        return Response(body, status_code=HTTP_200_OK if ok else HTTP_503_SERVICE_UNAVAILABLE)


async def _redis(health: Health) -> Component:
    try:
        await asyncio.wait_for(health.redis.ping(), REDIS_PING_TIMEOUT_SECONDS)
    except Exception as error:
        return Component(name="redis", ok=False, detail=f"{type(error).__name__}: {error}")
    return Component(name="redis", ok=True, detail="answers")


def _scheduler(health: Health) -> Component:
    running = health.scheduler.running
    return Component(name="scheduler", ok=running, detail="running" if running else "stopped")


def _delivery(health: Health) -> Component:
    running = health.worker.running and health.handoff.running
    return Component(name="delivery", ok=running, detail="running" if running else "stopped")
