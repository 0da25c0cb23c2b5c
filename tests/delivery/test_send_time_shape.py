"""Every send follows the subscription as it is when sent (docs/delivery.md): its `fields`, `redact`,
`payload`, `event_types` and `school_ids`, on every path: the first send, a retry after a failure, a
retried dead letter, a replay (`only_failed` too), a redelivery and the test send. A subscription that
dropped an option gets the whole value again: the body is cut again from the logged envelope.

Through the API, on a real Redis, a real event log and a real receiver. Dead letters, replays and window
reads go in bounded chunks (`queue.RETRY_CHUNK`, `service.CHUNK`, `source.PAGE`): set small here, the
results are the same and no read takes more than a chunk.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import msgspec
import pytest
import redis.asyncio as aioredis
from standardwebhooks.webhooks import Webhook

from bridge.delivery import queue, service, source
from bridge.delivery.models import Delivery, OutgoingEvent, Subscription
from bridge.delivery.source import LogEventSource
from bridge.events.envelope import FieldChange, new_event
from bridge.events.ids import event_id_at
from bridge.events.log import EventLog
from bridge.events.outbox import Outbox
from bridge.store.keys import Keys
from bridge.store.scripts import Scripts
from bridge.sync.diff import PreviousSnapshot, diff
from bridge.sync.snapshot import SnapshotStore
from bridge.testing.receivers import Answer, Received, Receiver
from bridge.testing.settings import fast_settings
from bridge.testing.waiting import wait_for
from tests.delivery.api_app import api_client, build_app
from tests.delivery.parts import DeliveryParts

Receivers = Callable[..., tuple[Receiver, str]]
SCHOOL = 1000
KEYS = Keys(fast_settings().redis_prefix)
ID_NUMBER = "8001015009087"
DEBTOR: dict[str, Any] = {
    "accountable_person_id": 6,
    "first_name": "Vuyo",
    "last_name": "Mahlangu",
    "debtor_code": "1004",
    "email_address": "vmahlangu96@example.com",
    "id_number": ID_NUMBER,
    "employer": "Eskom",
}


class Switch:
    """A receiver's script: 500 until `healthy`, then 200."""

    def __init__(self) -> None:
        self.healthy = False

    def __call__(self, _request: Received, _number: int) -> Answer:
        return Answer() if self.healthy else Answer(status=500)


@pytest.fixture
def log(redis: aioredis.Redis) -> EventLog:
    return EventLog(redis, KEYS)


@pytest.fixture
def dispatcher(dispatcher_factory: Callable[..., DeliveryParts], log: EventLog) -> DeliveryParts:
    return dispatcher_factory(fast_settings(retry_schedule=(0.05,)), events=LogEventSource(log))


@pytest.fixture
async def client(dispatcher: DeliveryParts) -> AsyncIterator[httpx.AsyncClient]:
    async with api_client(build_app(dispatcher)) as test_client:
        yield test_client


async def logged(
    redis: aioredis.Redis, log: EventLog, *specs: tuple[str, dict[str, Any]]
) -> list[OutgoingEvent]:
    """Debtor events of (type, extra envelope fields) committed and published to the event log, as the
    detection side does; answers them as the log hands them to the dispatcher."""
    snapshots = SnapshotStore(redis, KEYS, Scripts(redis))
    version = (await snapshots.load(SCHOOL, "learner")).version
    result = msgspec.structs.replace(diff(PreviousSnapshot(hashes={}), [], "learner_id", {}), version=version)
    now = time.time()
    events = [
        msgspec.structs.replace(
            new_event(
                event_type,
                school_id=SCHOOL,
                resource="debtor",
                resource_id="6",
                data={**DEBTOR, **extra.get("data", {})},
                changes=extra.get("changes"),
                now=now,
            ),
            id=event_id_at(now + n / 1000),
        )
        for n, (event_type, extra) in enumerate(specs)
    ]
    committed = (await snapshots.commit(SCHOOL, "learner", result, events, token=None)).events
    await Outbox(redis, KEYS, Scripts(redis)).publish(SCHOOL)
    found = [await LogEventSource(log).get(event.id) for event in committed]
    assert all(found)
    return [event for event in found if event is not None]


async def subscribe(client: httpx.AsyncClient, url: str, **options: Any) -> dict[str, Any]:
    created = await client.post("/v1/subscriptions", json={"url": url, **options})
    assert created.status_code == 201, created.text
    return dict(created.json())


