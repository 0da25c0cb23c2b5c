"""Delivery history and repair over HTTP: attempt log pages, replay, redeliver, dead letters."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator, Callable

import httpx
import pytest

from bridge.testing.events import MemoryEventSource, make_event
from bridge.testing.receivers import Answer, Received, Receiver
from bridge.testing.settings import fast_settings
from bridge.testing.waiting import wait_for
from tests.delivery.api_app import api_client, build_app
from tests.delivery.parts import DeliveryParts

Receivers = Callable[..., tuple[Receiver, str]]


def rfc3339(moment: float) -> str:
    return dt.datetime.fromtimestamp(moment, dt.UTC).isoformat().replace("+00:00", "Z")


@pytest.fixture
def source() -> MemoryEventSource:
    return MemoryEventSource()


@pytest.fixture
async def dispatcher(
    dispatcher_factory: Callable[..., DeliveryParts], source: MemoryEventSource
) -> DeliveryParts:
    return dispatcher_factory(fast_settings(retry_schedule=(0.05,)), events=source)


@pytest.fixture
async def client(dispatcher: DeliveryParts) -> AsyncIterator[httpx.AsyncClient]:
    async with api_client(build_app(dispatcher)) as test_client:
        yield test_client


async def test_attempt_log_is_paginated_newest_first(
    client: httpx.AsyncClient, dispatcher: DeliveryParts, receiver_factory: Receivers
) -> None:
    receiver, url = receiver_factory()
    sid = (await client.post("/v1/subscriptions", json={"url": url})).json()["id"]
    events = [make_event(1, n) for n in range(1, 6)]
    await dispatcher.fan_out(events)
    await dispatcher.start()
    await wait_for(lambda: len(receiver.received) == 5)

    async def logged() -> bool:  # an attempt is logged once its outcome is written, after the answer
        page = (await client.get(f"/v1/subscriptions/{sid}/deliveries", params={"limit": 10})).json()
        return len(page["data"]) == 5

    await wait_for(logged, what="every attempt in the log")
    seen: list[str] = []
    cursor = None
    for _ in range(5):
        params: dict[str, str | int] = {"limit": 2}
        if cursor:
            params["cursor"] = cursor
        page = (await client.get(f"/v1/subscriptions/{sid}/deliveries", params=params)).json()
        seen += [item["event_id"] for item in page["data"]]
        cursor = page["meta"].get("next_cursor")
        if cursor is None:
            break
    assert seen == [e.event_id for e in reversed(events)]
    bad = await client.get(f"/v1/subscriptions/{sid}/deliveries", params={"cursor": "abc"})
    assert bad.status_code == 400 and "cursor" in bad.json()["detail"]
    bad = await client.get(f"/v1/subscriptions/{sid}/deliveries", params={"limit": 0})
    assert bad.status_code == 400
    assert (await client.get("/v1/subscriptions/sub_nope/deliveries")).status_code == 404


async def test_an_attempt_shows_the_headers_its_request_had(
    client: httpx.AsyncClient, dispatcher: DeliveryParts, receiver_factory: Receivers
) -> None:
    """All but the signature (not kept) as the subscriber received them, the timestamp included."""
    receiver, url = receiver_factory()
    sid = (await client.post("/v1/subscriptions", json={"url": url})).json()["id"]
    event = make_event(1, 1)
    await dispatcher.fan_out([event])
    await dispatcher.start()
    await wait_for(lambda: len(receiver.received) == 1)
    got = {k.lower(): v for k, v in receiver.received[0].headers.items()}

    async def logged() -> list[dict[str, object]]:
        rows = (await client.get(f"/v1/subscriptions/{sid}/deliveries")).json()["data"]
        return list(rows)

    await wait_for(logged, what="the attempt logged")
    (attempt,) = await logged()
    shown = attempt["request_headers"]
    assert shown["webhook-signature"] == "v1,[masked]"
    for name in ("webhook-id", "webhook-timestamp", "content-type", "user-agent"):
        assert shown[name] == got[name], name


async def test_replay_window(
    client: httpx.AsyncClient,
    dispatcher: DeliveryParts,
    source: MemoryEventSource,
    receiver_factory: Receivers,
) -> None:
    receiver, url = receiver_factory()
    sid = (await client.post("/v1/subscriptions", json={"url": url, "event_types": ["learner.*"]})).json()[
        "id"
    ]
    base = 1_790_000_000.0
    source.events = [
        make_event(1, 1, at=base),
        make_event(1, 2, at=base + 60),
        make_event(1, 3, "debtor.updated", at=base + 120),  # filtered out
        make_event(1, 4, at=base + 180),
        make_event(1, 5, at=base + 600),  # after the window
    ]
    await dispatcher.start()
    response = await client.post(
        f"/v1/subscriptions/{sid}/replay",
        json={"since": rfc3339(base + 30), "until": rfc3339(base + 300)},
    )
    assert response.status_code == 202, response.text
    assert response.json()["queued"] == 2
    await wait_for(lambda: len(receiver.received) == 2)
    assert [b["sequence"] for b in receiver.bodies()] == [2, 4]

    bad = await client.post(f"/v1/subscriptions/{sid}/replay", json={"until": rfc3339(base)})
    assert bad.status_code == 400 and "since" in bad.json()["detail"]
    bad = await client.post(f"/v1/subscriptions/{sid}/replay", json={"since": "yesterday"})
    assert bad.status_code == 400 and "since" in bad.json()["detail"]
    bad = await client.post(
        f"/v1/subscriptions/{sid}/replay", json={"since": rfc3339(base), "until": rfc3339(base - 1)}
    )
    assert bad.status_code == 400 and "until" in bad.json()["detail"]


async def test_replay_only_failed_retries_dead_letters_of_the_window(
    client: httpx.AsyncClient,
    dispatcher: DeliveryParts,
    source: MemoryEventSource,
    receiver_factory: Receivers,
) -> None:
    healthy = False

    def script(request: Received, _n: int) -> Answer:
        return Answer() if healthy or request.json["sequence"] != 2 else Answer(status=500)

    receiver, url = receiver_factory(script)
    sid = (await client.post("/v1/subscriptions", json={"url": url})).json()["id"]
    events = [make_event(1, n) for n in (1, 2, 3)]
    source.events = events
    await dispatcher.fan_out(events)
    await dispatcher.start()
    await wait_for(lambda: len(receiver.received) == 4)  # 1, 2, 2 (retry), 3
    dead = await _wait_dead(client, 1)
    assert dead[0]["event_id"] == events[1].event_id and dead[0]["last_status"] == 500
    healthy = True
    response = await client.post(
        f"/v1/subscriptions/{sid}/replay",
        json={"since": rfc3339(events[0].timestamp - 1), "only_failed": True},
    )
    assert response.json()["queued"] == 1
    await wait_for(lambda: len(receiver.received) == 5)
    assert receiver.ids()[-1] == events[1].event_id
    assert (await client.get("/v1/dead-letters")).json()["data"] == []


async def _wait_dead(client: httpx.AsyncClient, count: int) -> list[dict[str, object]]:
    items: list[dict[str, object]] = []

    async def ready() -> bool:
        nonlocal items
        items = (await client.get("/v1/dead-letters")).json()["data"]
        return len(items) == count

    await wait_for(ready, what=f"{count} dead letters")
    return items


async def test_redeliver_to_all_or_one(
    client: httpx.AsyncClient,
    dispatcher: DeliveryParts,
    source: MemoryEventSource,
    receiver_factory: Receivers,
) -> None:
    first, first_url = receiver_factory()
    second, second_url = receiver_factory()
    a = (await client.post("/v1/subscriptions", json={"url": first_url})).json()["id"]
    (await client.post("/v1/subscriptions", json={"url": second_url, "school_ids": [9]})).json()["id"]
    event = make_event(1, 1)
    source.events = [event]
    await dispatcher.start()
    everyone = await client.post(f"/v1/events/{event.event_id}/redeliver")
    assert everyone.status_code == 202, everyone.text
    assert everyone.json()["subscription_ids"] == [a]  # the other one filters school 9 only
    one = await client.post(f"/v1/events/{event.event_id}/redeliver", json={"subscription_id": a})
    assert one.json()["subscription_ids"] == [a]
    await wait_for(lambda: len(first.received) == 2)
    assert first.ids() == [event.event_id] * 2 and second.received == []
    missing = await client.post("/v1/events/evt_nope/redeliver")
    assert missing.status_code == 404 and "evt_nope" in missing.json()["detail"]
    missing = await client.post(f"/v1/events/{event.event_id}/redeliver", json={"subscription_id": "sub_x"})
    assert missing.status_code == 404


async def test_dead_letters_list_and_retry(
    client: httpx.AsyncClient, dispatcher: DeliveryParts, receiver_factory: Receivers
) -> None:
    healthy = False
    receiver, url = receiver_factory(lambda _r, _n: Answer() if healthy else Answer(status=502))
    a = (await client.post("/v1/subscriptions", json={"url": url, "school_ids": [1]})).json()["id"]
    b = (await client.post("/v1/subscriptions", json={"url": url, "school_ids": [2]})).json()["id"]
    events = [make_event(1, 1), make_event(2, 1), make_event(2, 2)]
    await dispatcher.fan_out(events)
    await dispatcher.start()
    dead = await _wait_dead(client, 3)
    assert {d["subscription_id"] for d in dead} == {a, b}
    only_b = (await client.get("/v1/dead-letters", params={"subscription_id": b})).json()["data"]
    assert len(only_b) == 2
    page = (await client.get("/v1/dead-letters", params={"limit": 2})).json()
    assert len(page["data"]) == 2 and page["meta"] == {"limit": 2, "next_cursor": page["meta"]["next_cursor"]}
    rest = (
        await client.get("/v1/dead-letters", params={"limit": 2, "cursor": page["meta"]["next_cursor"]})
    ).json()
    assert {d["id"] for d in page["data"] + rest["data"]} == {d["id"] for d in dead}

    healthy = True
    count = len(receiver.received)
    retried = await client.post("/v1/dead-letters/retry", json={"ids": [dead[0]["id"]]})
    assert retried.status_code == 202 and retried.json()["requeued"] == [dead[0]["id"]]
    await wait_for(lambda: len(receiver.received) == count + 1)
    rest_retry = await client.post("/v1/dead-letters/retry", json={"subscription_id": b})
    assert len(rest_retry.json()["requeued"]) == len(only_b) - (1 if dead[0]["subscription_id"] == b else 0)
    everything = await client.post("/v1/dead-letters/retry")
    assert everything.status_code == 202
    await _wait_dead(client, 0)
    await wait_for(lambda: len(receiver.received) == count + 3)
    bad = await client.post("/v1/dead-letters/retry", json={"ids": "all"})
    assert bad.status_code == 400 and "ids" in bad.json()["detail"]
    unknown = await client.post("/v1/dead-letters/retry", json={"subscription_id": "sub_x"})
    assert unknown.status_code == 404
