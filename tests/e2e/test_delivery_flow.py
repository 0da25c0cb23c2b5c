"""From a change in d6 to a verified webhook: detection, hand-off and delivery wired as `serve` wires them."""

from __future__ import annotations

from typing import Any

import httpx
import redis.asyncio as aioredis
from standardwebhooks.webhooks import Webhook

from bridge.testing.receivers import Receiver
from bridge.testing.servers import SimulatorServer, ThreadedServer
from bridge.testing.settings import bridge_settings
from bridge.testing.waiting import wait_for
from tests.e2e.helpers import api, running_bridge


async def test_changes_arrive_signed_in_order_and_their_delivery_state_is_shown(
    redis: aioredis.Redis, redis_url: str, simulator_factory: Any
) -> None:
    sim: SimulatorServer = simulator_factory(schools=2, learners=40, debtors=30, seed=9)
    control = httpx.AsyncClient(base_url=sim.control_url)
    receiver = Receiver()
    with ThreadedServer(receiver) as hook:
        async with (
            running_bridge(bridge_settings(redis_url, sim.base_url)) as services,
            api(services) as client,
        ):
            created = await client.post(
                "/v1/subscriptions", json={"url": f"{hook.url}/d6", "event_types": ["learner.*"]}
            )
            assert created.status_code == 201, created.text
            secret = created.json()["secret"]
            for school in (1000, 1001):
                await wait_for(lambda s=school: services.status.get(s), what="status")
                await wait_for(lambda s=school: _polled(services, s), what=f"baseline of {school}")
            learners = (await control.get("/schools/1000/learners")).json()["data"]
            for n, learner in enumerate(learners[:5]):
                grade = str(n + 1) if learner["grade"] != str(n + 1) else "R"  # always a real change
                await control.patch(f"/schools/1000/learners/{learner['learner_id']}", json={"grade": grade})
            await control.post(
                "/schools/1001/accountablepersons", json={"first_name": "Not", "last_name": "Sent"}
            )
            await control.delete(f"/schools/1001/learners/{(await _first(control, 1001))['learner_id']}")

            await wait_for(lambda: _count(receiver, 6), what="six learner webhooks")
            verifier = Webhook(secret)
            bodies = [verifier.verify(r.body, r.headers) for r in receiver.received]
            assert all(
                r.headers["webhook-id"] == b["id"] for r, b in zip(receiver.received, bodies, strict=True)
            )
            assert {b["type"] for b in bodies} == {
                "learner.updated",
                "learner.removed",
            }  # no debtor.*: filtered
            of_1000 = [b["sequence"] for b in bodies if b["school_id"] == 1000]
            assert of_1000 == sorted(of_1000) and len(of_1000) == 5
            assert receiver.received[0].headers["user-agent"].startswith("d6-bridge/")

            detail = (await client.get(f"/v1/events/{bodies[0]['id']}")).json()
            states = {d["subscription_id"]: d["state"] for d in detail["deliveries"]}
            assert states == {created.json()["id"]: "delivered"}
            # Each feed of a school is polled on its own: the debtor may be seen after the learners.
            debtor_event = await wait_for(lambda: _debtor_created(client), what="the debtor.created event")
            assert (await client.get(f"/v1/events/{debtor_event['id']}")).json()["deliveries"] == []


async def _debtor_created(client: httpx.AsyncClient) -> dict[str, Any] | None:
    listed = (await client.get("/v1/events", params={"type": "debtor.created"})).json()["data"]
    return dict(listed[0]) if listed else None


async def _polled(services: Any, school_id: int) -> bool:
    return (await services.status.get(school_id)).last_success is not None


async def _first(control: httpx.AsyncClient, school_id: int) -> dict[str, Any]:
    return dict((await control.get(f"/schools/{school_id}/learners")).json()["data"][0])


async def _count(receiver: Receiver, count: int) -> bool:
    return len(receiver.received) >= count