async def dead_letters(client: httpx.AsyncClient, count: int) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []

    async def ready() -> bool:
        nonlocal items
        items = (await client.get("/v1/dead-letters", params={"limit": 500})).json()["data"]
        return len(items) == count

    await wait_for(ready, what=f"{count} dead letters")
    return items


async def patch(client: httpx.AsyncClient, sid: str, **changes: Any) -> None:
    response = await client.patch(f"/v1/subscriptions/{sid}", json=changes)
    assert response.status_code == 200, response.text


def verified(receiver: Receiver, secret: str) -> list[dict[str, Any]]:
    return [Webhook(secret).verify(r.body, r.headers) for r in receiver.received]


def rfc3339(moment: float) -> str:
    return dt.datetime.fromtimestamp(moment, dt.UTC).isoformat().replace("+00:00", "Z")


async def retry_all(client: httpx.AsyncClient, sid: str) -> None:
    response = await client.post("/v1/dead-letters/retry", json={"subscription_id": sid})
    assert response.status_code == 202 and response.json()["requeued"], response.text


async def retry_by_id(client: httpx.AsyncClient, sid: str) -> None:
    ids = [d["id"] for d in (await client.get("/v1/dead-letters")).json()["data"]]
    response = await client.post("/v1/dead-letters/retry", json={"ids": ids})
    assert response.status_code == 202 and response.json()["requeued"] == ids, response.text


async def replay_failed(client: httpx.AsyncClient, sid: str) -> None:
    response = await client.post(
        f"/v1/subscriptions/{sid}/replay", json={"since": rfc3339(time.time() - 60), "only_failed": True}
    )
    assert response.status_code == 202 and response.json()["queued"] == 1, response.text


MASKED = "*********9087"
FULL = {**DEBTOR}
PATCHES: dict[str, tuple[dict[str, Any], dict[str, Any], dict[str, Any] | None]] = {
    # name: (options at creation, the PATCH after the delivery died, the `data` then received)
    "redact added": ({}, {"redact": ["id_number"]}, {**DEBTOR, "id_number": MASKED}),
    "fields narrowed": (
        {},
        {"fields": {"debtor": ["debtor_code"]}},
        {"accountable_person_id": 6, "debtor_code": "1004"},
    ),
    "payload thin": ({}, {"payload": "thin"}, None),
    "redact removed": ({"redact": ["id_number"]}, {"redact": None}, FULL),
    "fields widened": ({"fields": {"debtor": ["debtor_code"]}}, {"fields": None}, FULL),
    "thin made full": (
        {"payload": "thin", "redact": ["id_number"]},
        {"payload": "full", "redact": None},
        FULL,
    ),
}


@pytest.mark.parametrize("name", list(PATCHES))
async def test_a_retried_dead_letter_goes_as_the_subscription_is_now(
    name: str,
    client: httpx.AsyncClient,
    dispatcher: DeliveryParts,
    redis: aioredis.Redis,
    log: EventLog,
    receiver_factory: Receivers,
) -> None:
    created_with, changes, expected = PATCHES[name]
    switch = Switch()
    receiver, url = receiver_factory(switch)
    sub = await subscribe(client, url, **created_with)
    [event] = await logged(redis, log, ("debtor.created", {}))
    await dispatcher.fan_out([event])
    await dispatcher.start()
    await dead_letters(client, 1)
    failed = len(receiver.received)
    await patch(client, sub["id"], **changes)
    switch.healthy = True
    await retry_all(client, sub["id"])
    await wait_for(lambda: len(receiver.received) == failed + 1, what="the retried dead letter")
    body = verified(receiver, sub["secret"])[-1]
    assert body["id"] == event.event_id
    if expected is None:
        assert "data" not in body
    else:
        assert body["data"] == expected
    if expected is not FULL:
        assert ID_NUMBER.encode() not in receiver.received[-1].body


@pytest.mark.parametrize("how", [retry_all, retry_by_id, replay_failed])
async def test_every_way_of_retrying_a_dead_letter_masks_what_the_patch_says(
    how: Callable[[httpx.AsyncClient, str], Any],
    client: httpx.AsyncClient,
    dispatcher: DeliveryParts,
    redis: aioredis.Redis,
    log: EventLog,
    receiver_factory: Receivers,
) -> None:
    switch = Switch()
    receiver, url = receiver_factory(switch)
    sub = await subscribe(client, url)
    [event] = await logged(redis, log, ("debtor.created", {}))
    await dispatcher.fan_out([event])
    await dispatcher.start()
    await dead_letters(client, 1)
    failed = len(receiver.received)
    await patch(client, sub["id"], redact=["id_number"])
    switch.healthy = True
    await how(client, sub["id"])
    await wait_for(lambda: len(receiver.received) == failed + 1, what="the retried dead letter")
    assert ID_NUMBER.encode() not in receiver.received[-1].body
    assert verified(receiver, sub["secret"])[-1]["data"]["id_number"] == MASKED
    assert (await client.get("/v1/dead-letters")).json()["data"] == []


