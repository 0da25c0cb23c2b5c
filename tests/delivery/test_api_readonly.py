"""`BRIDGE_READONLY_TOKEN`: it reads every `/v1` list and item, changes nothing (403 with a detail), and
`/v1/whoami` tells the console which token it holds; the admin token is unchanged, and neither token is
ever logged."""

from __future__ import annotations

import io
import json
from collections.abc import AsyncIterator, Callable

import httpx
import pytest
import structlog

from bridge.api.auth import whoami
from bridge.api.deliveries import DeliveriesController
from bridge.api.subscriptions import SubscriptionController
from bridge.api.wiring import build_api, parts
from bridge.errors import SettingsError
from bridge.logs import configure_logging
from bridge.settings import load_settings, secrets_of
from bridge.testing.settings import TOKEN, fast_settings
from tests.delivery.parts import DeliveryParts

READER = "reader-token-abcdefghijklmnop"


@pytest.fixture
async def app_client(
    dispatcher_factory: Callable[..., DeliveryParts],
) -> AsyncIterator[Callable[[str], httpx.AsyncClient]]:
    dispatcher = dispatcher_factory(fast_settings(readonly_token=READER))
    app = build_api(
        dispatcher.settings,
        [SubscriptionController, DeliveriesController, whoami],
        parts(subscriptions=dispatcher.store, deliveries=dispatcher.service),
    )
    clients: list[httpx.AsyncClient] = []

    def client(token: str) -> httpx.AsyncClient:
        made = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app),
            base_url="http://bridge.test",
            headers={"Authorization": f"Bearer {token}"},
        )
        clients.append(made)
        return made

    yield client
    for made in clients:
        await made.aclose()


async def test_the_reader_reads_and_changes_nothing(app_client: Callable[[str], httpx.AsyncClient]) -> None:
    admin, reader = app_client(TOKEN), app_client(READER)
    assert (await admin.get("/v1/whoami")).json() == {"role": "admin"}
    assert (await reader.get("/v1/whoami")).json() == {"role": "readonly"}
    created = await admin.post("/v1/subscriptions", json={"url": "http://127.0.0.1:9/hook"})
    assert created.status_code == 201
    sid = created.json()["id"]

    for path in (
        "/v1/subscriptions",
        f"/v1/subscriptions/{sid}",
        f"/v1/subscriptions/{sid}/deliveries",
        "/v1/dead-letters",
    ):
        response = await reader.get(path)
        assert response.status_code == 200, (path, response.text)
        assert "whsec_" not in response.text

    changes = (
        ("POST", "/v1/subscriptions", {"url": "http://127.0.0.1:9/other"}),
        ("PATCH", f"/v1/subscriptions/{sid}", {"enabled": False}),
        ("DELETE", f"/v1/subscriptions/{sid}", None),
        ("POST", f"/v1/subscriptions/{sid}/rotate-secret", None),
        ("POST", f"/v1/subscriptions/{sid}/test", None),
        ("POST", f"/v1/subscriptions/{sid}/replay", {"since": "2026-01-01T00:00:00Z"}),
        ("POST", "/v1/dead-letters/retry", {}),
        ("POST", "/v1/events/evt_01M83VJ80KVKHKF9BY65FWS5HX/redeliver", None),
    )
    for method, path, body in changes:
        response = await reader.request(method, path, json=body)
        assert response.status_code == 403, (method, path, response.text)
        assert "read-only" in response.json()["detail"]
    after = (await admin.get(f"/v1/subscriptions/{sid}")).json()
    assert after["enabled"] is True and after["url"] == "http://127.0.0.1:9/hook"

    for wrong in ("", "Bearer", "Bearer nope", f"Basic {READER}"):
        response = await reader.get("/v1/whoami", headers={"Authorization": wrong})
        assert response.status_code == 401, wrong


async def test_without_a_reader_token_only_the_admin_token_works(
    dispatcher_factory: Callable[..., DeliveryParts],
) -> None:
    dispatcher = dispatcher_factory(fast_settings())
    app = build_api(dispatcher.settings, [whoami], {})
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
        assert (
            await client.get("/v1/whoami", headers={"Authorization": f"Bearer {TOKEN}"})
        ).status_code == 200
        assert (await client.get("/v1/whoami", headers={"Authorization": "Bearer "})).status_code == 401
        assert (
            await client.get("/v1/whoami", headers={"Authorization": f"Bearer {READER}"})
        ).status_code == 401


def test_the_reader_token_is_a_setting_that_must_differ_and_is_never_logged() -> None:
    env = {"BRIDGE_ADMIN_TOKEN": TOKEN, "BRIDGE_READONLY_TOKEN": READER}
    settings = load_settings(env, isatty=False)
    assert settings.readonly_token == READER
    with pytest.raises(SettingsError, match="BRIDGE_READONLY_TOKEN"):
        load_settings({"BRIDGE_ADMIN_TOKEN": TOKEN, "BRIDGE_READONLY_TOKEN": TOKEN}, isatty=False)
    stream = io.StringIO()
    configure_logging(level="debug", fmt="json", secrets=secrets_of(settings), stream=stream)
    structlog.get_logger("test").info("header dump", authorization=f"Bearer {READER}", note=f"x {READER} y")
    structlog.get_logger("test").info("admin", note=f"token {TOKEN}")
    text = stream.getvalue()
    assert READER not in text and TOKEN not in text
    assert all(json.loads(line) for line in text.splitlines())
