"""`/v1/subscriptions` over HTTP: CRUD, validation answers, rotation and the test event."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
from standardwebhooks.webhooks import Webhook

from bridge.testing.receivers import Answer, Receiver
from bridge.testing.settings import fast_settings
from tests.delivery.api_app import api_client, build_app
from tests.delivery.parts import DeliveryParts

Receivers = Callable[..., tuple[Receiver, str]]


@pytest.fixture
async def client(dispatcher_factory: Callable[..., DeliveryParts]) -> AsyncIterator[httpx.AsyncClient]:
    async with api_client(build_app(dispatcher_factory())) as test_client:
        yield test_client


@pytest.fixture
async def strict_client(dispatcher_factory: Callable[..., DeliveryParts]) -> AsyncIterator[httpx.AsyncClient]:
    app = build_app(dispatcher_factory(fast_settings(allow_private_urls=False)))
    async with api_client(app) as test_client:
        yield test_client


async def test_token_required(client: httpx.AsyncClient) -> None:
    response = await client.get("/v1/subscriptions", headers={"Authorization": "Bearer wrong"})
    assert response.status_code == 401
    response = await client.get("/v1/subscriptions", headers={"Authorization": ""})
    assert response.status_code == 401


async def test_crud_round_trip(client: httpx.AsyncClient) -> None:
    created = await client.post(
        "/v1/subscriptions",
        json={
            "url": "http://127.0.0.1:9/hook",
            "event_types": ["debtor.*", "learner.created"],
            "school_ids": [3, 1],
        },
    )
    assert created.status_code == 201, created.text
    body = created.json()
    assert body["id"].startswith("sub_") and body["secret"].startswith("whsec_")
    assert body["ordered"] is True and body["enabled"] is True
    assert body["event_types"] == ["debtor.*", "learner.created"] and body["school_ids"] == [1, 3]
    sid = body["id"]

    listed = (await client.get("/v1/subscriptions")).json()
    assert [s["id"] for s in listed["data"]] == [sid] and listed["meta"] == {"limit": 50}
    assert "secret" not in listed["data"][0]

    one = (await client.get(f"/v1/subscriptions/{sid}")).json()
    assert "secret" not in one and one["pending_deliveries"] == 0 and one["dead_letters"] == 0

    patched = await client.patch(
        f"/v1/subscriptions/{sid}",
        json={
            "description": "accounting",
            "school_ids": None,
            "enabled": False,
            "url": "http://127.0.0.1:10/x",
        },
    )
    assert patched.status_code == 200, patched.text
    changed = patched.json()
    assert changed["description"] == "accounting" and changed["school_ids"] is None
    assert changed["enabled"] is False and changed["disabled_reason"]
    assert changed["url"] == "http://127.0.0.1:10/x"
    assert changed["event_types"] == ["debtor.*", "learner.created"]  # untouched

    assert (await client.delete(f"/v1/subscriptions/{sid}")).status_code == 204
    missing = await client.get(f"/v1/subscriptions/{sid}")
    assert missing.status_code == 404 and sid in missing.json()["detail"]
    assert (await client.get("/v1/subscriptions")).json() == {"data": [], "meta": {"limit": 50}}


async def test_the_list_pages_by_id_with_a_cursor(client: httpx.AsyncClient) -> None:
    made = [
        (await client.post("/v1/subscriptions", json={"url": f"http://127.0.0.1:9/hook{n}"})).json()["id"]
        for n in range(5)
    ]
    seen: list[str] = []
    cursor: str | None = None
    for _ in range(5):
        page = (
            await client.get(
                "/v1/subscriptions", params={"limit": 2, **({"cursor": cursor} if cursor else {})}
            )
        ).json()
        assert page["meta"]["limit"] == 2 and len(page["data"]) <= 2
        seen += [s["id"] for s in page["data"]]
        cursor = page["meta"].get("next_cursor")
        if cursor is None:
            break
    assert seen == sorted(made)
    assert (await client.get("/v1/subscriptions", params={"limit": 0})).status_code == 400


@pytest.mark.parametrize(
    ("body", "words"),
    [
        ({"url": 5}, ["url", "Expected `str | null`, got `int`"]),
        ({}, ["url"]),
        ({"url": "http://127.0.0.1/x", "event_types": ["learner.updatd", "x.*"]}, ["learner.updatd", "x.*"]),
        ({"url": "http://127.0.0.1/x", "event_types": []}, ["event_types", "empty"]),
        ({"url": "http://127.0.0.1/x", "event_types": "debtor.*"}, ["event_types"]),
        ({"url": "http://127.0.0.1/x", "school_ids": [0]}, ["school_ids", "positive"]),
        ({"url": "http://127.0.0.1/x", "school_ids": ["a"]}, ["school_ids"]),
        ({"url": "http://127.0.0.1/x", "ordered": "yes"}, ["ordered"]),
        ({"url": "http://127.0.0.1/x", "colour": "red"}, ["colour"]),
        ({"url": "ftp://example.com/x"}, ["http://"]),
        ({"url": "http://" + "a" * 2050 + ".com/"}, ["2048"]),
        ([1, 2], ["object"]),
    ],
)
async def test_bad_create_bodies_are_400_with_a_useful_detail(
    client: httpx.AsyncClient, body: Any, words: list[str]
) -> None:
    response = await client.post("/v1/subscriptions", json=body)
    assert response.status_code == 400, response.text
    answer = response.json()
    assert answer["status_code"] == 400 and "extra" in answer
    for word in words:
        assert word in answer["detail"], answer


async def test_malformed_and_missing_bodies(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/v1/subscriptions", content=b"{not json", headers={"content-type": "application/json"}
    )
    assert response.status_code == 400 and "JSON" in response.json()["detail"]
    response = await client.post(
        "/v1/subscriptions", content=b"", headers={"content-type": "application/json"}
    )
    assert response.status_code == 400


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1/x",
        "http://10.0.0.1/x",
        "http://169.254.169.254/latest/meta-data",
        "http://[::1]/x",
        "http://[::ffff:127.0.0.1]/x",
        "http://localhost/x",
    ],
)
async def test_private_urls_refused_unless_allowed(strict_client: httpx.AsyncClient, url: str) -> None:
    response = await strict_client.post("/v1/subscriptions", json={"url": url})
    assert response.status_code == 400, response.text
    assert "non-public" in response.json()["detail"]
    assert response.json()["extra"]["field"] == "url"


async def test_patch_validation_and_unknown_ids(client: httpx.AsyncClient) -> None:
    sid = (await client.post("/v1/subscriptions", json={"url": "http://127.0.0.1/x"})).json()["id"]
    bad = await client.patch(f"/v1/subscriptions/{sid}", json={"enabled": "no"})
    assert bad.status_code == 400 and "enabled" in bad.json()["detail"]
    bad = await client.patch(f"/v1/subscriptions/{sid}", json={"event_types": ["nope"]})
    assert bad.status_code == 400 and "nope" in bad.json()["detail"]
    bad = await client.patch(f"/v1/subscriptions/{sid}", json={"ordered": False})
    assert bad.status_code == 400 and "ordered" in bad.json()["detail"]
    for method, path in [
        ("PATCH", "/v1/subscriptions/sub_nope"),
        ("DELETE", "/v1/subscriptions/sub_nope"),
        ("POST", "/v1/subscriptions/sub_nope/rotate-secret"),
        ("POST", "/v1/subscriptions/sub_nope/test"),
    ]:
        response = await client.request(method, path, json={} if method == "PATCH" else None)
        assert response.status_code == 404, (method, path, response.text)


async def test_rotate_secret_and_test_event(client: httpx.AsyncClient, receiver_factory: Receivers) -> None:
    receiver, url = receiver_factory()
    created = (await client.post("/v1/subscriptions", json={"url": url, "event_types": ["debtor.*"]})).json()
    rotated = await client.post(f"/v1/subscriptions/{created['id']}/rotate-secret")
    assert rotated.status_code == 200
    new = rotated.json()
    assert new["secret"] != created["secret"] and new["previous_secret_expires_at"]

    outcome = await client.post(f"/v1/subscriptions/{created['id']}/test")
    assert outcome.status_code == 200, outcome.text
    result = outcome.json()
    assert result["success"] is True and result["status_code"] == 200
    [request] = receiver.received
    assert request.json["type"] == "webhook.test" and request.json["id"] == result["event_id"]
    Webhook(created["secret"]).verify(request.body, request.headers)
    Webhook(new["secret"]).verify(request.body, request.headers)

    log = (await client.get(f"/v1/subscriptions/{created['id']}/deliveries")).json()
    assert log["data"][0]["event_id"] == result["event_id"]


async def test_test_event_reports_a_failure(client: httpx.AsyncClient, receiver_factory: Receivers) -> None:
    _, url = receiver_factory(lambda _r, _n: Answer(status=500, body=b"down for maintenance"))
    sid = (await client.post("/v1/subscriptions", json={"url": url})).json()["id"]
    result = (await client.post(f"/v1/subscriptions/{sid}/test")).json()
    assert result["success"] is False and result["status_code"] == 500
    assert result["response_body"] == "down for maintenance"
    assert result["subscription_disabled"] is False
    assert (await client.get(f"/v1/subscriptions/{sid}")).json()["enabled"] is True


async def test_test_event_answered_410_disables_the_subscription(
    client: httpx.AsyncClient, receiver_factory: Receivers
) -> None:
    _, url = receiver_factory(lambda _r, _n: Answer(status=410, body=b"gone"))
    sid = (await client.post("/v1/subscriptions", json={"url": url})).json()["id"]
    result = (await client.post(f"/v1/subscriptions/{sid}/test")).json()
    assert result["success"] is False and result["status_code"] == 410
    assert result["subscription_disabled"] is True
    subscription = (await client.get(f"/v1/subscriptions/{sid}")).json()
    assert subscription["enabled"] is False and "410" in subscription["disabled_reason"]

    enabled = await client.patch(f"/v1/subscriptions/{sid}", json={"enabled": True})
    assert enabled.json()["enabled"] is True and enabled.json()["disabled_reason"] is None


async def test_openapi_schema_describes_the_routes(dispatcher_factory: Callable[..., DeliveryParts]) -> None:
    schema = build_app(dispatcher_factory()).openapi_schema.to_schema()
    paths = schema["paths"]
    for path in (
        "/v1/subscriptions",
        "/v1/subscriptions/{subscription_id}",
        "/v1/subscriptions/{subscription_id}/rotate-secret",
        "/v1/subscriptions/{subscription_id}/test",
        "/v1/subscriptions/{subscription_id}/deliveries",
        "/v1/subscriptions/{subscription_id}/replay",
        "/v1/events/{event_id}/redeliver",
        "/v1/dead-letters",
        "/v1/dead-letters/retry",
    ):
        assert path in paths, path
    assert "url" in schema["components"]["schemas"]["SubscriptionCreate"]["properties"]


@pytest.mark.parametrize(
    ("body", "content_type", "status", "words"),
    [
        (b'{"url": "http://127.0.0.1:9/hook"}', "text/plain", 415, ["Content-Type: application/json"]),
        (b"url=http%3A%2F%2F127.0.0.1%3A9%2F", "application/x-www-form-urlencoded", 415, ["JSON"]),
        (b'{"url": "http://127.0.0.1:9/hook"}', "", 415, ["none given"]),
        (b'{"url": "\xff\xfe"}', "application/json", 400, ["UTF-8"]),
        (b'{"url": ' + b"[" * 5000 + b"]" * 5000 + b"}", "application/json", 400, ["nested"]),
        (b'{"url": "http://127.0.0.1:9/hook",', "application/json", 400, ["not valid JSON"]),
    ],
)
async def test_bodies_that_are_not_json_get_a_4xx_with_a_detail(
    client: httpx.AsyncClient, body: bytes, content_type: str, status: int, words: list[str]
) -> None:
    headers = {"content-type": content_type} if content_type else {}
    response = await client.post("/v1/subscriptions", content=body, headers=headers)
    assert response.status_code == status, response.text
    answer = response.json()
    assert answer["status_code"] == status
    for word in words:
        assert word in answer["detail"], answer


async def test_a_json_suffix_type_is_json(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/v1/subscriptions",
        content=b'{"url": "http://127.0.0.1:9/hook"}',
        headers={"content-type": "application/vnd.bridge+json; charset=utf-8"},
    )
    assert response.status_code == 201, response.text


def test_openapi_schema_documents_errors_auth_and_closed_bodies() -> None:
    from bridge.app import create_app
    from bridge.settings import load_settings

    settings = load_settings(
        {"BRIDGE_ADMIN_TOKEN": "t", "BRIDGE_D6_USERNAME": "u", "BRIDGE_D6_PASSWORD": "p"}
    )
    schema = create_app(settings).openapi_schema.to_schema()
    assert schema["components"]["securitySchemes"]["BearerToken"]["scheme"] == "bearer"
    create = schema["paths"]["/v1/subscriptions"]["post"]
    assert create["security"] == [{"BearerToken": []}]
    assert {"401", "413", "415", "503"} <= set(create["responses"])
    assert "404" in schema["paths"]["/v1/subscriptions/{subscription_id}"]["get"]["responses"]
    assert "404" in schema["paths"]["/v1/schools/{school_id}/poll"]["post"]["responses"]
    assert "security" not in schema["paths"]["/health/ready"]["get"]
    assert "503" in schema["paths"]["/health/ready"]["get"]["responses"]
    components = schema["components"]["schemas"]
    for name in ("SubscriptionCreate", "SubscriptionPatch", "ReplayRequest", "RetryRequest"):
        assert components[name]["additionalProperties"] is False, name
    assert "additionalProperties" not in components["SubscriptionView"]
