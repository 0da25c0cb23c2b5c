"""The serve process: the parts, how they are wired, and the Litestar app that starts and stops them.

    integrations watcher --active schools--> poll scheduler --due schools--> school poller
    school poller --commit snapshot + events (atomic)--> outbox --publish--> delivery stream
    hand-off --fan out--> intake --queue--> worker --sign, send, retry--> subscribers

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
import ssl
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Final

import httpx
import redis.asyncio as aioredis
import structlog
from litestar import Litestar
from redis.exceptions import RedisError

from bridge import __version__, metrics
from bridge.api.commands import Commands
from bridge.api.health import Health
from bridge.api.metrics import Gauges
from bridge.api.records import Records
from bridge.api.schools import Schools
from bridge.api.wiring import API_ROUTES, build_api, parts
from bridge.api.wiring import MAX_REQUEST_BODY_BYTES as MAX_REQUEST_BODY_BYTES  # suites read it here
from bridge.catalogue import BY_NAME
from bridge.commands.d6 import D6Writer
from bridge.commands.models import Command
from bridge.commands.runner import LEASE_MARGIN_SECONDS, CommandRunner
from bridge.commands.store import LEASE_NAME as COMMAND_LEASE
from bridge.commands.store import CommandStore
from bridge.commands.told import Teller
from bridge.console import console_routes
from bridge.d6.budget import RedisBudget
from bridge.d6.client import D6Client
from bridge.delivery.completer import Completer
from bridge.delivery.erasure import Eraser
from bridge.delivery.feed import Feed, Notices
from bridge.delivery.handoff import Handoff
from bridge.delivery.handoff_process import HandoffProcess
from bridge.delivery.intake import Intake
from bridge.delivery.queue import DeliveryQueue
from bridge.delivery.resync import Resyncs
from bridge.delivery.sender import Sender
from bridge.delivery.service import DeliveryService
from bridge.delivery.source import LogEventSource
from bridge.delivery.store import SubscriptionStore
from bridge.delivery.tokens import TokenStore
from bridge.delivery.urls import UrlGuard
from bridge.delivery.worker import Worker
from bridge.errors import UNREACHABLE, InvalidRequest
from bridge.events.log import EventLog
from bridge.events.outbox import Outbox
from bridge.loops import cancelled, poll
from bridge.settings import Settings
from bridge.store.keys import Keys
from bridge.store.marker import StoreMarker
from bridge.store.redis import connect
from bridge.store.scripts import Scripts
from bridge.sync.lease import Lease
from bridge.sync.planner import Planner
from bridge.sync.poller import SchoolPoller
from bridge.sync.scheduler import PollScheduler
from bridge.sync.school_state import SCHOOL_STATES, school_state
from bridge.sync.snapshot import SnapshotStore
from bridge.sync.status import PollStatusStore
from bridge.sync.watcher import IntegrationsWatcher

log = structlog.get_logger(__name__)

MAINTENANCE_SECONDS: Final = 30.0
HANDON_AFTER_SECONDS: Final = 60.0
"""A new baseline still marked as not handed on this long after its commit was left behind: upkeep hands
it on (docs/api.md#automatic-snapshots)."""
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
    intake: Intake
    worker: Worker
    deliveries: DeliveryService
    handoff: Handoff | HandoffProcess
    eraser: Eraser
    resyncs: Resyncs
    feed: Feed
    tokens: TokenStore
    commands: CommandStore
    runner: CommandRunner
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
        delivery_tls: ssl.SSLContext | None = None,
    ) -> Services:
        """Wire every part. Poll workers default to one per request a second of the d6 budget (4 to 32):
        a scan reads its pages one after another, so it takes that many to spend the budget when d6 is slow.
        `delivery_tls` is the TLS context webhooks are sent with (the default one when None).
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
        source = LogEventSource(events)
        queue = DeliveryQueue(redis, keys, scripts)
        sender = Sender(
            subscriptions.guard,
            timeout=settings.delivery_timeout_seconds,
            concurrency=settings.delivery_concurrency,
            ssl_context=delivery_tls,
        )
        completer = Completer(queue, lambda: time.time() - settings.event_retention_days * 86400)
        worker = Worker(settings, queue, subscriptions, sender, completer, events=source)
        in_process = not settings.handoff_process or settings.uses_memory_store
        # Out of process, the hand-off's intake tells the worker through the notices (handoff_process.py).
        notices = Notices(redis, keys, on_pushed=None if in_process else worker.wake)
        intake = Intake(redis, queue, subscriptions, on_queued=worker.wake, notices=notices)
        deliveries = DeliveryService(
            queue, subscriptions, intake, sender, events=source, on_requeued=worker.wake
        )
        handoff = (
            Handoff(redis, keys, intake, queue, subscriptions, scripts)
            if in_process
            else HandoffProcess(settings)
        )
        resyncs = Resyncs(
            redis, keys, snapshots, queue, subscriptions, settings, on_queued=worker.wake, notices=notices
        )
        feed = Feed(
            redis,
            keys,
            queue,
            subscriptions,
            notices,
            retention_seconds=settings.event_retention_days * 86400,
            events=source,
        )
        marker = StoreMarker(redis, keys)
        # The sync parts, each given the callbacks it calls at construction. The scheduler runs the two
        # functions below (they reach the poller and the watcher only once it has started); the watcher
        # tells the scheduler which schools are active or denied; the poller tells the watcher of a denial.

        async def poll_feed(school_id: int, resource: str, due_at: float, force: bool) -> None:
            metrics.POLL_LAG.set(scheduler.max_lag_seconds())
            # A reset is found before a poll can take a baseline that would tell it as `*.created`.
            await marker.check()
            await poller.poll(school_id, force, resource=resource, due_at=due_at)
            handoff.wake()

        async def baseline_taken(school_id: int, resource: str) -> None:
            """A feed's new baseline is committed (by this replica): resync it to every subscription created
            with `"initial": "snapshot"` that covers it (docs/api.md#automatic-snapshots)."""
            for subscription in (await subscriptions.current()).subscriptions:
                if not subscription.follows_baselines(school_id, resource):
                    continue
                try:
                    await resyncs.start(subscription, [school_id], [resource])
                except InvalidRequest as error:  # e.g. a school_ids changed under it: nothing to send
                    log.info("no automatic snapshot", subscription=subscription.id, reason=str(error))

        async def poll_integrations() -> None:
            try:
                await watcher.tick()
            except UNREACHABLE as error:
                log.warning(
                    "integrations poll could not reach Redis", error=f"{type(error).__name__}: {error}"
                )
            handoff.wake()

        planner = Planner(settings, status) if settings.poll_planning == "adaptive" else None
        scheduler = PollScheduler(
            settings,
            poll_feed=poll_feed,
            poll_integrations=poll_integrations,
            workers=poll_workers or min(32, max(4, math.ceil(settings.d6_max_rps))),
            planner=planner,
        )
        watcher = IntegrationsWatcher(
            settings,
            redis,
            keys,
            d6,
            snapshots,
            outbox,
            replica_id=replica_id,
            marker=marker,
            on_active=scheduler.sync_schools,
            on_denied=scheduler.request_polls,
        )
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
            on_baseline=baseline_taken,
            recent_reset=marker.recent_reset,
            planned_due=planner.due if planner is not None else None,
        )
        commands = CommandStore(redis, keys, scripts)

        def written(school_id: int, command: Command) -> None:
            """A write succeeded: poll what it changed at once, so its event follows soon."""
            for resource in ("notes", "promises"):
                if resource in settings.resources:
                    scheduler.request_poll(school_id, resource)

        async def denied(school_id: int) -> None:
            await watcher.deny(school_id)

        async def knows_note(school_id: int, note_id: int) -> bool:
            return bool(await snapshots.records(school_id, "note", [str(note_id)]))

        runner = CommandRunner(
            commands,
            Lease(redis, keys, scripts, name=COMMAND_LEASE),
            D6Writer(d6),
            retry_schedule=settings.command_retry_schedule,
            lease_seconds=2 * settings.d6_timeout_seconds + LEASE_MARGIN_SECONDS,
            on_written=written,
            on_denied=denied,
            tell=Teller(redis, keys, scripts, outbox).tell,
            knows_note=knows_note if "notes" in settings.resources else None,
            keep_seconds=settings.event_retention_days * 86400,
        )
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
            intake=intake,
            worker=worker,
            deliveries=deliveries,
            handoff=handoff,
            eraser=Eraser(
                redis, keys, snapshots=snapshots, events=events, outbox=outbox, subscriptions=subscriptions
            ),
            resyncs=resyncs,
            feed=feed,
            tokens=TokenStore(redis, keys, subscriptions),
            commands=commands,
            runner=runner,
            replica_id=replica_id,
        )

    async def start(self) -> None:
        """Start the background parts. Redis being down is not fatal: they retry, and /health/ready tells."""
        log.info("bridge starting", replica=self.replica_id, version=__version__)
        await self.start_delivery()
        self.runner.start()
        self.scheduler.start()
        self._tasks.append(asyncio.create_task(self._maintenance(), name="maintenance"))

    async def start_delivery(self) -> None:
        """The worker, the hand-off and the resync loop. With the hand-off in a process of its own, that
        process runs the resync loop too, and the notices' listener wakes the worker when it queued webhooks
        (handoff_process.py)."""
        await self.worker.start()
        if isinstance(self.handoff, HandoffProcess):
            self.feed.notices.start()
        else:
            self.resyncs.start_loop()
        self.handoff.start()

    async def stop(self, grace: float = SHUTDOWN_GRACE_SECONDS) -> None:
        """Stop taking polls, let running polls and deliveries finish (bounded), hand back the rest."""
        log.info("bridge stopping", grace_seconds=grace)
        await cancelled(*self._tasks)
        self._tasks.clear()
        await self.scheduler.shutdown(grace)
        await self.handoff.stop()
        await self.feed.notices.stop()
        await self.resyncs.stop_loop()
        await self.runner.stop()
        await self.worker.stop(grace)
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
        metrics.COMMANDS_WAITING.set(await self.commands.waiting())
        active = await self.watcher.active_schools()
        known = sorted(set(await self.snapshots.known_schools()) | active)
        pairs = await self.snapshots.integration_pair_counts(known)
        flags = await self.snapshots.flags_of(known)
        failing = await self.status.failing(known)
        counts = dict.fromkeys(SCHOOL_STATES, 0)
        for school_id in known:
            state = school_state(
                active=school_id in active,
                listed=bool(pairs[school_id]),
                denied=flags[school_id].denied is not None,
                failing=school_id in failing,
            )
            counts[state] += 1
        for state, count in counts.items():
            metrics.SCHOOLS.labels(state=state).set(count)

    async def hand_on_left(self, now: float | None = None) -> int:
        """Hand on the new baselines a replica committed and did not hand on (killed in between, or Redis
        out of reach then), each by one replica; how many."""
        now = time.time() if now is None else now
        watched = {BY_NAME[name].prefix: BY_NAME[name] for name in self.settings.resources}
        left = await self.snapshots.hand_ons_left(
            await self.snapshots.known_schools(), list(watched), before=now - HANDON_AFTER_SECONDS, now=now
        )
        for school_id, prefix in left:
            log.info("new baseline handed on late", school_id=school_id, resource=watched[prefix].name)
            await self.poller.hand_on(school_id, watched[prefix])
        return len(left)

    def _trim_every(self) -> float:
        """Seconds between retention trims: hourly, or a tenth of a retention shorter than ten hours."""
        retention = self.settings.event_retention_days * 86400
        return max(MAINTENANCE_SECONDS, min(RETENTION_EVERY_SECONDS, retention / 10))

    async def _maintenance(self) -> None:
        """Publish what a crash left unpublished, finish erasures a crash left half done, trim old events,
        refresh gauges."""
        next_trim = 0.0
        loop = asyncio.get_running_loop()

        async def once() -> None:
            nonlocal next_trim
            if await self.outbox.publish_pending():
                self.handoff.wake()
            await self.refresh_metrics()
            await self.hand_on_left()
            await self.eraser.resume()
            if loop.time() >= next_trim:
                removed = await self.events.trim(self.settings.event_retention_days)
                if removed:
                    log.info("old events removed", events=removed)
                next_trim = loop.time() + self._trim_every()

        async def pause(_: None) -> None:
            await asyncio.sleep(MAINTENANCE_SECONDS)

        await poll(
            once,
            pause,
            failed="maintenance failed; retrying",
            crashed="maintenance crashed; retrying",
            backoff=0,
        )


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
        deliveries=services.deliveries,
        events=services.events,
        schools=Schools(
            settings=settings,
            watcher=services.watcher,
            status=services.status,
            snapshots=services.snapshots,
            scheduler=services.scheduler,
        ),
        records=Records(settings=settings, snapshots=services.snapshots, watcher=services.watcher),
        health=Health(
            redis=services.redis,
            scheduler=services.scheduler,
            worker=services.worker,
            handoff=services.handoff,
            watcher=services.watcher,
            marker=services.marker,
        ),
        gauges=Gauges(
            subscriptions=services.subscriptions,
            worker=services.worker,
            more=services.refresh_metrics,
        ),
        eraser=services.eraser,
        resyncs=services.resyncs,
        feed=services.feed,
        tokens=services.tokens,
        commands=Commands(store=services.commands, watcher=services.watcher, runner=services.runner),
    )
    return build_api(
        settings, [*API_ROUTES, console_routes], api, lifespan=[lifespan], tokens=services.tokens
    )
