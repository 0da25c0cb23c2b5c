"""The HTTP API as one Litestar app: its controllers, the typed part each receives, one error map.

A handler names the parts it uses as parameters (`subscriptions: Injected[SubscriptionStore]`);
`parts(...)` hands each one in with `Provide`, under that name, the same object for every request.
`create_app` gives every part of a serve process; a test gives the parts it built on the test Redis and
mounts the controllers that use them (Litestar refuses to start an app that lacks a part a mounted
handler names, so a missing part fails at once, not on the first request).

    controller               receives
    HealthController         health (Redis, scheduler, delivery worker, hand-off, watcher, store marker)
    metrics_endpoint         gauges (subscription store, delivery worker, the poll gauges' refresh)
    SubscriptionController   subscriptions, deliveries (the delivery service: test sends)
    DeliveriesController     subscriptions, deliveries
    EventsController         events, deliveries (where an event stands with each subscription)
    EventTypesController     nothing (the catalogue is code: bridge/events/schemas.py)
    StatsController          subscriptions, deliveries (a subscription's attempt log)
    SchoolsController        schools (settings, watcher, poll status, snapshots, scheduler)
    RecordsController        records (settings, snapshots, watcher: the state API reads Redis only)
    ErasureController        eraser (snapshots, event log, outbox, subscriptions: delivery/erasure.py)
    SubscriptionController   also resyncs (`POST .../resync`: delivery/resync.py)
    FeedController           subscriptions, feed (a pull subscription's feed and stream: delivery/feed.py)
    CommandController        commands (the command store, the watcher, the runner: bridge/commands/)
    SubscriptionTokensController  tokens (the `TokenStore`), subscriptions, events (one event as a
                             subscription receives it)
    whoami                   nothing (the caller, as the guards found it)

The guards read `settings` and `tokens` (the `TokenStore`, to know a subscription token) from `app.state`:
they run before the parts are handed in.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Final, TypeAlias

from litestar import Litestar
from litestar.datastructures import State
from litestar.di import Provide
from litestar.openapi.config import OpenAPIConfig
from litestar.openapi.spec import Components
from litestar.types import ControllerRouterHandler

from bridge import __version__
from bridge.api.auth import whoami
from bridge.api.commands import CommandController, Commands
from bridge.api.contract import SECURITY_SCHEMES, MetaSchemaPlugin, StrictStructSchemaPlugin, operation_id
from bridge.api.deliveries import DeliveriesController
from bridge.api.docs import SCHEMA_PATH, render_plugins
from bridge.api.erasure import ErasureController
from bridge.api.errors import EXCEPTION_HANDLERS
from bridge.api.event_types import EventTypesController, webhooks
from bridge.api.events import EventsController
from bridge.api.feed import FeedController
from bridge.api.health import Health, HealthController
from bridge.api.metrics import Gauges, metrics_endpoint
from bridge.api.middleware import request_id_middleware
from bridge.api.records import Records, RecordsController
from bridge.api.schools import Schools, SchoolsController
from bridge.api.stats import StatsController
from bridge.api.subscriptions import SubscriptionController
from bridge.api.tokens import SubscriptionTokensController
from bridge.delivery.erasure import Eraser
from bridge.delivery.feed import Feed
from bridge.delivery.resync import Resyncs
from bridge.delivery.service import DeliveryService
from bridge.delivery.store import SubscriptionStore
from bridge.delivery.tokens import TokenStore
from bridge.events.log import EventLog
from bridge.settings import Settings

MAX_REQUEST_BODY_BYTES: Final = 1_000_000

Lifespan: TypeAlias = Callable[[Litestar], AbstractAsyncContextManager[None]]

API_ROUTES: Final[Sequence[ControllerRouterHandler]] = (
    HealthController,
    metrics_endpoint,
    SubscriptionController,
    FeedController,
    DeliveriesController,
    EventsController,
    EventTypesController,
    SchoolsController,
    RecordsController,
    StatsController,
    ErasureController,
    SubscriptionTokensController,
    CommandController,
    whoami,
)
"""Every controller of the API (the console's static files are mounted next to them by `create_app`)."""


def provide(part: object) -> Provide:
    """Hand the same long-lived part (built once, at start) to every request that names it."""

    def dependency() -> object:
        return part

    return Provide(dependency, use_cache=True, sync_to_thread=False)


def parts(
    *,
    subscriptions: SubscriptionStore | None = None,
    deliveries: DeliveryService | None = None,
    events: EventLog | None = None,
    schools: Schools | None = None,
    records: Records | None = None,
    health: Health | None = None,
    gauges: Gauges | None = None,
    eraser: Eraser | None = None,
    resyncs: Resyncs | None = None,
    tokens: TokenStore | None = None,
    feed: Feed | None = None,
    commands: Commands | None = None,
) -> dict[str, Provide]:
    """The `Provide` of each part given, under the parameter name the handlers use for it."""
    given = {
        "subscriptions": subscriptions,
        "deliveries": deliveries,
        "events": events,
        "schools": schools,
        "records": records,
        "health": health,
        "gauges": gauges,
        "eraser": eraser,
        "resyncs": resyncs,
        "tokens": tokens,
        "feed": feed,
        "commands": commands,
    }
    return {name: provide(part) for name, part in given.items() if part is not None}


def build_api(
    settings: Settings,
    route_handlers: Sequence[ControllerRouterHandler],
    dependencies: Mapping[str, Provide],
    *,
    lifespan: Sequence[Lifespan] = (),
    tokens: TokenStore | None = None,
) -> Litestar:
    """The app: the handlers, their parts, request ids, one error map, the documented contract.

    `settings` and `tokens` stay in `app.state` for the guards (they run before dependencies are resolved);
    without `tokens` no subscription token is known (each is a 401).
    """
    return Litestar(
        route_handlers=list(route_handlers),
        dependencies=dict(dependencies),
        state=State({"settings": settings, "tokens": tokens}),
        lifespan=list(lifespan),
        middleware=[request_id_middleware],
        exception_handlers=EXCEPTION_HANDLERS,
        openapi_config=OpenAPIConfig(
            title="d6 bridge",
            version=__version__,
            description="Signed webhooks for the d6 Integrate API. `/v1/*` needs `Authorization: Bearer`.",
            components=Components(security_schemes=SECURITY_SCHEMES),
            path=SCHEMA_PATH,
            render_plugins=render_plugins(),  # Swagger UI served whole by the bridge (docs.py)
            operation_id_creator=operation_id,
            webhooks=webhooks(),  # one per event type, from the events' own definitions (event_types.py)
        ),
        request_max_body_size=MAX_REQUEST_BODY_BYTES,
        plugins=[StrictStructSchemaPlugin(), MetaSchemaPlugin()],
        logging_config=None,  # logging is configured once, at start (bridge/logs.py)
        debug=False,
    )
