"""The hand-off in a process of its own (`BRIDGE_HANDOFF_PROCESS`, the default of `serve`): webhooks go out
through it, the serve process's worker is woken by its notices, resyncs run in it, a child that dies is
started again, and a child whose serve process dies ends and gives the hand-off lock back
(docs/operations.md#the-hand-off-process)."""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path
from typing import Any

import httpx
import redis.asyncio as aioredis

from bridge.delivery.handoff_process import HandoffProcess
from bridge.store.keys import Keys
from bridge.testing.receivers import Receiver
from bridge.testing.servers import SimulatorServer, ThreadedServer
from bridge.testing.settings import bridge_settings
from bridge.testing.waiting import wait_for
from tests.e2e.helpers import api, ready, running_bridge, start_replica, stop_replicas

KEYS = Keys("d6b")


async def test_webhooks_go_out_through_the_handoff_process_and_survive_its_death(
    redis: aioredis.Redis, redis_url: str, simulator_factory: Any
) -> None:
    sim: SimulatorServer = simulator_factory(schools=1, learners=20, debtors=5, seed=4)
    control = httpx.AsyncClient(base_url=sim.control_url)
    receiver = Receiver()
    settings = bridge_settings(redis_url, sim.base_url, BRIDGE_HANDOFF_PROCESS="true")
    with ThreadedServer(receiver) as hook:
        async with running_bridge(settings) as services, api(services) as client:
            handoff = services.handoff
            assert isinstance(handoff, HandoffProcess)
            created = await client.post(
                "/v1/subscriptions", json={"url": f"{hook.url}/d6", "event_types": ["learner.*"]}
            )
            assert created.status_code == 201, created.text
            await wait_for(lambda: _polled(services), what="the school's baseline")
            await _change_learner(control, 0, "1")
            await wait_for(lambda: _count(receiver, 1), what="the first webhook")
            assert handoff.pid is not None and handoff.pid != os.getpid()
            notices = await redis.xrange(KEYS.feed_notices())
            assert any(fields.get(b"p") == b"1" for _id, fields in notices), notices  # the worker's wake-up

            first = handoff.pid
            os.kill(first, signal.SIGKILL)
            await wait_for(lambda: _restarted(handoff, first), what="a new hand-off process")
            await _change_learner(control, 1, "2")
            await wait_for(lambda: _count(receiver, 2), what="a webhook through the new process")
            assert handoff.starts == 2

            # The resync loop runs in the hand-off process too.
            sid = created.json()["id"]
            resync = await client.post(f"/v1/subscriptions/{sid}/resync", json={"resources": ["learners"]})
            assert resync.status_code == 202, resync.text
            await wait_for(lambda: _count(receiver, 2 + 22), what="the resync's 22 events")
            last = handoff.pid
        assert last is not None and not _alive(last)  # stopped with the services
        assert await redis.get(KEYS.handoff_lock()) is None  # and the lock given back
    types = [r.json["type"] for r in receiver.received]
    assert types == ["learner.updated"] * 2 + ["resync.started"] + ["learner.snapshot"] * 20 + [
        "resync.completed"
    ]


async def test_the_handoff_process_ends_with_its_serve_process(
    redis: aioredis.Redis, redis_url: str, simulator_factory: Any, tmp_path: Path
) -> None:
    """Even a SIGKILL of `serve` leaves no hand-off running: the child sees its stdin close."""
    sim: SimulatorServer = simulator_factory(schools=1, learners=5, debtors=5, seed=5)
    serve, port = start_replica(redis_url, sim.base_url, tmp_path)
    try:
        await wait_for(lambda: ready(port), timeout=60, what="serve ready")
        children = await wait_for(lambda: _children(serve.pid), what="the hand-off process")
        assert len(children) == 1, children
        await wait_for(lambda: _lock_held(redis), what="the hand-off lock taken")
        serve.kill()
        await asyncio.to_thread(serve.wait, 30)
        await wait_for(lambda: not _alive(children[0]), timeout=15, what="the hand-off process ended")
        assert await redis.get(KEYS.handoff_lock()) is None  # given back, not left to expire
    finally:
        await stop_replicas([serve])


async def _polled(services: Any) -> bool:
    status = await services.status.get(1000)
    return status is not None and status.last_success is not None


async def _change_learner(control: httpx.AsyncClient, index: int, grade: str) -> None:
    learner = (await control.get("/schools/1000/learners")).json()["data"][index]
    if learner["grade"] == grade:
        grade = "R"
    await control.patch(f"/schools/1000/learners/{learner['learner_id']}", json={"grade": grade})


async def _count(receiver: Receiver, count: int) -> bool:
    return len(receiver.received) >= count


async def _restarted(handoff: HandoffProcess, first: int) -> bool:
    return handoff.pid is not None and handoff.pid != first


async def _lock_held(redis: aioredis.Redis) -> bool:
    return await redis.get(KEYS.handoff_lock()) is not None


def _children(pid: int) -> list[int] | None:
    children = [
        int(child)
        for task in Path(f"/proc/{pid}/task").iterdir()
        for child in (task / "children").read_text().split()
    ]
    return children or None


def _alive(pid: int) -> bool:
    """Running, not merely a zombie waiting to be reaped."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return False
    return "\nState:\tZ" not in status
