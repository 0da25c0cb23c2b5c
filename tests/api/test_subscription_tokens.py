"""Subscription tokens (docs/api.md#subscription-tokens) on the whole API as `create_app` wires it, on the
test Redis: made, listed and revoked by the admin; shown once and stored as a digest; a token reaches its own
subscription's events, cut by the subscription's `fields` and `redact`, and the records within its scope,
cut as its snapshots are, and nothing else (403); a revoked token is a 401; no token string ever reaches a
log, an error or a listing."""

from __future__ import annotations

import hashlib
import io
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis
import structlog
from litestar import Controller, get, post
from litestar.params import FromPath

from bridge.api.auth import admin_guard, subscription_guard
from bridge.api.wiring import build_api
from bridge.app import Services, create_app
from bridge.events.envelope import Event
from bridge.logs import configure_logging
from bridge.settings import Settings, secrets_of
from bridge.store.codec import as_bytes
from bridge.testing.settings import TOKEN, bridge_settings
from tests.sync.helpers import poll

READER = "reader-token-abcdefghijklmnop"
SCHOOL, OTHER_SCHOOL = 1000, 2000
REACH = "subscription token reaches only"


def learners(grade: str = "4") -> list[dict[str, Any]]:
    return [
        {"learner_id": n, "first_name": f"Learner{n}", "surname": f"Surname{n}", "grade": grade}
        for n in (1, 2, 3)
    ]


def debtors() -> list[dict[str, Any]]:
    return [{"accountable_person_id": n, "name": f"Debtor{n}", "balance": n * 10} for n in (1, 2)]


@dataclass
class Bridge:
    services: Services
    client: Callable[[str], httpx.AsyncClient]
    created: dict[int, Event]
    """learner.created of learner 1 in each school, by school id."""
    updated: Event
    """learner.updated of learner 1 in `SCHOOL` (grade 4 -> 5)."""

    @property
    def admin(self) -> httpx.AsyncClient:
        return self.client(TOKEN)

    async def subscription(self, **fields: Any) -> str:
        answer = await self.admin.post("/v1/subscriptions", json={"url": "http://127.0.0.1:9/hook", **fields})
        assert answer.status_code == 201, answer.text
        return str(answer.json()["id"])

    async def token(self, subscription_id: str) -> str:
        answer = await self.admin.post(f"/v1/subscriptions/{subscription_id}/tokens")
        assert answer.status_code == 201, answer.text
        return str(answer.json()["token"])


@pytest.fixture
def settings(redis_url: str) -> Settings:
    return bridge_settings(redis_url, "http://127.0.0.1:9/api", BRIDGE_READONLY_TOKEN=READER)


@pytest.fixture
async def bridge(redis: aioredis.Redis, settings: Settings) -> AsyncIterator[Bridge]:
    """The API of a bridge whose store holds two schools' learners (and one's debtors), their events
    published; nothing runs in the background (no poll reaches d6)."""
    services = Services.build(settings, redis=redis)
    created: dict[int, Event] = {}
    for school_id in (SCHOOL, OTHER_SCHOOL):
        committed = await poll(services.snapshots, school_id, learners(), token=None)
        created[school_id] = next(e for e in committed.events if e.resource_id == "1")
    await poll(services.snapshots, SCHOOL, debtors(), token=None, resource="debtor")
    scan = learners()
    scan[0]["grade"] = "5"
    updated = (await poll(services.snapshots, SCHOOL, scan, token=None)).events[0]
    for school_id in (SCHOOL, OTHER_SCHOOL):
        await services.outbox.publish(school_id)
    app = create_app(settings, services)
    clients: dict[str, httpx.AsyncClient] = {}

    def client(token: str) -> httpx.AsyncClient:
        if token not in clients:
            clients[token] = httpx.AsyncClient(
                transport=httpx.ASGITransport(app=app),
                base_url="http://bridge.test",
                headers={"Authorization": f"Bearer {token}"},
            )
        return clients[token]

    yield Bridge(services, client, created, updated)
    for made in clients.values():
        await made.aclose()
    await services.poller.aclose()
    await services.d6.aclose()


