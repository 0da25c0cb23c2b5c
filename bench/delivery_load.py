"""Delivery under load, for bench/delivery.py: more delivering processes on one Redis, and a backlog.

1. Processes: 20,000 `learner.updated` events (100 schools) are appended and fanned out to an unordered
   subscription (not timed); then 1 or 2 processes (bench/delivery_worker.py: the worker `serve` runs,
   started as `serve` builds it) start delivering at one signal. Timed from the signal until the queue is
   empty. Both counts are measured in the same run, the same way, so the ratio holds on any machine:
   in the order 1, 2, 2, 1, each figure the mean of its two runs (a drift of the machine's speed during
   the part weighs on both alike, and one noisy run does not decide the ratio).
2. Backlog: an unordered subscription first delivers `MAX_ATTEMPT_LOG` events (10,000), so its attempt log
   is at its fixed cap, as in a bridge that has been serving (bench/resync.py fills it the same way: the
   log's growth to its cap is not the backlog's). Then it is disabled (an outage) while 100,000 events of
   100 schools are fanned out to it by the intake's own fan-out (the envelopes of the throughput run, each
   with an id of its own); then it is enabled, as an operator does (`PATCH enabled: true`), with the
   delivery worker running. Timed from the enabling until the queue is empty. INFO `used_memory` of Redis
   is read before the backlog, with it queued, and after the drain.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import msgspec
import redis.asyncio as aioredis

from bench.delivery_setup import append_events, until_delivered, until_fanned, verify_samples
from bench.delivery_worker import CPU, GO, READY, STOP
from bridge.app import Services
from bridge.delivery.models import OutgoingEvent
from bridge.delivery.queue import MAX_ATTEMPT_LOG
from bridge.events.ids import new_event_id
from bridge.settings import Settings
from bridge.testing.receiver_process import ReceiverProcess

BACKLOG = 100_000
BACKLOG_CHUNK = 1_000
START_SECONDS = 60.0


@dataclass(frozen=True)
class Processes:
    rate: float
    """Deliveries per second."""
    cpu_us: float
    """The delivering processes' CPU µs per delivery."""
    busy: float
    """Cores the whole machine kept busy meanwhile (every process: the delivering ones, Redis, the
    receiver), on average: `machine_busy` over the timed span."""


def machine_busy() -> float:
    """CPU seconds the machine spent busy so far, all cores (/proc/stat: user, nice, system, irq and
    softirq; not idle, I/O wait or time stolen by the host)."""
    fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
    user, nice, system, _idle, _iowait, irq, softirq = (int(f) for f in fields[:7])
    return (user + nice + system + irq + softirq) / os.sysconf("SC_CLK_TCK")


async def processes(
    redis: aioredis.Redis, settings: Settings, receiver: ReceiverProcess, count: int
) -> Processes:
    """Deliveries per second with `count` delivering processes, their CPU µs per delivery, and how many
    cores the machine kept busy meanwhile."""
    await redis.flushdb()
    services = Services.build(settings, redis=redis)
    subscription = await services.subscriptions.create(url=receiver.url, ordered=False)
    events = await append_events(services)
    services.handoff.start()
    await until_fanned(services, subscription.id, len(events))
    await services.handoff.stop()
    workers = [
        await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bench.delivery_worker", settings.redis_url
        )
        for _ in range(count)
    ]
    try:
        deadline = time.monotonic() + START_SECONDS
        while int(await redis.get(READY) or 0) < count:
            if time.monotonic() > deadline or any(w.returncode is not None for w in workers):
                raise RuntimeError("the delivering processes did not start")
            await asyncio.sleep(0.05)
        await receiver.reset()
        await redis.rpush(GO, *range(count))
        started, busy = time.perf_counter(), machine_busy()
        finished = await until_delivered(services, subscription.id, len(events))
        busy = machine_busy() - busy
        await redis.rpush(STOP, *range(count))
        for worker in workers:
            await worker.wait()
    finally:
        for worker in workers:
            if worker.returncode is None:
                worker.terminate()
                await worker.wait()
    cpu = float(await redis.get(CPU) or 0)
    stats = await receiver.stats()
    assert stats["count"] >= len(events), f"the receiver got {stats['count']} of {len(events)}"
    verify_samples(stats, subscription.secret)
    return Processes(len(events) / (finished - started), cpu / len(events) * 1e6, busy / (finished - started))


@dataclass(frozen=True)
class Drain:
    rate: float
    cpu_us: float
    memory_before: int
    memory_queued: int
    memory_after: int


async def backlog(
    redis: aioredis.Redis, settings: Settings, receiver: ReceiverProcess, bodies: list[bytes]
) -> Drain:
    """100,000 deliveries queued while their subscription was disabled, drained once it is enabled."""
    await redis.flushdb()
    services = Services.build(settings, redis=redis)
    subscription = await services.subscriptions.create(url=receiver.url, ordered=False)
    await _fan_out(services, bodies, 0, MAX_ATTEMPT_LOG)  # the attempt log filled to its cap
    await services.worker.start()
    await until_delivered(services, subscription.id, MAX_ATTEMPT_LOG)
    await services.worker.stop()
    await services.subscriptions.update(subscription.id, {"enabled": False})
    before = await used_memory(redis)
    await _fan_out(services, bodies, MAX_ATTEMPT_LOG, MAX_ATTEMPT_LOG + BACKLOG)
    queued = await used_memory(redis)
    await receiver.reset()
    await services.worker.start()
    started, cpu = time.perf_counter(), time.process_time()
    await services.subscriptions.update(subscription.id, {"enabled": True})
    finished = await until_delivered(services, subscription.id, MAX_ATTEMPT_LOG + BACKLOG)
    cpu = time.process_time() - cpu
    await services.worker.stop()
    await services.d6.aclose()
    after = await used_memory(redis)
    stats = await receiver.stats()
    assert stats["count"] >= BACKLOG, f"the receiver got {stats['count']} of {BACKLOG}"
    verify_samples(stats, subscription.secret)
    return Drain(BACKLOG / (finished - started), cpu / BACKLOG * 1e6, before, queued, after)


async def _fan_out(services: Services, bodies: list[bytes], first: int, end: int) -> None:
    """Events `first` to `end` (`_fresh`), fanned out by the intake in chunks."""
    for start in range(first, end, BACKLOG_CHUNK):
        await services.intake.fan_out(
            [_fresh(n, bodies[n % len(bodies)]) for n in range(start, min(start + BACKLOG_CHUNK, end))]
        )


def _fresh(n: int, body: bytes) -> OutgoingEvent:
    """An envelope of the throughput run as a new event: an id of its own, in one of 100 schools."""
    envelope = msgspec.json.decode(body)
    envelope["id"] = event_id = new_event_id()
    school = envelope.get("school_id", 1000 + n % 100)
    return OutgoingEvent.of(event_id, school, envelope["type"], n // 100 + 1, msgspec.json.encode(envelope))


async def used_memory(redis: aioredis.Redis) -> int:
    with contextlib.suppress(Exception):
        await redis.memory_purge()  # jemalloc: give freed pages back first
    info = await redis.info("memory")
    return int(info["used_memory"])
