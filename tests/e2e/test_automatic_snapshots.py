"""Automatic snapshots (docs/api.md#automatic-snapshots): a subscription created with `"initial":
"snapshot"` gets its scope at creation and every feed's new baseline as a resync; one created without
gets nothing of the kind. The simulator over HTTP, a real Redis, real receivers, the bridge's own wiring
and its resync runner."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from typing import Any

import httpx
import redis.asyncio as aioredis

from bridge.app import Services
from bridge.d6.records import normalise
from bridge.testing.receivers import Receiver
from bridge.testing.settings import bridge_settings
from bridge.testing.waiting import wait_for
from tests.e2e.helpers import api, running_bridge, school_events

Receivers = Any


def feeds_done(receiver: Receiver) -> dict[tuple[int, str], list[dict[str, Any]]]:
    """(school, resync resource) -> the bodies of that feed's resync, from `resync.started` to
    `resync.completed`, for each feed whose resync completed."""
    under_way: dict[tuple[int, str], list[dict[str, Any]]] = defaultdict(list)
    done: dict[tuple[int, str], list[dict[str, Any]]] = {}
    for body in receiver.bodies():
        school, kind = body["school_id"], body["type"]
        if kind == "resync.started":
            under_way[(school, body["data"]["resource"])] = [body]
        elif kind == "resync.completed":
            feed = (school, body["data"]["resource"])
            done[feed] = [*under_way.pop(feed), body]
        elif kind.endswith(".snapshot"):
            feed = (school, f"{body['resource']}s")
            under_way[feed].append(body)
    return done


async def records(control: httpx.AsyncClient, school_id: int, resource: str) -> dict[str, dict[str, Any]]:
    path = "learners" if resource == "learners" else "accountablepersons"
    found = (await control.get(f"/schools/{school_id}/{path}")).json()["data"]
    key = "learner_id" if resource == "learners" else "accountable_person_id"
    return {str(r[key]): normalise(r) for r in found}  # as the bridge sends a record (docs/events.md)


def check_feed(bodies: list[dict[str, Any]], held: dict[str, dict[str, Any]], resync_id: str | None) -> None:
    """`resync.started`, one snapshot per record the simulator holds (field for field), `resync.completed`."""
    started, *snapshots, completed = bodies
    assert started["type"] == "resync.started" and completed["type"] == "resync.completed"
    rid = started["data"]["resync_id"]
    assert started["resource"] == completed["resource"] == "resync"
    assert started["resource_id"] == completed["resource_id"] == rid == completed["data"]["resync_id"]
    if resync_id is not None:
        assert rid == resync_id
    assert started["data"]["count"] == completed["data"]["count"] == len(snapshots) == len(held)
    assert started["sequence"] == started["data"]["as_of_sequence"]
    assert {s["resource_id"] for s in snapshots} == set(held)
    for snapshot in snapshots:
        assert snapshot["data"] == held[snapshot["resource_id"]]


async def test_new_baselines_go_to_initial_snapshot_subscriptions_only(
    redis: aioredis.Redis, redis_url: str, simulator_factory: Any, receiver_factory: Receivers
) -> None:
    sim = simulator_factory(schools=2, learners=25, debtors=15, seed=41)
    control = httpx.AsyncClient(base_url=sim.control_url)
    follows, follows_url = receiver_factory()
    plain, plain_url = receiver_factory()
    services = Services.build(bridge_settings(redis_url, sim.base_url))
    client = api(services)
    # Created before any school is known: the creation's resync has no feed yet.
    made = await client.post(
        "/v1/subscriptions", json={"url": follows_url, "event_types": ["learner.*"], "initial": "snapshot"}
    )
    assert made.status_code == 201, made.text
    assert made.json()["initial"] == "snapshot" and made.json()["resync_id"].startswith("rsy_")
    other = await client.post("/v1/subscriptions", json={"url": plain_url, "event_types": ["learner.*"]})
    assert other.status_code == 201 and "resync_id" not in other.json()
    await services.start()
    try:
        # Each school's first poll is a silent baseline: the first subscriber gets it as a resync.
        done = await wait_for(lambda: len(feeds_done(follows)) == 2 and feeds_done(follows), what="resyncs")
        for school in (1000, 1001):
            bodies = done[(school, "learners")]
            check_feed(bodies, await records(control, school, "learners"), None)
            assert {b["sequence"] for b in bodies[1:-1]} == {0}  # a silent baseline's records
        assert {b["type"] for b in follows.bodies()} <= {
            "resync.started",
            "learner.snapshot",
            "resync.completed",
        }

        # A school that becomes active later: its first poll, resynced to the same subscriber alone.
        await control.post("/schools", json={"school_id": 2000, "learners": 6, "debtors": 4})
        done = await wait_for(
            lambda: (2000, "learners") in feeds_done(follows) and feeds_done(follows),
            what="the new school's resync",
        )
        check_feed(done[(2000, "learners")], await records(control, 2000, "learners"), None)
        await asyncio.sleep(1.5)
        assert len(feeds_done(follows)) == 3 and len(follows.bodies()) == 3 * 2 + 25 * 2 + 6
        assert plain.bodies() == []  # silent baselines, and no automatic snapshots for it
    finally:
        await services.stop(grace=2)


async def test_initial_snapshot_at_creation_sends_the_whole_scope_with_each_records_sequence(
    redis: aioredis.Redis, redis_url: str, simulator_factory: Any, receiver_factory: Receivers
) -> None:
    sim = simulator_factory(schools=2, learners=20, debtors=12, seed=42)
    control = httpx.AsyncClient(base_url=sim.control_url)
    receiver, url = receiver_factory()
    async with running_bridge(bridge_settings(redis_url, sim.base_url)) as services:
        client = api(services)
        for school in (1000, 1001):
            await wait_for(lambda s=school: _polled(services, s), what=f"first poll of {school}")
        learner = (await control.get("/schools/1000/learners")).json()["data"][4]
        await control.patch(f"/schools/1000/learners/{learner['learner_id']}", json={"grade": "RR"})
        updated = await wait_for(lambda: _event(redis, 1000, "learner.updated"), what="the update")

        refused = await client.post(
            "/v1/subscriptions", json={"url": url, "event_types": ["learner.updated"], "initial": "snapshot"}
        )
        assert refused.status_code == 400 and refused.json()["extra"]["field"] == "initial"

        made = await client.post(
            "/v1/subscriptions",
            json={"url": url, "event_types": ["learner.*", "debtor.snapshot"], "initial": "snapshot"},
        )
        assert made.status_code == 201, made.text
        resync_id = made.json()["resync_id"]
        done = await wait_for(lambda: len(feeds_done(receiver)) == 4 and feeds_done(receiver), what="resync")
        for school in (1000, 1001):
            for resource in ("learners", "debtors"):
                check_feed(done[(school, resource)], await records(control, school, resource), resync_id)
        told = {b["resource_id"]: b["sequence"] for b in done[(1000, "learners")][1:-1]}
        assert told[str(learner["learner_id"])] == updated.sequence  # the last event that told it
        assert {s for rid, s in told.items() if rid != str(learner["learner_id"])} == {0}


async def _polled(services: Services, school_id: int) -> bool:
    return (await services.status.get(school_id)).last_success is not None


async def _event(redis: aioredis.Redis, school_id: int, event_type: str) -> Any:
    return next((e for e in await school_events(redis, school_id) if e.type == event_type), None)