async def stored_values(redis: aioredis.Redis) -> list[bytes]:
    """Every key and every value (of strings and hashes) in the store."""
    out: list[bytes] = []
    async for key in redis.scan_iter():
        out.append(as_bytes(key))
        kind = await redis.type(key)
        if kind == b"hash":
            for field, value in (await redis.hgetall(key)).items():
                out += [as_bytes(field), as_bytes(value)]
        elif kind == b"string":
            out.append(as_bytes(await redis.get(key)))
    return out


async def test_the_admin_makes_lists_and_revokes_tokens_shown_once_and_stored_hashed(
    bridge: Bridge, redis: aioredis.Redis
) -> None:
    sid = await bridge.subscription()
    made = await bridge.admin.post(f"/v1/subscriptions/{sid}/tokens")
    assert made.status_code == 201
    body = made.json()
    assert set(body) == {"token_id", "token", "created_at"}
    token, token_id = body["token"], body["token_id"]
    assert token.startswith(f"d6bs_{sid}_{token_id}_") and token_id.startswith("tok_")

    listed = await bridge.admin.get(f"/v1/subscriptions/{sid}/tokens")
    assert listed.status_code == 200
    assert listed.json() == {
        "data": [{"token_id": token_id, "created_at": body["created_at"]}],
        "meta": {"limit": 50},
    }
    reader = await bridge.client(READER).get(f"/v1/subscriptions/{sid}/tokens")
    assert reader.status_code == 200 and token not in reader.text
    refused = await bridge.client(READER).post(f"/v1/subscriptions/{sid}/tokens")
    assert refused.status_code == 403 and "read-only" in refused.json()["detail"]

    # Stored as a SHA-256 digest: neither the token nor its secret is anywhere in the store.
    secret = token.removeprefix(f"d6bs_{sid}_{token_id}_")  # a secret may hold "_" too
    assert len(secret) == 43
    everything = b"\n".join(await stored_values(redis))
    assert token.encode() not in everything and secret.encode() not in everything
    assert hashlib.sha256(token.encode()).hexdigest().encode() in everything
    assert await redis.exists(bridge.services.keys.tokens(sid))

    mine = bridge.client(token)
    assert (await mine.get("/v1/whoami")).json() == {"role": "subscription", "subscription_id": sid}
    second = await bridge.token(sid)
    assert len((await bridge.admin.get(f"/v1/subscriptions/{sid}/tokens")).json()["data"]) == 2

    revoked = await bridge.admin.delete(f"/v1/subscriptions/{sid}/tokens/{token_id}")
    assert revoked.status_code == 204
    again = await mine.get("/v1/whoami")
    assert again.status_code == 401 and "revoked" in again.json()["detail"]
    assert (await bridge.client(second).get("/v1/whoami")).status_code == 200  # the other one still works
    gone = await bridge.admin.delete(f"/v1/subscriptions/{sid}/tokens/{token_id}")
    assert gone.status_code == 404 and token_id in gone.json()["detail"]
    # A token pasted where its id goes is not repeated back.
    pasted = await bridge.admin.delete(f"/v1/subscriptions/{sid}/tokens/{second}")
    assert pasted.status_code == 404 and second not in pasted.text
    for method in ("GET", "POST"):
        unknown = await bridge.admin.request(method, "/v1/subscriptions/sub_nope/tokens")
        assert unknown.status_code == 404 and "sub_nope" in unknown.json()["detail"]

    # A forged token (a real subscription and token id, another secret) and a made-up one: 401.
    forged = second[: -len(secret)] + "A" * len(secret)
    assert (await bridge.client(forged).get("/v1/whoami")).status_code == 401
    assert (await bridge.client("d6bs_nonsense").get("/v1/whoami")).status_code == 401

    # Deleting the subscription takes its tokens with it.
    assert (await bridge.admin.delete(f"/v1/subscriptions/{sid}")).status_code == 204
    assert not await redis.exists(bridge.services.keys.tokens(sid))
    assert (await bridge.client(second).get("/v1/whoami")).status_code == 401


