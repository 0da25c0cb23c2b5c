"""The bridge on a real Redis Cluster (three masters): detection, the event log and delivery all work,
because every multi-key script and transaction stays within one hash tag; with the hand-off and the resync
loop in the serve process and in a process of their own."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest
from standardwebhooks.webhooks import Webhook

from bridge.testing.receivers import Receiver
from bridge.testing.redis import redis_cluster
from bridge.testing.servers import SimulatorServer, ThreadedServer
from bridge.testing.settings import bridge_settings
from bridge.testing.waiting import wait_for
from tests.e2e.helpers import api, running_bridge


@pytest.mark.parametrize("handoff_process", ["false", "true"], ids=["handoff-inside", "handoff-process"])
async def test_detects_and_delivers_on_a_redis_cluster(simulator_factory: Any, handoff_process: str) -> None:
    sim: SimulatorServer = simulator_factory(schools=3, learners=60, debtors=40, seed=6, inactive_schools=1)
    control = httpx.AsyncClient(base_url=sim.control_url)
    receiver = Receiver()
    with redis_cluster() as url, ThreadedServer(receiver) as hook:
        settings = bridge_settings(
            url, sim.base_url, BRIDGE_REDIS_CLUSTER="true", BRIDGE_HANDOFF_PROCESS=handoff_process
        )
        async with running_bridge(settings) as services, api(services) as client:
            created = await client.post("/v1/subscriptions", json={"url": f"{hook.url}/d6"})
            assert created.status_code == 201, created.text
            # With "initial": "snapshot", made before the schools' first polls: the resync at creation, and
            # one of each feed handed on when its baseline is taken (ids frozen in the school's slot, the
            # hand-on marked there, progress in the subscription's slot).
            pull_made = await client.post(
                "/v1/subscriptions", json={"delivery": "pull", "initial": "snapshot"}
            )
            assert pull_made.status_code == 201, pull_made.text
            pull = pull_made.json()["id"]
            token = (await client.post(f"/v1/subscriptions/{pull}/tokens")).json()["token"]
            feed = f"/v1/subscriptions/{pull}/feed"
            reader = httpx.AsyncClient(
                transport=client._transport,
                base_url=client.base_url,
                headers={"Authorization": f"Bearer {token}"},
            )
            for school in (1000, 1001, 1002):
                await wait_for(lambda s=school: _polled(services, s), what=f"baseline of {school}")
            learner = (await control.get("/schools/1001/learners")).json()["data"][0]
            grade = "R" if learner["grade"] != "R" else "1"
            await control.patch(f"/schools/1001/learners/{learner['learner_id']}", json={"grade": grade})
            await wait_for(lambda: _got(receiver, "learner.updated"), what="the update delivered")
            bodies = [Webhook(created.json()["secret"]).verify(r.body, r.headers) for r in receiver.received]
            update = next(b for b in bodies if b["type"] == "learner.updated")
            assert update["school_id"] == 1001 and update["changes"]["grade"]["new"] == grade
            listed = (await client.get("/v1/events")).json()["data"]
            assert update["id"] in [e["id"] for e in listed]
            assert {e["type"] for e in listed} >= {"integration.activated", "learner.updated"}
            ready = await client.get("/health/ready")
            assert ready.status_code == 200, ready.text

            # The pull feed: read with its token, committed, and a long-poll woken by the next change. The
            # baselines' hand-ons stream beside live delivery, so the update may come before a feed's
            # resync.completed (its snapshot events then carry the update's sequence): wait for both.
            every_feed = {(s, r) for s in (1000, 1001, 1002) for r in ("debtors", "learners")}

            async def whole_feed() -> list[dict[str, Any]] | None:
                page = (await reader.get(feed, params={"limit": 500})).json()["data"]
                done = {
                    (e["school_id"], e["data"]["resource"]) for e in page if e["type"] == "resync.completed"
                }
                return page if update["id"] in [e["id"] for e in page] and done >= every_feed else None

            found = await wait_for(whole_feed, what="the resync and the update in the feed")
            completed = [e for e in found if e["type"] == "resync.completed"]
            assert {(e["school_id"], e["data"]["resource"]) for e in completed} == every_feed
            for school, name in {(e["school_id"], e["data"]["resource"]) for e in completed}:
                records = f"/v1/schools/{school}/records/{name}"
                truth = {
                    r["resource_id"]
                    for r in (await client.get(records, params={"limit": 500})).json()["data"]
                }
                sent = {
                    e["resource_id"]
                    for e in found
                    if e["type"] == f"{name[:-1]}.snapshot" and e["school_id"] == school
                }
                counts = [
                    e["data"]["count"]
                    for e in completed
                    if (e["school_id"], e["data"]["resource"]) == (school, name)
                ]
                assert sent == truth and max(counts) == len(truth), (school, name, counts)
            page = (await reader.get(feed, params={"limit": 500})).json()
            cursor = page["meta"]["next_cursor"]
            assert (await reader.post(f"{feed}/commit", json={"cursor": cursor})).status_code == 200
            waiting = asyncio.create_task(reader.get(feed, params={"wait": 20}))
            await asyncio.sleep(0.5)
            assert not waiting.done()
            await control.patch(f"/schools/1001/learners/{learner['learner_id']}", json={"grade": "2"})
            woken = (await waiting).json()["data"]
            assert [e["type"] for e in woken] == ["learner.updated"]
            await reader.aclose()


async def _polled(services: Any, school_id: int) -> bool:
    return (await services.status.get(school_id)).last_success is not None


async def _got(receiver: Receiver, event_type: str) -> bool:
    return any(r.json["type"] == event_type for r in receiver.received)
