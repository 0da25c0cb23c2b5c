"""`"initial": "snapshot"` on subscriptions and the snapshot and resync event types in their filters
(docs/api.md#automatic-snapshots, docs/events.md#resyncs): over HTTP on a real Redis."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest

from bridge.api.subscriptions import SubscriptionController
from bridge.api.wiring import build_api, parts
from bridge.catalogue import EVENT_TYPES, SNAPSHOT_EVENT_TYPES
from bridge.delivery.models import Subscription, snapshot_types, type_matches
from bridge.delivery.resync import Resyncs
from bridge.delivery.store import InvalidSubscription, SubscriptionStore
from bridge.sync.snapshot import SnapshotStore
from tests.delivery.api_app import api_client
from tests.delivery.parts import DeliveryParts

HOOK = "http://127.0.0.1:9/hook"


@pytest.fixture
async def client(dispatcher_factory: Callable[..., DeliveryParts]) -> AsyncIterator[httpx.AsyncClient]:
    """The subscriptions API with a real resync runner on the test Redis (its loop not started)."""
    parts_ = dispatcher_factory()
    store = parts_.store
    resyncs = Resyncs(
        parts_.redis,
        store.keys,
        SnapshotStore(parts_.redis, store.keys, store.scripts),
        parts_.queue,
        store,
        parts_.settings,
        on_queued=parts_.wake,
    )
    app = build_api(
        parts_.settings,
        [SubscriptionController],
        parts(subscriptions=store, deliveries=parts_.service, resyncs=resyncs),
    )
    async with api_client(app) as test_client:
        yield test_client


def test_the_catalogue_has_a_snapshot_type_per_resource_and_the_two_markers() -> None:
    assert SNAPSHOT_EVENT_TYPES == (
        "debtor.snapshot",
        "learner.snapshot",
        "balance.snapshot",
        "promise.snapshot",
        "note.snapshot",
        "transaction.snapshot",
    )
    assert {*SNAPSHOT_EVENT_TYPES, "resync.started", "resync.completed"} <= set(EVENT_TYPES)


async def test_filters_take_snapshot_types_resync_markers_and_their_wildcards(
    store: SubscriptionStore,
) -> None:
    for event_types in (
        ["debtor.snapshot"],
        ["resync.*"],
        ["resync.started", "learner.snapshot"],
        ["note.*"],
    ):
        made = await store.create(url=HOOK, event_types=event_types)
        assert made.event_types == sorted(event_types)
    with pytest.raises(InvalidSubscription) as refused:
        await store.create(url=HOOK, event_types=["debtor.snapshots", "resync.finished"])
    assert refused.value.extra["unknown"] == ["debtor.snapshots", "resync.finished"]


def test_a_wildcard_takes_the_snapshot_type_and_the_markers_follow_the_snapshots() -> None:
    assert type_matches(["debtor.*"], "debtor.snapshot")
    assert not type_matches(["debtor.*"], "learner.snapshot")
    assert snapshot_types(["debtor.*", "learner.updated"]) == ["debtor.snapshot"]
    assert snapshot_types(None) == list(SNAPSHOT_EVENT_TYPES)
    # The markers go with the snapshot events they frame, listed or not; without a snapshot type, none.
    for marker in ("resync.started", "resync.completed"):
        assert type_matches(["debtor.*"], marker)
        assert type_matches(["learner.snapshot"], marker)
        assert type_matches(None, marker)
        assert not type_matches(["debtor.created", "resync.*"], marker)


def test_which_baselines_a_subscription_follows() -> None:
    def made(**options: Any) -> Subscription:
        return Subscription(id="sub_x", url=HOOK, secret="whsec_x", created_at=0, updated_at=0, **options)

    follows = made(initial="snapshot", event_types=["debtor.*"], school_ids=[1000])
    assert follows.follows_baselines(1000, "debtors")
    assert not follows.follows_baselines(1000, "learners")  # learner.snapshot not taken
    assert not follows.follows_baselines(1001, "debtors")  # outside its school_ids
    assert not made(event_types=["debtor.*"]).follows_baselines(1000, "debtors")  # initial: none
    assert made(initial="snapshot").follows_baselines(1001, "transactions")


async def test_initial_defaults_to_none_and_is_shown(client: httpx.AsyncClient) -> None:
    created = await client.post("/v1/subscriptions", json={"url": HOOK, "event_types": ["debtor.snapshot"]})
    assert created.status_code == 201, created.text
    body = created.json()
    assert body["initial"] == "none" and "resync_id" not in body
    one = (await client.get(f"/v1/subscriptions/{body['id']}")).json()
    assert one["initial"] == "none"
    listed = (await client.get("/v1/subscriptions")).json()["data"]
    assert [s["initial"] for s in listed] == ["none"]


async def test_initial_snapshot_needs_a_snapshot_type_and_says_initial(client: httpx.AsyncClient) -> None:
    for event_types in (["debtor.created", "learner.updated"], ["resync.*"], ["integration.*"]):
        refused = await client.post(
            "/v1/subscriptions", json={"url": HOOK, "event_types": event_types, "initial": "snapshot"}
        )
        assert refused.status_code == 400, refused.text
        answer = refused.json()
        assert answer["extra"]["field"] == "initial" and "initial" in answer["detail"]
        assert "snapshot type" in answer["detail"]
    assert (await client.get("/v1/subscriptions")).json()["data"] == []  # nothing was created

    unknown = await client.post("/v1/subscriptions", json={"url": HOOK, "initial": "everything"})
    assert unknown.status_code == 400 and "initial" in unknown.json()["detail"]


async def test_initial_snapshot_answers_the_resync_id_and_is_kept(client: httpx.AsyncClient) -> None:
    created = await client.post(
        "/v1/subscriptions", json={"url": HOOK, "event_types": ["debtor.*"], "initial": "snapshot"}
    )
    assert created.status_code == 201, created.text
    body = created.json()
    assert body["initial"] == "snapshot" and body["resync_id"].startswith("rsy_")
    one = (await client.get(f"/v1/subscriptions/{body['id']}")).json()
    assert one["initial"] == "snapshot" and "resync_id" not in one


async def test_initial_cannot_be_changed(client: httpx.AsyncClient) -> None:
    created = (await client.post("/v1/subscriptions", json={"url": HOOK})).json()
    patched = await client.patch(f"/v1/subscriptions/{created['id']}", json={"initial": "snapshot"})
    assert patched.status_code == 400 and "initial" in patched.json()["detail"]