@pytest.mark.parametrize(
    "narrowed", [{"event_types": ["learner.*"]}, {"school_ids": [SCHOOL + 1]}], ids=["types", "schools"]
)
async def test_a_dead_letter_the_subscription_no_longer_matches_is_dropped_as_skipped(
    narrowed: dict[str, Any],
    client: httpx.AsyncClient,
    dispatcher: DeliveryParts,
    redis: aioredis.Redis,
    log: EventLog,
    receiver_factory: Receivers,
) -> None:
    switch = Switch()
    receiver, url = receiver_factory(switch)
    sub = await subscribe(client, url)
    [event] = await logged(redis, log, ("debtor.created", {}))
    await dispatcher.fan_out([event])
    await dispatcher.start()
    await dead_letters(client, 1)
    failed = len(receiver.received)
    await patch(client, sub["id"], **narrowed)
    switch.healthy = True
    await retry_all(client, sub["id"])

    async def skipped() -> bool:
        states = await dispatcher.service.states(event.event_id)
        return [s.state for s in states] == ["skipped"]

    await wait_for(skipped, what="the delivery recorded as skipped")
    assert len(receiver.received) == failed
    assert (await client.get("/v1/dead-letters")).json()["data"] == []
    attempts = (await client.get(f"/v1/subscriptions/{sub['id']}/deliveries")).json()["data"]
    assert attempts[0]["outcome"] == "skipped" and "retention" not in (attempts[0]["error"] or "")


async def test_an_update_outside_the_fields_now_is_not_sent_on_retry(
    client: httpx.AsyncClient,
    dispatcher: DeliveryParts,
    redis: aioredis.Redis,
    log: EventLog,
    receiver_factory: Receivers,
) -> None:
    switch = Switch()
    receiver, url = receiver_factory(switch)
    sub = await subscribe(client, url)
    change = {"employer": FieldChange(old="Sasol", new="Eskom")}
    [event] = await logged(redis, log, ("debtor.updated", {"changes": change}))
    await dispatcher.fan_out([event])
    await dispatcher.start()
    await dead_letters(client, 1)
    failed = len(receiver.received)
    await patch(client, sub["id"], fields={"debtor": ["email_address"]})
    switch.healthy = True
    await retry_all(client, sub["id"])

    async def skipped() -> bool:
        return [s.state for s in await dispatcher.service.states(event.event_id)] == ["skipped"]

    await wait_for(skipped, what="the update recorded as skipped")
    assert len(receiver.received) == failed


async def test_a_waiting_delivery_gets_back_what_a_patch_unmasks(
    client: httpx.AsyncClient,
    dispatcher: DeliveryParts,
    redis: aioredis.Redis,
    log: EventLog,
    receiver_factory: Receivers,
) -> None:
    """The first send and a redelivery, both queued masked while the subscription was disabled."""
    receiver, url = receiver_factory()
    sub = await subscribe(client, url, redact=["id_number"], payload="thin")
    await patch(client, sub["id"], enabled=False)
    [event] = await logged(redis, log, ("debtor.created", {}))
    await dispatcher.fan_out([event])
    await dispatcher.start()
    redone = await client.post(f"/v1/events/{event.event_id}/redeliver", json={"subscription_id": sub["id"]})
    assert redone.status_code == 202, redone.text
    await patch(client, sub["id"], redact=None, payload="full")
    await patch(client, sub["id"], enabled=True)
    await wait_for(lambda: len(receiver.received) == 2, what="the first send and the redelivery")
    assert [b["data"] for b in verified(receiver, sub["secret"])] == [FULL, FULL]


class CountingSource(LogEventSource):
    """The event log as the worker reads it, counting the envelopes read to cut a body again."""

    def __init__(self, log: EventLog) -> None:
        super().__init__(log)
        self.reads = 0

    async def get(self, event_id: str) -> OutgoingEvent | None:
        self.reads += 1
        return await super().get(event_id)