async def test_a_webhook_subscription_with_no_options_gets_its_events_whole(bridge: Bridge) -> None:
    sid = await bridge.subscription()
    mine = bridge.client(await bridge.token(sid))
    event = bridge.created[SCHOOL]
    answer = await mine.get(f"/v1/subscriptions/{sid}/events/{event.id}")
    assert answer.status_code == 200
    assert answer.json() == (await bridge.admin.get(f"/v1/events/{event.id}")).json()["event"]


async def test_its_own_event_comes_cut_by_fields_redact_and_payload(bridge: Bridge) -> None:
    cut = await bridge.subscription(
        school_ids=[SCHOOL], fields={"learner": ["first_name", "grade"]}, redact=["first_name"]
    )
    thin = await bridge.subscription(event_types=["learner.updated"], payload="thin", redact=["surname"])
    cut_token, thin_token = await bridge.token(cut), await bridge.token(thin)
    created, updated = bridge.created[SCHOOL], bridge.updated

    answer = await bridge.client(cut_token).get(f"/v1/subscriptions/{cut}/events/{created.id}")
    assert answer.status_code == 200, answer.text
    event = answer.json()
    assert (event["id"], event["type"], event["sequence"]) == (
        created.id,
        "learner.created",
        created.sequence,
    )
    assert event["data"] == {"learner_id": 1, "first_name": "****ner1", "grade": "4"}  # no surname, masked
    changes = (await bridge.client(cut_token).get(f"/v1/subscriptions/{cut}/events/{updated.id}")).json()
    assert changes["changes"] == {"grade": {"old": "4", "new": "5"}}
    # The admin reading it through this route gets the same cut: the event as this subscription gets it.
    assert (await bridge.admin.get(f"/v1/subscriptions/{cut}/events/{created.id}")).json() == event

    # A thin subscription reads here what its webhook left out.
    answer = await bridge.client(thin_token).get(f"/v1/subscriptions/{thin}/events/{updated.id}")
    assert answer.status_code == 200
    assert answer.json()["data"] == {**learners("5")[0], "surname": "****ame1"}
    assert answer.json()["changes"] == {"grade": {"old": "4", "new": "5"}}

    # Not one of its events (another school, another type), unknown, or another subscription's: 404 / 403.
    other_school = bridge.created[OTHER_SCHOOL].id
    for sid, token, event_id in (
        (cut, cut_token, other_school),
        (thin, thin_token, created.id),
        (cut, cut_token, "evt_01JD7R8Q0E6W5ZJ2N9W1T8C4XK"),
        (cut, cut_token, "nonsense"),
    ):
        missing = await bridge.client(token).get(f"/v1/subscriptions/{sid}/events/{event_id}")
        assert missing.status_code == 404, (sid, event_id)
    assert (
        "school_ids"
        in (await bridge.client(cut_token).get(f"/v1/subscriptions/{cut}/events/{other_school}")).json()[
            "detail"
        ]
    )
    crossed = await bridge.client(cut_token).get(f"/v1/subscriptions/{thin}/events/{updated.id}")
    assert crossed.status_code == 403 and cut in crossed.json()["detail"]
    assert (
        await bridge.client(READER).get(f"/v1/subscriptions/{cut}/events/{created.id}")
    ).status_code == 200

    # An erased event answers as the log holds it, not cut again.
    erased = await bridge.admin.post(
        "/v1/erasure", json={"school_id": SCHOOL, "resource": "learner", "record_id": "1"}
    )
    assert erased.status_code == 202, erased.text
    answer = await bridge.client(cut_token).get(f"/v1/subscriptions/{cut}/events/{created.id}")
    assert answer.status_code == 200 and answer.json()["data"] == {"erased": True}


