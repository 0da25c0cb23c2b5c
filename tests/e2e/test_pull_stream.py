"""Server-Sent Events of a pull subscription across replicas (docs/pull.md): a real SSE client reads the
stream of replica A while events are committed through either replica; A is killed with SIGKILL; the client
resumes on replica B with `Last-Event-ID`. Afterwards it holds every event of the feed once, each school's
in `sequence` order: nothing lost, nothing repeated (an event cut off mid-message is not counted, so it
comes again whole)."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import msgspec
import redis.asyncio as aioredis

from bridge.loops import cancelled
from bridge.testing.servers import SimulatorServer
from bridge.testing.settings import TOKEN
from bridge.testing.waiting import wait_for
from tests.e2e.helpers import ready, start_replica, stop_replicas

SCHOOLS = (1000, 1001)
OVERRIDES = {"BRIDGE_SCHOOL_POLL_SECONDS": "1", "BRIDGE_EMIT_INITIAL_SNAPSHOT": "false"}


async def sse(
    client: httpx.AsyncClient, url: str, last_event_id: str | None
) -> AsyncIterator[dict[str, str]]:
    """The messages of an event stream, each whole (`id`, `event`, `data`); comments are left out."""
    headers = {"Last-Event-ID": last_event_id} if last_event_id else {}
    async with client.stream("GET", url, headers=headers, timeout=httpx.Timeout(30, read=40)) as answer:
        assert answer.status_code == 200, await answer.aread()
        assert answer.headers["content-type"].startswith("text/event-stream")
        message: dict[str, str] = {}
        async for line in answer.aiter_lines():
            if not line:
                if "data" in message:
                    yield message
                message = {}
            elif not line.startswith(":"):
                name, _, value = line.partition(":")
                message[name] = value.removeprefix(" ")


async def test_a_stream_resumes_on_another_replica_after_kill_9_with_nothing_lost_or_repeated(
    redis: aioredis.Redis, redis_url: str, simulator_factory: Any, tmp_path: Path
) -> None:
    sim: SimulatorServer = simulator_factory(
        schools=len(SCHOOLS), learners=25, debtors=15, seed=17, churn=20.0
    )
    control = httpx.AsyncClient(base_url=sim.control_url, timeout=30)
    replicas = [start_replica(redis_url, sim.base_url, tmp_path, **OVERRIDES) for _ in range(2)]
    (victim, port_a), (_, port_b) = replicas
    headers = {"Authorization": f"Bearer {TOKEN}"}
    try:
        for _process, port in replicas:
            await wait_for(lambda p=port: ready(p), timeout=60, what=f"replica on {port}")
        async with (
            httpx.AsyncClient(base_url=f"http://127.0.0.1:{port_a}", headers=headers) as on_a,
            httpx.AsyncClient(base_url=f"http://127.0.0.1:{port_b}", headers=headers) as on_b,
        ):
            made = await on_b.post("/v1/subscriptions", json={"delivery": "pull"})
            assert made.status_code == 201, made.text
            stream = f"/v1/subscriptions/{made.json()['id']}/stream"
            received: list[dict[str, str]] = []

            async def follow(client: httpx.AsyncClient, after: str | None) -> None:
                async for message in sse(client, stream, after):
                    received.append(message)

            reader = asyncio.create_task(follow(on_a, None))
            await wait_for(
                lambda: len(received) >= 15, timeout=60, what="events over the stream of replica A"
            )
            victim.send_signal(signal.SIGKILL)
            assert await asyncio.to_thread(victim.wait, 30) == -signal.SIGKILL
            with contextlib.suppress(httpx.HTTPError, httpx.StreamError):  # it died with the replica
                await asyncio.wait_for(reader, 30)
            before = len(received)
            resumed = asyncio.create_task(follow(on_b, received[-1]["id"]))
            # Replica B takes over the polls once A's leases run out; its events reach B's stream.
            await wait_for(lambda: len(received) >= before + 5, timeout=90, what="events after the resume")
            await control.post("/churn", json={"rate": 0})
            await asyncio.sleep(4)  # the last polls commit and reach the stream

            feed, cursor = [], None
            while True:  # the whole feed, read as a page reader would (nothing was committed)
                page = (
                    await on_b.get(
                        f"/v1/subscriptions/{made.json()['id']}/feed",
                        params={"limit": 500, **({"cursor": cursor} if cursor else {})},
                    )
                ).json()
                feed += page["data"]
                cursor = page["meta"]["next_cursor"]
                if not page["meta"]["has_more"]:
                    break
            await wait_for(lambda: len(received) >= len(feed), timeout=30, what="the stream caught up")
            await cancelled(resumed)

        events = [msgspec.json.decode(m["data"]) for m in received]
        assert len(received) > before, "events came after the resume"
        ids = [e["id"] for e in events]
        assert len(ids) == len(set(ids)), "an event came twice"
        assert ids == [e["id"] for e in feed], "the stream holds the feed, in its order"
        assert all(m["event"] == e["type"] for m, e in zip(received, events, strict=True))
        for school in SCHOOLS:
            sequences = [e["sequence"] for e in events if e["school_id"] == school]
            assert sequences == sorted(sequences) and sequences
    finally:
        await control.aclose()
        await stop_replicas(process for process, _port in replicas)