@pytest.mark.parametrize(
    "changes",
    [
        pytest.param([{"enabled": True}], id="enabled again"),
        pytest.param([{"description": "after the outage"}, {"enabled": True}], id="description"),
        pytest.param(["rotate", {"enabled": True}], id="secret rotated"),
        pytest.param([{"redact": ["id_number"]}, {"enabled": True}], id="redact added"),
    ],
)
async def test_a_backlog_is_cut_again_only_when_an_option_that_cuts_it_changed(
    changes: list[Any],
    dispatcher_factory: Callable[..., DeliveryParts],
    redis: aioredis.Redis,
    log: EventLog,
    receiver_factory: Receivers,
) -> None:
    """Deliveries queued while the subscription was disabled (an outage) go out as they were queued when it
    comes back, unless `event_types`, `school_ids`, `fields`, `redact` or `payload` changed meanwhile: then
    each is cut again from the logged envelope."""
    receiver, url = receiver_factory()
    source = CountingSource(log)
    parts = dispatcher_factory(fast_settings(), events=source)
    async with api_client(build_app(parts)) as api:
        sub = await subscribe(api, url)
        await patch(api, sub["id"], enabled=False)
        events = await logged(redis, log, ("debtor.created", {}), ("debtor.created", {}))
        await parts.fan_out(events)
        await parts.start()
        secret = sub["secret"]
        for change in changes:
            if change == "rotate":
                rotated = await api.post(f"/v1/subscriptions/{sub['id']}/rotate-secret")
                assert rotated.status_code == 200, rotated.text
                secret = rotated.json()["secret"]
            else:
                await patch(api, sub["id"], **change)
        await wait_for(lambda: len(receiver.received) == 2, what="the backlog")
    cut_again = "redact" in changes[0]
    assert source.reads == (2 if cut_again else 0)
    expected = {**DEBTOR, "id_number": MASKED} if cut_again else FULL
    assert [b["data"] for b in verified(receiver, secret)] == [expected, expected]


async def test_a_redelivery_named_to_a_subscription_still_goes_regardless_of_its_filters(
    client: httpx.AsyncClient,
    dispatcher: DeliveryParts,
    redis: aioredis.Redis,
    log: EventLog,
    receiver_factory: Receivers,
) -> None:
    receiver, url = receiver_factory()
    sub = await subscribe(client, url, school_ids=[SCHOOL + 1], redact=["id_number"])
    [event] = await logged(redis, log, ("debtor.created", {}))
    await dispatcher.start()
    redone = await client.post(f"/v1/events/{event.event_id}/redeliver", json={"subscription_id": sub["id"]})
    assert redone.json()["subscription_ids"] == [sub["id"]]
    await wait_for(lambda: len(receiver.received) == 1, what="the redelivery")
    assert verified(receiver, sub["secret"])[0]["data"]["id_number"] == MASKED


def test_a_delivery_stored_before_projected_at_was_kept_reads_as_cut_when_queued() -> None:
    old = {
        "id": "dlv_1",
        "subscription_id": "sub_1",
        "event_id": "evt_1",
        "event_type": "debtor.created",
        "school_id": SCHOOL,
        "sequence": 1,
        "event_timestamp": 10.0,
        "body": b"{}",
        "created_at": 20.0,
    }
    stored = msgspec.msgpack.decode(msgspec.msgpack.encode(old), type=Delivery)
    assert stored.projected_at is None and stored.shaped_at == 20.0
    assert msgspec.structs.replace(stored, projected_at=15.0).shaped_at == 15.0


def test_a_subscription_stored_before_reshaped_at_was_kept_reads_as_reshaped_when_last_updated() -> None:
    stored = {"id": "sub_1", "url": "https://example.com/hook", "secret": "whsec_x", "created_at": 10.0}
    old = msgspec.convert({**stored, "updated_at": 30.0}, Subscription)
    assert old.reshaped_at is None and old.shaped_at == 30.0
    assert msgspec.structs.replace(old, reshaped_at=20.0).shaped_at == 20.0


async def test_a_retry_after_a_failure_follows_a_patch_made_in_between(
    dispatcher_factory: Callable[..., DeliveryParts],
    redis: aioredis.Redis,
    log: EventLog,
    receiver_factory: Receivers,
) -> None:
    switch = Switch()
    receiver, url = receiver_factory(switch)
    slow = dispatcher_factory(fast_settings(retry_schedule=(1.0, 1.0)), events=LogEventSource(log))
    async with api_client(build_app(slow)) as api:
        sub = await subscribe(api, url, redact=["id_number"])
        [event] = await logged(redis, log, ("debtor.created", {}))
        await slow.fan_out([event])
        await slow.start()
        await wait_for(lambda: len(receiver.received) == 1, what="the first attempt")
        await patch(api, sub["id"], redact=None)
        switch.healthy = True
        await wait_for(lambda: len(receiver.received) == 2, what="the retry")
    assert [b["data"]["id_number"] for b in verified(receiver, sub["secret"])] == [MASKED, ID_NUMBER]


