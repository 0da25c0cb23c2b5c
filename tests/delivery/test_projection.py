"""Per-subscription `fields`, `redact` and `payload` (docs/personal-data.md): what each subscriber receives,
signed as sent, against real Redis and real receivers; the 400s that name a bad option."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import msgspec
import pytest
from standardwebhooks.webhooks import Webhook

from bridge.delivery.models import OutgoingEvent
from bridge.delivery.projection import decode, mask, project, shape_of
from bridge.delivery.store import InvalidSubscription
from bridge.events.envelope import FieldChange, encode_event, new_event
from bridge.testing.receivers import Receiver
from bridge.testing.waiting import wait_for
from tests.delivery.api_app import api_client, build_app
from tests.delivery.parts import DeliveryParts

Factory = Callable[..., DeliveryParts]
Receivers = Callable[..., tuple[Receiver, str]]

ID_NUMBER = "8001015009087"
DEBTOR: dict[str, Any] = {
    "accountable_person_id": 6,
    "title": "Mr",
    "first_name": "Vuyo",
    "last_name": "Mahlangu",
    "debtor_code": "1004",
    "mobile_number": "0818006397",
    "email_address": "vmahlangu96@example.com",
    "id_number": ID_NUMBER,
    "employer": "Eskom",
}


def debtor_event(
    event_type: str, sequence: int, changes: dict[str, FieldChange] | None = None, **data: Any
) -> OutgoingEvent:
    event = new_event(
        event_type,
        school_id=1000,
        resource="debtor",
        resource_id="6",
        data={**DEBTOR, **data},
        changes=changes,
    )
    body = encode_event(msgspec.structs.replace(event, sequence=sequence))
    return OutgoingEvent.of(event.id, 1000, event_type, sequence, body)


class Options(msgspec.Struct):
    fields: dict[str, list[str]] | None = None
    redact: list[str] | None = None
    payload: str = "full"


def shaped(event: OutgoingEvent, **options: Any) -> dict[str, Any] | None:
    shape = shape_of(Options(**options))
    assert shape is not None
    body = project(decode(event.body), shape)
    return None if body is None else msgspec.json.decode(body)


def test_no_option_no_shape() -> None:
    assert shape_of(Options()) is None
    assert shape_of(Options(redact=[])) is None


def test_fields_keep_the_listed_fields_and_every_id() -> None:
    event = debtor_event("debtor.created", 5)
    body = shaped(event, fields={"debtor": ["debtor_code", "email_address"]})
    assert body is not None
    assert body["data"] == {
        "accountable_person_id": 6,
        "debtor_code": "1004",
        "email_address": DEBTOR["email_address"],
    }
    original = msgspec.json.decode(event.body)
    for name in ("id", "type", "timestamp", "school_id", "sequence", "resource", "resource_id"):
        assert body[name] == original[name]
    assert list(body) == [
        "id",
        "type",
        "timestamp",
        "school_id",
        "sequence",
        "resource",
        "resource_id",
        "data",
    ]


def test_a_resource_fields_does_not_name_arrives_with_its_ids_alone() -> None:
    event = new_event(
        "learner.created",
        school_id=1000,
        resource="learner",
        resource_id="5",
        data={"learner_id": 5, "first_name": "Zanele", "grade": "7", "parent1_id": 8},
    )
    outgoing = OutgoingEvent.of(event.id, 1000, event.type, 1, encode_event(event))
    body = shaped(outgoing, fields={"debtor": ["debtor_code"]})
    assert body is not None and body["data"] == {"learner_id": 5, "parent1_id": 8}


def test_an_update_outside_the_fields_is_skipped_and_changes_are_cut() -> None:
    outside = debtor_event("debtor.updated", 6, {"employer": FieldChange(old="Eskom", new="Transnet")})
    assert shaped(outside, fields={"debtor": ["debtor_code", "email_address"]}) is None
    inside = debtor_event(
        "debtor.updated",
        7,
        {
            "employer": FieldChange(old="Eskom", new="Transnet"),
            "email_address": FieldChange(old="a@example.com", new="b@example.com"),
        },
    )
    body = shaped(inside, fields={"debtor": ["debtor_code", "email_address"]})
    assert body is not None
    assert body["changes"] == {"email_address": {"old": "a@example.com", "new": "b@example.com"}}
    # thin without fields never skips; redact alone never skips
    assert shaped(outside, payload="thin") is not None
    assert shaped(outside, redact=["employer"]) is not None


def test_redact_masks_data_and_both_sides_of_changes() -> None:
    event = debtor_event(
        "debtor.updated",
        8,
        {"id_number": FieldChange(old="7001015009081", new=ID_NUMBER)},
        id_number=ID_NUMBER,
    )
    body = shaped(event, redact=["id_number"])
    assert body is not None
    assert body["data"]["id_number"] == "*********9087"
    assert body["changes"]["id_number"] == {"old": "*********9081", "new": "*********9087"}
    assert ID_NUMBER in event.body.decode() and ID_NUMBER not in msgspec.json.encode(body).decode()
    assert body["data"]["first_name"] == "Vuyo"


def test_mask() -> None:
    assert mask("8001015009087") == "*********9087"
    assert mask("0082") == "****" and mask("abc") == "***"
    assert mask(None) is None and mask("") == ""
    assert mask(12345678) == "****5678"
    assert mask(mask("8001015009087")) == "*********9087"


def test_thin_drops_data_and_keeps_change_names() -> None:
    event = debtor_event("debtor.updated", 9, {"employer": FieldChange(old="Eskom", new="Transnet")})
    body = shaped(event, payload="thin")
    assert body is not None and "data" not in body
    assert body["changes"] == {"employer": {}}
    created = shaped(debtor_event("debtor.created", 10), payload="thin")
    assert created is not None and "data" not in created and "changes" not in created


async def test_each_subscriber_gets_its_own_body_signed_and_skips_are_recorded(
    dispatcher_factory: Factory, receiver_factory: Receivers
) -> None:
    full_receiver, full_url = receiver_factory()
    minimal_receiver, minimal_url = receiver_factory()
    thin_receiver, thin_url = receiver_factory()
    dispatcher = dispatcher_factory()
    full = await dispatcher.store.create(url=full_url)
    minimal = await dispatcher.store.create(
        url=minimal_url, fields={"debtor": ["debtor_code", "email_address"]}, redact=["id_number"]
    )
    thin = await dispatcher.store.create(url=thin_url, payload="thin")
    created = debtor_event("debtor.created", 1)
    outside = debtor_event("debtor.updated", 2, {"employer": FieldChange(old="Eskom", new="Transnet")})
    await dispatcher.fan_out([created, outside])
    await dispatcher.fan_out([outside])  # a second fan-out changes nothing
    await dispatcher.start()
    await wait_for(lambda: len(full_receiver.received) == 2 and len(thin_receiver.received) == 2)
    await wait_for(lambda: len(minimal_receiver.received) == 1)

    assert [r.body for r in full_receiver.received] == [created.body, outside.body]
    [minimal_body] = [Webhook(minimal.secret).verify(r.body, r.headers) for r in minimal_receiver.received]
    assert minimal_body["data"] == {
        "accountable_person_id": 6,
        "debtor_code": "1004",
        "email_address": DEBTOR["email_address"],
    }
    thin_bodies = [Webhook(thin.secret).verify(r.body, r.headers) for r in thin_receiver.received]
    assert all("data" not in b for b in thin_bodies) and thin_bodies[1]["changes"] == {"employer": {}}

    expected = {full.id: "delivered", minimal.id: "skipped", thin.id: "delivered"}

    async def recorded() -> bool:  # the receivers answer before the dispatcher records the outcome
        states = {s.subscription_id: s.state for s in await dispatcher.service.states(outside.event_id)}
        return states == expected

    await wait_for(recorded, what=f"the delivery states {expected}")
    await dispatcher.stop()
    assert len(minimal_receiver.received) == 1


async def test_a_patch_applies_to_what_is_still_queued(
    dispatcher_factory: Factory, receiver_factory: Receivers
) -> None:
    receiver, url = receiver_factory()
    dispatcher = dispatcher_factory()
    subscription = await dispatcher.store.create(url=url)
    await dispatcher.fan_out([debtor_event("debtor.created", 1)])
    await dispatcher.store.update(subscription.id, {"redact": ["id_number"], "fields": {"debtor": []}})
    await dispatcher.start()
    await wait_for(lambda: len(receiver.received) == 1)
    assert receiver.bodies()[0]["data"] == {"accountable_person_id": 6}
    assert ID_NUMBER.encode() not in receiver.received[0].body


@pytest.fixture
async def client(dispatcher_factory: Factory) -> AsyncIterator[httpx.AsyncClient]:
    async with api_client(build_app(dispatcher_factory())) as test_client:
        yield test_client


async def test_options_round_trip_and_bad_ones_are_named(client: httpx.AsyncClient) -> None:
    created = await client.post(
        "/v1/subscriptions",
        json={
            "url": "http://127.0.0.1:9/hook",
            "fields": {"debtor": ["email_address", "debtor_code", "debtor_code"]},
            "redact": ["id_number"],
            "payload": "thin",
        },
    )
    assert created.status_code == 201, created.text
    body = created.json()
    assert body["fields"] == {"debtor": ["debtor_code", "email_address"]}
    assert body["redact"] == ["id_number"] and body["payload"] == "thin"
    sid = body["id"]
    plain = (await client.post("/v1/subscriptions", json={"url": "http://127.0.0.1:9/hook"})).json()
    assert (plain["fields"], plain["redact"], plain["payload"]) == (None, None, "full")

    changed = await client.patch(f"/v1/subscriptions/{sid}", json={"payload": "full", "fields": None})
    assert changed.status_code == 200, changed.text
    assert changed.json()["payload"] == "full" and changed.json()["fields"] is None
    assert changed.json()["redact"] == ["id_number"]

    for bad, named in (
        ({"fields": {"debtors": ["email_address"]}}, "debtors"),
        ({"fields": {"debtor": "email_address"}}, "fields.debtor"),
        ({"fields": {}}, "fields"),
        ({"redact": "id_number"}, "redact"),
        ({"payload": "fat"}, "payload"),
    ):
        for response in (
            await client.post("/v1/subscriptions", json={"url": "http://127.0.0.1:9/hook", **bad}),
            await client.patch(f"/v1/subscriptions/{sid}", json=bad),
        ):
            assert response.status_code == 400, (bad, response.text)
            assert named in response.json()["detail"], (bad, response.json()["detail"])


async def test_the_store_validates_too(dispatcher_factory: Factory) -> None:
    store = dispatcher_factory().store
    with pytest.raises(InvalidSubscription, match="unknown resource 'person'"):
        await store.create(url="http://127.0.0.1:9/hook", fields={"person": ["x"]})
    with pytest.raises(InvalidSubscription, match="unknown payload mode"):
        await store.create(url="http://127.0.0.1:9/hook", payload="fat")
    with pytest.raises(InvalidSubscription, match=r"fields\.debtor: must be a list"):
        await store.create(url="http://127.0.0.1:9/hook", fields={"debtor": "x"})  # type: ignore[dict-item]
