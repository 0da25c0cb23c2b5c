"""The delivery controllers on test delivery parts, built by `build_api` as `create_app` does."""

from __future__ import annotations

import httpx
from litestar import Litestar

from bridge.api.deliveries import DeliveriesController
from bridge.api.subscriptions import SubscriptionController
from bridge.api.wiring import build_api, parts
from bridge.testing.settings import TOKEN
from tests.delivery.parts import DeliveryParts

AUTH = {"Authorization": f"Bearer {TOKEN}"}


def build_app(dispatcher: DeliveryParts) -> Litestar:
    return build_api(
        dispatcher.settings,
        [SubscriptionController, DeliveriesController],
        parts(subscriptions=dispatcher.store, deliveries=dispatcher.service),
    )


def api_client(app: Litestar) -> httpx.AsyncClient:
    """An HTTP client on the app in this event loop (Litestar's test client runs it in another thread)."""
    transport = httpx.ASGITransport(app=app)
    return httpx.AsyncClient(transport=transport, base_url="http://bridge.test", headers=AUTH)