async def test_the_test_send_is_shaped_too(client: httpx.AsyncClient, receiver_factory: Receivers) -> None:
    receiver, url = receiver_factory()
    sub = await subscribe(client, url, payload="thin")
    answer = await client.post(f"/v1/subscriptions/{sub['id']}/test")
    assert answer.status_code == 200 and answer.json()["success"], answer.text
    await patch(client, sub["id"], payload="full", fields={"debtor": ["debtor_code"]})
    answer = await client.post(f"/v1/subscriptions/{sub['id']}/test")
    assert answer.json()["success"]
    thin, narrowed = verified(receiver, sub["secret"])
    assert thin["type"] == "webhook.test" and "data" not in thin
    assert narrowed["data"] == {"subscription_id": sub["id"]}  # `fields` names no `subscription`: ids alone


# -- bounded chunks -------------------------------------------------------------------------------------


class Reads:
    """The largest number of delivery records read at once (a spy on `DeliveryQueue.get`)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.largest = 0
        original = queue.DeliveryQueue.get

        async def get(this: queue.DeliveryQueue, sid: str, ids: list[str]) -> list[Delivery | None]:
            self.largest = max(self.largest, len(ids))
            return await original(this, sid, ids)

        monkeypatch.setattr(queue.DeliveryQueue, "get", get)


@pytest.mark.parametrize("only_failed", [False, True])
async def test_many_dead_letters_go_in_chunks_with_the_same_result(
    only_failed: bool,
    monkeypatch: pytest.MonkeyPatch,
    client: httpx.AsyncClient,
    dispatcher: DeliveryParts,
    redis: aioredis.Redis,
    log: EventLog,
    receiver_factory: Receivers,
) -> None:
    monkeypatch.setattr(queue, "RETRY_CHUNK", 3, raising=False)
    monkeypatch.setattr(service, "CHUNK", 4, raising=False)
    monkeypatch.setattr(source, "PAGE", 2)
    switch = Switch()
    receiver, url = receiver_factory(switch)
    sub = await subscribe(client, url)
    events = await logged(redis, log, *[("debtor.created", {})] * 11)
    await dispatcher.fan_out(events)
    await dispatcher.start()
    await dead_letters(client, 11)
    failed = len(receiver.received)
    switch.healthy = True
    reads = Reads(monkeypatch)
    if only_failed:
        await replay_failed_many(client, sub["id"], 11)
    else:
        response = await client.post("/v1/dead-letters/retry")
        assert len(response.json()["requeued"]) == 11
    await wait_for(lambda: len(receiver.received) == failed + 11, what="every dead letter sent again")
    assert receiver.ids()[failed:] == [e.event_id for e in events]  # in order: the school's lane
    assert (await client.get("/v1/dead-letters")).json()["data"] == []
    assert 0 < reads.largest <= 3


async def replay_failed_many(client: httpx.AsyncClient, sid: str, count: int) -> None:
    response = await client.post(
        f"/v1/subscriptions/{sid}/replay", json={"since": rfc3339(time.time() - 60), "only_failed": True}
    )
    assert response.status_code == 202 and response.json()["queued"] == count, response.text


async def test_a_window_is_read_a_page_at_a_time_oldest_first(
    monkeypatch: pytest.MonkeyPatch, redis: aioredis.Redis, log: EventLog
) -> None:
    monkeypatch.setattr(source, "PAGE", 3)
    events = await logged(redis, log, *[("debtor.created", {})] * 10)
    read: list[int] = []
    original = EventLog.raw

    async def raw(this: EventLog, ids: list[str]) -> list[bytes]:
        read.append(len(ids))
        return await original(this, ids)

    monkeypatch.setattr(EventLog, "raw", raw)
    window = LogEventSource(log).window(time.time() - 60, None)
    first = await anext(window)
    assert first.event_id == events[0].event_id and sum(read) <= 3  # streamed: not the whole window first
    rest = [event async for event in window]
    assert [first.event_id, *(e.event_id for e in rest)] == [e.event_id for e in events]
    assert max(read) <= 3
    middle = [e async for e in LogEventSource(log).window(events[2].timestamp, events[6].timestamp)]
    assert [e.event_id for e in middle] == [e.event_id for e in events[2:7]]
