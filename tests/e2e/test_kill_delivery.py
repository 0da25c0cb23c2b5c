"""kill -9 of a `serve` process amid many deliveries: after a restart, every event still arrives."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis

from bridge.delivery.store import SubscriptionStore
from bridge.delivery.urls import UrlGuard
from bridge.store.keys import Keys
from bridge.store.scripts import Scripts
from bridge.testing.receivers import Answer, Receiver
from bridge.testing.servers import SimulatorServer, ThreadedServer
from bridge.testing.waiting import wait_for
from tests.e2e.helpers import school_events, start_replica

SCHOOLS = (1000, 1001, 1002)


@pytest.mark.parametrize("stop", [signal.SIGKILL, signal.SIGTERM], ids=["kill-9", "sigterm"])
async def test_every_event_arrives_after_a_delivering_process_is_stopped(
    redis: aioredis.Redis, redis_url: str, simulator_factory: Any, tmp_path: Path, stop: signal.Signals
) -> None:
    """SIGKILL: duplicates only of what was in flight. SIGTERM: a clean exit 0, and no duplicate at all."""
    # Enough events that the stop lands mid-delivery: a graceful stop lets polls finish first (up to 10 s)
    # while the worker goes on, and three lanes at 100 ms an answer deliver about 28 events a second: the
    # 480 events take 17 s (at 50 ms, a slow machine's graceful stop saw every one delivered before it ended).
    sim: SimulatorServer = simulator_factory(schools=len(SCHOOLS), learners=100, debtors=60, seed=8)
    receiver = Receiver(lambda _r, _n: Answer(delay=0.1))  # a slow subscriber: work piles up in flight
    overrides = {
        "BRIDGE_EMIT_INITIAL_SNAPSHOT": "true",
        "BRIDGE_DELIVERY_TIMEOUT_SECONDS": "1",
        "BRIDGE_ALLOW_PRIVATE_URLS": "true",
    }
    with ThreadedServer(receiver) as hook:
        # Subscribed before the bridge starts, so it is owed every event from the first poll on.
        store = SubscriptionStore(redis, Keys("d6b"), UrlGuard(allow_private=True), scripts=Scripts(redis))
        await store.create(url=f"{hook.url}/d6")
        victim, _port = start_replica(redis_url, sim.base_url, tmp_path, **overrides)
        survivor = None
        try:
            await wait_for(lambda: _received(receiver, 20), what="deliveries under way")
            victim.send_signal(stop)
            code = await asyncio.to_thread(victim.wait, 30)
            assert code == (0 if stop == signal.SIGTERM else -signal.SIGKILL)
            got_before = len(receiver.received)
            survivor, _port = start_replica(redis_url, sim.base_url, tmp_path, **overrides)

            expected: set[str] = set()
            for school in SCHOOLS:
                expected |= {e.id for e in await school_events(redis, school)}
            assert len(expected) >= len(SCHOOLS) * 160  # every record of every school was created
            assert got_before < len(expected)  # the kill landed mid-delivery
            await wait_for(lambda: _all_ids(receiver, expected), timeout=60, what="every event delivered")
            ids = receiver.ids()
            duplicates = len(ids) - len(set(ids))
            # Only what was in flight at a kill may come twice; a graceful stop finishes or hands it back.
            assert duplicates <= (64 if stop == signal.SIGKILL else 0), duplicates
            for school in SCHOOLS:
                sequences = [r.json["sequence"] for r in receiver.received if r.json["school_id"] == school]
                first_seen = list(dict.fromkeys(sequences))
                assert first_seen == sorted(first_seen), f"school {school} out of order"
        finally:
            for process in (victim, survivor):
                if process is not None and process.poll() is None:
                    process.send_signal(signal.SIGTERM)
                    await asyncio.to_thread(process.wait, 30)


async def _received(receiver: Receiver, count: int) -> bool:
    return len(receiver.received) >= count


async def _all_ids(receiver: Receiver, expected: set[str]) -> bool:
    return expected <= set(receiver.ids())
