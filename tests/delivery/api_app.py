"""A minimal app around the delivery controllers, wired as the real app will be."""

from __future__ import annotations

from dataclasses import dataclass

import httpx
from litestar import Litestar
from litestar.datastructures import State

from bridge.api.deliveries import DeliveriesController
from bridge.api.subscriptions import SubscriptionController
from bridge.delivery.dispatcher import Dispatcher
from bridge.delivery.store import SubscriptionStore
from bridge.settings import Settings

TOKEN = "test-admin-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@dataclass
class Services:
    settings: Settings
    subscriptions: SubscriptionStore
    dispatcher: Dispatcher


def build_app(dispatcher: Dispatcher) -> Litestar:
    services = Services(settings=dispatcher.settings, subscriptions=dispatcher.store, dispatcher=dispatcher)
    return Litestar(
        [SubscriptionController, DeliveriesController],
        state=State({"settings": dispatcher.settings, "services": services}),
    )


def api_client(app: Litestar) -> httpx.AsyncClient:
    """An HTTP client on the app in this event loop (Litestar's test client runs it in another thread)."""
    transport = httpx.ASGITransport(app=app)
    return httpx.AsyncClient(transport=transport, base_url="http://bridge.test", headers=AUTH)