async def test_records_within_its_scope_come_cut_and_the_rest_is_refused(bridge: Bridge) -> None:
    scoped = await bridge.subscription(
        school_ids=[SCHOOL], event_types=["learner.updated"], fields={"learner": ["grade"]}, redact=["grade"]
    )
    everything = await bridge.subscription()
    mine, wide = bridge.client(await bridge.token(scoped)), bridge.client(await bridge.token(everything))
    path = f"/v1/schools/{SCHOOL}/records/learners"

    rows = (await mine.get(path)).json()["data"]
    assert [row["data"] for row in rows] == [{"learner_id": n, "grade": "*"} for n in (1, 2, 3)]
    admin = (await bridge.admin.get(path)).json()
    assert admin["data"][1]["data"] == learners()[1]  # the admin's rows are as they were: every field
    assert (await wide.get(path)).json() == admin
    assert (await bridge.client(READER).get(path)).json() == admin

    outside_school = await mine.get(f"/v1/schools/{OTHER_SCHOOL}/records/learners")
    assert outside_school.status_code == 403 and f"school {OTHER_SCHOOL}" in outside_school.json()["detail"]
    outside_resource = await mine.get(f"/v1/schools/{SCHOOL}/records/debtors")
    assert outside_resource.status_code == 403 and "debtors" in outside_resource.json()["detail"]
    assert (await wide.get(f"/v1/schools/{SCHOOL}/records/debtors")).status_code == 200
    assert (await mine.get(f"/v1/schools/{SCHOOL}/records/nothing")).status_code == 404
    # A thin subscription's rows are cut as its snapshots are: ids and sequences, no data.
    thin = bridge.client(await bridge.token(await bridge.subscription(payload="thin")))
    assert [row["data"] for row in (await thin.get(path)).json()["data"]] == [{}, {}, {}]


async def test_a_token_reaches_nothing_else(bridge: Bridge) -> None:
    sid, other = await bridge.subscription(), await bridge.subscription()
    mine = bridge.client(await bridge.token(sid))
    event_id = bridge.created[SCHOOL].id
    routes: list[tuple[str, str, Any]] = [
        ("GET", "/v1/subscriptions", None),
        ("POST", "/v1/subscriptions", {"url": "http://127.0.0.1:9/x"}),
        ("GET", f"/v1/subscriptions/{sid}", None),
        ("PATCH", f"/v1/subscriptions/{sid}", {"enabled": False}),
        ("DELETE", f"/v1/subscriptions/{sid}", None),
        ("POST", f"/v1/subscriptions/{sid}/rotate-secret", None),
        ("POST", f"/v1/subscriptions/{sid}/test", None),
        ("GET", f"/v1/subscriptions/{sid}/stats", None),
        ("GET", f"/v1/subscriptions/{sid}/deliveries", None),
        ("GET", f"/v1/subscriptions/{sid}/tokens", None),
        ("POST", f"/v1/subscriptions/{sid}/tokens", None),
        ("GET", f"/v1/subscriptions/{other}", None),
        ("GET", "/v1/dead-letters", None),
        ("GET", "/v1/events", None),
        ("GET", f"/v1/events/{event_id}", None),
        ("GET", "/v1/event-types", None),
        ("GET", "/v1/schools", None),
        ("POST", f"/v1/schools/{SCHOOL}/poll", None),
        ("POST", "/v1/erasure", {"school_id": SCHOOL, "resource": "learner", "record_id": "1"}),
    ]
    for method, path, body in routes:
        answer = await mine.request(method, path, json=body)
        assert answer.status_code == 403, (method, path, answer.text)
        assert REACH in answer.json()["detail"], (method, path)
    crossed = await mine.get(f"/v1/subscriptions/{other}/events/{event_id}")
    assert crossed.status_code == 403 and "reaches nothing of another" in crossed.json()["detail"]
    assert (await bridge.admin.get(f"/v1/subscriptions/{sid}")).json()["enabled"] is True  # nothing changed
    assert (await mine.get("/v1/whoami")).status_code == 200
    assert (await mine.get(f"/v1/subscriptions/{sid}/events/{event_id}")).status_code == 200


