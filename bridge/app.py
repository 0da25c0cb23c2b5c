"""The serve process: the parts, how they are wired, and the Litestar app that starts and stops them.

    integrations watcher --active schools--> poll scheduler --due schools--> school poller
    school poller --commit snapshot + events (atomic)--> outbox --publish--> delivery stream
    hand-off --fan out--> dispatcher --sign, send, retry--> subscribers

Everything is built by `Services.build` from the settings, so the demo, the tests and `serve` run the same
wiring. `create_app` adds the HTTP API and a lifespan that starts the background parts after the server
is up and stops them, in reverse order and within a bounded time, on shutdown (SIGTERM included).
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import secrets
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Final

import httpx
import redis.asyncio as aioredis
import structlog
from litestar import Litestar
from redis.exceptions import RedisError

from bridge import __version__, metrics
from bridge.api.health import Health
from bridge.api.metrics import Gauges
from bridge.api.schools import Schools
from bridge.api.wiring import API_ROUTES, build_api, parts
from bridge.api.wiring import MAX_REQUEST_BODY_BYTES as MAX_REQUEST_BODY_BYTES  # suites read it here
from bridge.console import console_routes
from bridge.d6.budget import RedisBudget
from bridge.d6.client import D6Client
from bridge.delivery.dispatcher import Dispatcher
from bridge.delivery.erasure import Eraser
from bridge.delivery.handoff import Handoff
from bridge.delivery.source import LogEventSource
from bridge.delivery.store import SubscriptionStore
from bridge.delivery.urls import UrlGuard
from bridge.events.log import EventLog
from bridge.events.outbox import Outbox
from bridge.settings import Settings
from bridge.store.keys import Keys
from bridge.store.marker import StoreMarker
from bridge.store.redis import connect
from bridge.store.scripts import Scripts
from bridge.sync.lease import Lease
from bridge.sync.planner import Planner
from bridge.sync.poller import SchoolPoller
from bridge.sync.scheduler import PollScheduler
from bridge.sync.snapshot import SnapshotStore
from bridge.sync.status import PollStatusStore
from bridge.sync.watcher import IntegrationsWatcher

log = structlog.get_logger(__name__)

MAINTENANCE_SECONDS: Final = 30.0
RETENTION_EVERY_SECONDS: Final = 3600.0
SHUTDOWN_GRACE_SECONDS: Final = 10.0


def new_replica_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(3)}"


@dataclass
class Services:
    """Every long-lived part of one serve process."""

    settings: Settings
    redis: aioredis.Redis
    keys: Keys
    d6: D6Client
    snapshots: SnapshotStore
    outbox: Outbox
    events: EventLog
    lease: Lease
    status: PollStatusStore
    marker: StoreMarker
    watcher: IntegrationsWatcher
    poller: SchoolPoller
    scheduler: PollScheduler
    subscriptions: SubscriptionStore
    dispatcher: Dispatcher
    handoff: Handoff
    eraser: Eraser
    replica_id: str
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)

    @classmethod
    def build(
        cls,
        settings: Settings,
        *,
        redis: aioredis.Redis | None = None,
        d6_transport: httpx.AsyncBaseTransport | None = None,
        poll_workers: int | None = None,
    ) -> Services:
        """Wire every part. Poll workers default to one per request a second of the d6 budget (4 to 32):
        a scan reads its pages one after another, so it takes that many to spend the budget when d6 is slow.
        """
        redis = redis if redis is not None else connect(settings)
        keys = Keys(settings.redis_prefix)
        scripts = Scripts(redis)
        replica_id = new_replica_id()
        budget = RedisBudget(scripts.d6_budget, keys.d6_budget(), settings.d6_max_rps)
        d6 = D6Client(
            settings, budget=budget, transport=d6_transport, on_response=metrics.observe_d6_response
        )
        snapshots = SnapshotStore(redis, keys, scripts)
        outbox = Outbox(redis, keys, scripts)
        events = EventLog(redis, keys)
        lease = Lease(redis, keys, scripts)
        status = PollStatusStore(redis, keys, settings.resources)
        subscriptions = SubscriptionStore(
            redis, keys, UrlGuard(allow_private=settings.allow_private_urls), scripts=scripts
        )
        dispatcher = Dispatcher(redis, settings, subscriptions, events=LogEventSource(events))
        handoff = Handoff(redis, keys, dispatcher, scripts)
        marker = StoreMarker(redis, keys)
        watcher = IntegrationsWatcher(
            settings, redis, keys, d6, snapshots, outbox, replica_id=replica_id, marker=marker
        )
        planner = Planner(settings, status) if settings.poll_planning == "adaptive" else None
        poller = SchoolPoller(
            settings,
            d6,
            snapshots,
            lease,
            status,
            outbox,
            replica_id=replica_id,
            on_denied=watcher.deny,
            on_restored=watcher.restore,
            recent_reset=marker.recent_reset,
            planned_due=planner.due if planner is not None else None,
        )

        async def poll_feed(school_id: int, resource: str, due_at: float, force: bool) -> None:
            metrics.POLL_LAG.set(scheduler.max_lag_seconds())
            # A reset is found before a poll can take a baseline that would tell it as `*.created`.
            await marker.check()
            await poller.poll(school_id, force, resource=resource, due_at=due_at)
            handoff.wake()

        async def poll_integrations() -> None:
            try:
                await watcher.tick()
            except (RedisError, OSError) as error:
                log.warning(
                    "integrations poll could not reach Redis", error=f"{type(error).__name__}: {error}"
                )
            handoff.wake()

        scheduler = PollScheduler(
            settings,
            poll_feed=poll_feed,
            poll_integrations=poll_integrations,
            workers=poll_workers or min(32, max(4, math.ceil(settings.d6_max_rps))),
            planner=planner,
        )
        watcher.on_active = scheduler.sync_schools
        watcher.on_denied = scheduler.request_polls
        return cls(
            settings=settings,
            redis=redis,
            keys=keys,
            d6=d6,
            snapshots=snapshots,
            outbox=outbox,
            events=events,
            lease=lease,
            status=status,
            marker=marker,
            watcher=watcher,
            poller=poller,
            scheduler=scheduler,
            subscriptions=subscriptions,
            dispatcher=dispatcher,
            handoff=handoff,
            eraser=Eraser(
                redis, keys, snapshots=snapshots, events=events, outbox=outbox, subscriptions=subscriptions
            ),
            replica_id=replica_id,
        )

    async def start(self) -> None:
        """Start the background parts. Redis being down is not fatal: they retry, and /health/ready tells."""
        log.info("bridge starting", replica=self.replica_id, version=__version__)
        await self.dispatcher.start()
        self.handoff.start()
        self.scheduler.start()
        self._tasks.append(asyncio.create_task(self._maintenance(), name="maintenance"))

    async def stop(self, grace: float = SHUTDOWN_GRACE_SECONDS) -> None:
        """Stop taking polls, let running polls and deliveries finish (bounded), hand back the rest."""
        log.info("bridge stopping", grace_seconds=grace)
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
        await self.scheduler.shutdown(grace)
        await self.handoff.stop()
        await self.dispatcher.stop(grace)
        await self.poller.aclose()
        await self.d6.aclose()
        with contextlib.suppress(RedisError, OSError):
            await self.redis.aclose()
        log.info("bridge stopped")

    async def refresh_metrics(self) -> None:
        """The poll gauges (`GET /metrics` awaits this before rendering): lag, and schools by state.

        States: active (polled), failing (active, its last poll failed), inactive, denied, revoked.
        """
        metrics.POLL_LAG.set(self.scheduler.max_lag_seconds())
        active = await self.watcher.active_schools()
        known = sorted(set(await self.snapshots.known_schools()) | active)
        pairs = await self.snapshots.integration_pair_counts(known)
        flags = await self.snapshots.flags_of(known)
        failing = await self.status.failing(known)
        counts = dict.fromkeys(("active", "failing", "inactive", "denied", "revoked"), 0)
        for school_id in known:
            if school_id in active:
                counts["failing" if school_id in failing else "active"] += 1
            elif not pairs[school_id]:
                counts["revoked"] += 1
            else:
                counts["denied" if flags[school_id].denied is not None else "inactive"] += 1
        for state, count in counts.items():
            metrics.SCHOOLS.labels(state=state).set(count)

    def _trim_every(self) -> float:
        """Seconds between retention trims: hourly, or a tenth of a retention shorter than ten hours."""
        retention = self.settings.event_retention_days * 86400
        return max(MAINTENANCE_SECONDS, min(RETENTION_EVERY_SECONDS, retention / 10))

    async def _maintenance(self) -> None:
        """Publish what a crash left unpublished, finish erasures a crash left half done, trim old events,
        refresh gauges."""
        next_trim = 0.0
        loop = asyncio.get_running_loop()
        while True:
            try:
                if await self.outbox.publish_pending():
                    self.handoff.wake()
                await self.refresh_metrics()
                await self.eraser.resume()
                if loop.time() >= next_trim:
                    removed = await self.events.trim(self.settings.event_retention_days)
                    if removed:
                        log.info("old events removed", events=removed)
                    next_trim = loop.time() + self._trim_every()
            except (RedisError, OSError) as error:
                log.warning("maintenance failed; retrying", error=f"{type(error).__name__}: {error}")
            except Exception:
                log.exception("maintenance crashed; retrying")
            await asyncio.sleep(MAINTENANCE_SECONDS)


def create_app(settings: Settings, services: Services | None = None) -> Litestar:
    services = services or Services.build(settings)

    @contextlib.asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        await services.start()
        try:
            yield
        finally:
            await services.stop()

    api = parts(
        subscriptions=services.subscriptions,
        dispatcher=services.dispatcher,
        events=services.events,
        schools=Schools(
            settings=settings,
            watcher=services.watcher,
            status=services.status,
            snapshots=services.snapshots,
            scheduler=services.scheduler,
        ),
        health=Health(
            redis=services.redis,
            scheduler=services.scheduler,
            dispatcher=services.dispatcher,
            handoff=services.handoff,
            watcher=services.watcher,
            marker=services.marker,
        ),
        gauges=Gauges(
            subscriptions=services.subscriptions,
            dispatcher=services.dispatcher,
            more=services.refresh_metrics,
        ),
        eraser=services.eraser,
    )
    return build_api(settings, [*API_ROUTES, console_routes], api, lifespan=[lifespan])