async def test_no_token_string_reaches_a_log_or_an_error(bridge: Bridge, settings: Settings) -> None:
    stream = io.StringIO()
    configure_logging(level="debug", fmt="json", secrets=secrets_of(settings), stream=stream)
    sid = await bridge.subscription()
    made = (await bridge.admin.post(f"/v1/subscriptions/{sid}/tokens")).json()
    token = made["token"]
    mine = bridge.client(token)
    answers = [
        await mine.get("/v1/whoami"),
        await mine.get("/v1/subscriptions"),
        await mine.get(f"/v1/subscriptions/{sid}/events/evt_01JD7R8Q0E6W5ZJ2N9W1T8C4XK"),
        await mine.get(f"/v1/schools/{SCHOOL}/records/nothing"),
        await bridge.admin.get(f"/v1/subscriptions/{sid}/tokens"),
        await bridge.admin.delete(f"/v1/subscriptions/{sid}/tokens/{token}"),
        await bridge.admin.delete(f"/v1/subscriptions/{sid}/tokens/{made['token_id']}"),
        await mine.get("/v1/whoami"),  # revoked: 401
        await mine.get(f"/v1/subscriptions/{sid}/events/{token}"),
    ]
    assert [a.status_code for a in answers] == [200, 403, 404, 404, 200, 404, 204, 401, 401]
    for answer in answers:
        assert token not in answer.text
    # Whatever prints it, the log does not: a header dump, an exception message, a URL.
    logger = structlog.get_logger("test")
    logger.warning("header dump", headers={"authorization": f"Bearer {token}"}, note=f"got {token} here")
    logger.warning("request failed", error=RuntimeError(f"bad {token}"), url=f"/x?t={token}")
    text = stream.getvalue()
    assert "subscription token made" in text and "subscription token revoked" in text
    assert token not in text and token.removeprefix(f"d6bs_{sid}_{made['token_id']}_") not in text


class OneSubscription(Controller):
    """Routes of one subscription under a controller guarded by `admin_guard`, as the resync route is: with
    `subscription_guard` on the handler, the subscription's own token passes there alone."""

    path = "/v1/subscriptions"
    guards = [admin_guard]

    @post("/{subscription_id:str}/act", guards=[subscription_guard])
    async def act(self, subscription_id: FromPath[str]) -> dict[str, str]:
        return {"acted": subscription_id}

    @get("/{subscription_id:str}/other")
    async def other(self, subscription_id: FromPath[str]) -> dict[str, str]:
        return {"read": subscription_id}


async def test_subscription_guard_opens_a_route_of_an_admin_guarded_controller(
    bridge: Bridge, settings: Settings
) -> None:
    sid, other = await bridge.subscription(), await bridge.subscription()
    token = await bridge.token(sid)
    app = build_api(settings, [OneSubscription], {}, tokens=bridge.services.tokens)

    async def call(bearer: str, method: str, path: str) -> httpx.Response:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
            return await client.request(method, path, headers={"Authorization": f"Bearer {bearer}"})

    assert (await call(token, "POST", f"/v1/subscriptions/{sid}/act")).json() == {"acted": sid}
    assert (await call(token, "POST", f"/v1/subscriptions/{other}/act")).status_code == 403
    assert (await call(token, "GET", f"/v1/subscriptions/{sid}/other")).status_code == 403
    assert (await call(TOKEN, "POST", f"/v1/subscriptions/{other}/act")).status_code == 201
    reader = await call(READER, "POST", f"/v1/subscriptions/{sid}/act")
    assert reader.status_code == 403 and "read-only" in reader.json()["detail"]
    assert (await call(READER, "GET", f"/v1/subscriptions/{sid}/other")).status_code == 200
