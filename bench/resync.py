"""Resync: one large school's snapshot sent to an ordered subscription, with live change events beside it.

The bridge is wired by `Services.build` on a redis-server of our own; its hand-off, delivery worker and
resync loop run as `Services.start` starts them (no d6 polling). One ordered subscription (the default)
to a receiver process (bridge/testing/receiver_process.py). Records are committed the way the school
poller commits them (`SchoolFeed` of bench/delivery_setup.py: `plan_diff`, `finish_diff`,
`record_events`, `SnapshotStore.commit`, `Outbox.publish`, then the hand-off is woken): a school of
20,000 learners and 20 schools of 20 learners, each as a silent baseline first.

1. Lane: 10,000 learners of the big school change in one poll (10,000 `learner.updated` events in that
   school's lane), appended before the worker starts; timed from the worker's start until the receiver has
   them all (printed: the lane alone). It fills the subscription's attempt log to its cap (MAX_ATTEMPT_LOG,
   10,000), as in a bridge that has been serving: the log's growth to its fixed cap is not the resync's.
   Then the lane baseline: 10,000 more change the same way, timed from their commit until the receiver has
   them all, with the live feed of 2 beside them as it runs beside the resync (3), so that the two rates
   differ by what a snapshot event costs against a change event, not by the live feed. CPU per event of
   the bench process and of redis-server (INFO cpu).
2. Live latency without a resync: the 20 small schools, one changed learner every 20 ms (50 events/s,
   schools in turn) for 10 s; per event, from just before its commit to the receiver's receive time.
3. Resync: `Resyncs.start(subscription, [big school], ["learner"])`, the resync loop doing the rest,
   while the live feed of 2 keeps going. Timed from the start call to the receipt of `resync.completed`
   (the last resync event of the lane); the events of the live feed appended meanwhile give the latency
   with the resync. Every 50 ms: Redis `used_memory` and the length of the subscription's deliveries hash.
4. Live latency without a resync again (10 s): 2 and 4 together are the baseline (A B A against drift).
5. All at once: the workers stopped, the same resync queued by a `Resyncs` with no pending limit (what an
   unbounded resync would hold): the growth of `used_memory` is what queuing every snapshot costs.

Targets, each a ratio to what the same run measured:
- the resync delivers snapshot events at >= 0.8 of the lane's change-event rate (1);
- the peak of `used_memory` above its level before the resync, less what the live events committed by then
  hold (bytes per live event measured in 2 and 4: they stay for the retention, resync or not), <= 0.25 of
  what queuing all at once costs (5): bounded by `MAX_PENDING` deliveries, not by the school's size;
- the deliveries hash never longer than `MAX_PENDING` + `CHUNK` during the resync;
- live change events of other schools: p99 with the resync <= 2x the p99 without it (issue 23, item 8).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import time
from dataclasses import dataclass, field

import redis.asyncio as aioredis

from bench.common import quiet_logs, verdict
from bench.delivery_setup import (
    DEADLINE_SECONDS,
    SchoolFeed,
    bench_bridge,
    delivery_cpu,
    handoff_ready,
    settled,
    verify_samples,
)
from bridge.app import Services
from bridge.delivery.models import Subscription
from bridge.delivery.resync import CHUNK, MAX_PENDING, Resyncs
from bridge.settings import Settings
from bridge.testing.receiver_process import ReceiverProcess

BIG_SCHOOL = 5000
BIG_LEARNERS = 20_000
LANE_CHANGES = 10_000
SMALL_SCHOOLS = 20
SMALL_LEARNERS = 20
FIRST_SMALL = 6000
LIVE_RATE = 50
BASELINE_SECONDS = 10
SAMPLE_SECONDS = 0.05
WAIT_SECONDS = 0.05
RESOURCE = "learner"
TARGET_RATE_SHARE = 0.8
TARGET_MEMORY_SHARE = 0.25
TARGET_HASH = MAX_PENDING + CHUNK
TARGET_P99_RATIO = 2.0


async def used_memory(redis: aioredis.Redis) -> int:
    return int((await redis.info("memory"))["used_memory"])


async def redis_cpu(redis: aioredis.Redis) -> float:
    """Seconds of CPU redis-server has used (user + system)."""
    info = await redis.info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


async def settled_deliveries(services: Services) -> None:
    """Until the worker has recorded every delivery it made (the receiver counts each one first)."""
    deadline = time.monotonic() + DEADLINE_SECONDS
    while time.monotonic() < deadline:
        if not services.worker.in_flight:
            await asyncio.sleep(0.5)  # the completer records what the last attempts answered
            return
        await asyncio.sleep(WAIT_SECONDS)


async def until_received(receiver: ReceiverProcess, count: int) -> float:
    """Wait until the receiver has `count` requests; returns the time of the last one (`time.time()`)."""
    deadline = time.monotonic() + DEADLINE_SECONDS
    while time.monotonic() < deadline:
        stats = await receiver.stats()
        if stats["count"] >= count:
            return float(stats["last"])
        await asyncio.sleep(WAIT_SECONDS)
    raise RuntimeError(f"the receiver did not get {count} requests within {DEADLINE_SECONDS:g} s")


async def lane_beside_live(
    services: Services, receiver: ReceiverProcess, live: Live, lane: set[str]
) -> float:
    """The live feed runs while the lane's events go out; returns when the last of them was received."""
    live.appended.clear()
    stop = asyncio.Event()
    feeding = asyncio.create_task(live.run(services, stop))
    deadline = time.monotonic() + DEADLINE_SECONDS
    while (await receiver.stats())["count"] < len(lane) + len(live.appended):
        if time.monotonic() > deadline:
            raise RuntimeError(f"the receiver did not get the lane's {len(lane)} events in time")
        await asyncio.sleep(WAIT_SECONDS)
    stop.set()
    await feeding
    await until_received(receiver, len(lane) + len(live.appended))
    received = dict((await receiver.stats(ids=True))["ids"])
    return max(received[i] for i in lane)


@dataclass
class Live:
    """The small schools' change events: one changed learner every 1/LIVE_RATE s, schools in turn."""

    feeds: list[SchoolFeed]
    appended: dict[str, float] = field(default_factory=dict)
    polls: int = 0

    async def run(self, services: Services, stop: asyncio.Event, seconds: float | None = None) -> None:
        loop = asyncio.get_running_loop()
        began, interval = loop.time(), 1 / LIVE_RATE
        n = 0
        while not stop.is_set() and (seconds is None or loop.time() - began < seconds):
            await asyncio.sleep(max(0.0, began + n * interval - loop.time()))
            at, events = await self.feeds[self.polls % len(self.feeds)].poll(services, 1)
            services.handoff.wake()
            self.appended.update((e.id, at) for e in events)
            self.polls += 1
            n += 1


def percentiles(seconds: list[float]) -> tuple[float, float]:
    """(p50, p99) in milliseconds."""
    cuts = statistics.quantiles([s * 1000 for s in seconds], n=100)
    return cuts[49], cuts[98]


@dataclass
class Figures:
    lane_rate: float = 0.0
    lane_events: int = 0
    lane_cpu_us: float = 0.0
    snapshot_events: int = 0
    resync_seconds: float = 0.0
    resync_cpu_us: float = 0.0
    snapshot_bytes: int = 0
    memory_before: int = 0
    memory_peak: int = 0
    samples: int = 0
    hash_max: int = 0
    memory_after: int = 0
    log_before: int = 0
    log_after: int = 0
    lane_redis_us: float = 0.0
    alone_rate: float = 0.0
    alone_cpu_us: float = 0.0
    alone_redis_us: float = 0.0
    """The first lane of change events, with nothing beside it (it fills the attempt log)."""
    resync_redis_us: float = 0.0
    all_at_once: int = 0
    all_at_once_queued: int = 0
    without: list[float] = field(default_factory=list)
    during: list[float] = field(default_factory=list)
    without_rate: float = 0.0
    during_rate: float = 0.0
    live_bytes: float = 0.0
    """What each live change event leaves in Redis (its log entry, indexes, trace), from the live phases."""
    live_events: list[int] = field(default_factory=list)
    memory_samples: list[int] = field(default_factory=list)
    live_during_total: int = 0
    """During the resync: used_memory and how many live events had been committed, sample by sample."""

    @property
    def resync_rate(self) -> float:
        return self.snapshot_events / self.resync_seconds

    @property
    def peak_extra(self) -> int:
        return self.memory_peak - self.memory_before

    @property
    def resync_peak(self) -> float:
        """The peak above the level before, less what the live events committed by then hold (they stay
        for the retention whether a resync runs or not): the resync's own peak."""
        return max(
            m - self.memory_before - n * self.live_bytes
            for m, n in zip(self.memory_samples, self.live_events, strict=True)
        )

    @property
    def resync_left(self) -> float:
        """What stays after the resync drained, less what the live events hold."""
        return self.memory_after - self.memory_before - self.live_during_total * self.live_bytes


async def baseline_live(
    services: Services, receiver: ReceiverProcess, live: Live, figures: Figures
) -> list[float]:
    """Live latencies (s) for BASELINE_SECONDS without a resync."""
    await receiver.reset()
    live.appended.clear()
    began, memory = time.monotonic(), await used_memory(services.redis)
    await live.run(services, asyncio.Event(), BASELINE_SECONDS)
    rate = len(live.appended) / (time.monotonic() - began)
    figures.without_rate = (figures.without_rate + rate) / 2 if figures.without_rate else rate
    await until_received(receiver, len(live.appended))
    await settled_deliveries(services)
    each = (await used_memory(services.redis) - memory) / len(live.appended)
    figures.live_bytes = (figures.live_bytes + each) / 2 if figures.live_bytes else each
    received = dict((await receiver.stats(ids=True))["ids"])
    return [received[i] - at for i, at in live.appended.items()]


async def resync_phase(
    services: Services, receiver: ReceiverProcess, subscription: Subscription, live: Live, figures: Figures
) -> None:
    """The big school's resync beside the live feed, sampled for memory."""
    redis, keys = services.redis, services.keys
    await receiver.reset()
    live.appended.clear()
    figures.memory_before = await used_memory(redis)
    figures.log_before = await redis.memory_usage(keys.attempts(subscription.id), samples=0) or 0
    redis_before = await redis_cpu(redis)
    stop, sampling = asyncio.Event(), asyncio.Event()
    peaks = {"memory": figures.memory_before, "hash": 0, "samples": 0}

    async def sample() -> None:
        while not sampling.is_set():
            async with redis.pipeline(transaction=False) as pipe:
                pipe.info("memory")
                pipe.hlen(keys.deliveries(subscription.id))
                info, length = await pipe.execute()
            peaks["memory"] = max(peaks["memory"], int(info["used_memory"]))
            figures.memory_samples.append(int(info["used_memory"]))
            figures.live_events.append(len(live.appended))
            peaks["hash"] = max(peaks["hash"], int(length))
            peaks["samples"] += 1
            await asyncio.sleep(SAMPLE_SECONDS)

    sampler = asyncio.create_task(sample())
    feeding = asyncio.create_task(live.run(services, stop))
    started, cpu = time.time(), delivery_cpu(services)
    rid, feeds = await services.resyncs.start(subscription, [BIG_SCHOOL], [RESOURCE])
    assert feeds == 1, feeds
    deadline = time.monotonic() + DEADLINE_SECONDS
    while True:  # queued to the end, then (nearly) nothing left but the live feed's events
        resyncs = {r.id: r for r, _ in await services.resyncs.of_subscription(subscription.id)}
        if resyncs[rid].state == "done" and await redis.hlen(keys.deliveries(subscription.id)) <= 3:
            break
        if time.monotonic() > deadline:
            raise RuntimeError(f"the resync did not finish within {DEADLINE_SECONDS:g} s")
        await asyncio.sleep(WAIT_SECONDS)
    stop.set()
    await feeding
    appended = dict(live.appended)
    expected = figures.snapshot_events + 2 + len(appended)
    await until_received(receiver, expected)
    cpu = delivery_cpu(services) - cpu
    await settled_deliveries(services)
    figures.live_during_total = len(appended)
    figures.resync_redis_us = (await redis_cpu(redis) - redis_before) / (figures.snapshot_events + 2) * 1e6
    figures.memory_after = await used_memory(redis)
    figures.log_after = await redis.memory_usage(keys.attempts(subscription.id), samples=0) or 0
    sampling.set()
    await sampler
    stats = await receiver.stats(ids=True)
    verify_samples(stats, subscription.secret)
    received = dict(stats["ids"])
    assert len(received) == expected, f"the receiver got {len(received)} events, not {expected}"
    resync_times = [t for i, t in received.items() if i not in appended]
    completed = max(resync_times)  # resync.completed: the lane's last resync event
    figures.resync_seconds = completed - started
    figures.resync_cpu_us = cpu / len(resync_times) * 1e6
    figures.memory_peak, figures.hash_max, figures.samples = peaks["memory"], peaks["hash"], peaks["samples"]
    during = {i: at for i, at in appended.items() if at <= completed}
    figures.during = [received[i] - at for i, at in during.items()]
    figures.during_rate = len(during) / figures.resync_seconds


async def all_at_once(services: Services, subscription: Subscription, figures: Figures) -> None:
    """What the same resync costs in Redis when every snapshot is queued at once (nothing delivering)."""
    unbounded = Resyncs(
        services.redis,
        services.keys,
        services.snapshots,
        services.resyncs.queue,
        services.subscriptions,
        services.settings,
        on_queued=lambda: None,
        max_pending=10**9,
    )
    key = services.keys.deliveries(subscription.id)
    queued_before = await services.redis.hlen(key)
    before = await used_memory(services.redis)
    rid, _ = await unbounded.start(subscription, [BIG_SCHOOL], [RESOURCE])
    while True:
        await unbounded.step()
        resyncs = {r.id: r for r, _ in await unbounded.of_subscription(subscription.id)}
        if resyncs[rid].state == "done":
            break
    figures.all_at_once = await used_memory(services.redis) - before
    figures.all_at_once_queued = await services.redis.hlen(key) - queued_before


async def measure(
    redis: aioredis.Redis, settings: Settings, receiver: ReceiverProcess, learners: int
) -> Figures:
    figures = Figures()
    await redis.flushdb()
    services = Services.build(settings, redis=redis)
    subscription = await services.subscriptions.create(url=receiver.url)
    big = SchoolFeed(BIG_SCHOOL, learners)
    live = Live([SchoolFeed(FIRST_SMALL + n, SMALL_LEARNERS) for n in range(SMALL_SCHOOLS)])
    for feed in [big, *live.feeds]:
        await feed.poll(services, 0)  # silent baselines
    figures.snapshot_events = await redis.hlen(services.keys.snapshot_hashes(BIG_SCHOOL, RESOURCE))
    assert figures.snapshot_events == learners, figures.snapshot_events
    for name in (services.keys.snapshot_hashes, services.keys.snapshot_records):
        figures.snapshot_bytes += await redis.memory_usage(name(BIG_SCHOOL, RESOURCE), samples=0) or 0
    _, lane = await big.poll(services, min(LANE_CHANGES, learners))
    settled()
    await receiver.reset()
    await handoff_ready(services)
    started, cpu, redis_before = time.time(), delivery_cpu(services), await redis_cpu(redis)
    await services.start_delivery()  # the resync loop too: here, or in the hand-off process
    finished = await until_received(receiver, len(lane))
    figures.alone_cpu_us = (delivery_cpu(services) - cpu) / len(lane) * 1e6
    figures.alone_rate = len(lane) / (finished - started)
    figures.alone_redis_us = (await redis_cpu(redis) - redis_before) / len(lane) * 1e6
    # The same again with the live feed beside it: the baseline of the resync's rate.
    await receiver.reset()
    cpu, redis_before = delivery_cpu(services), await redis_cpu(redis)
    started, lane = await big.poll(services, min(LANE_CHANGES, learners))
    services.handoff.wake()
    finished = await lane_beside_live(services, receiver, live, {e.id for e in lane})
    figures.lane_cpu_us = (delivery_cpu(services) - cpu) / len(lane) * 1e6
    figures.lane_rate = len(lane) / (finished - started)
    figures.lane_events = len(lane)
    figures.lane_redis_us = (await redis_cpu(redis) - redis_before) / len(lane) * 1e6
    try:
        figures.without += await baseline_live(services, receiver, live, figures)
        await resync_phase(services, receiver, subscription, live, figures)
        figures.without += await baseline_live(services, receiver, live, figures)
    finally:
        await services.handoff.stop()
        await services.feed.notices.stop()
        await services.resyncs.stop_loop()
        await services.worker.stop()
    await all_at_once(services, subscription, figures)
    await services.d6.aclose()
    return figures


async def main(learners: int = BIG_LEARNERS) -> bool:
    quiet_logs()
    load = os.getloadavg()
    async with bench_bridge() as (redis, settings, receiver):
        f = await measure(redis, settings, receiver, learners)
    mib = 1024 * 1024
    w50, w99 = percentiles(f.without)
    d50, d99 = percentiles(f.during)
    print(
        f"resync, one school of {f.snapshot_events:,} learners to an ordered subscription (CHUNK {CHUNK}, "
        f"MAX_PENDING {MAX_PENDING}), {SMALL_SCHOOLS} small schools live, load average {load[0]:.2f}:"
    )
    print(
        f"  resync        {f.snapshot_events:,} snapshot events in {f.resync_seconds:.1f} s: "
        f"{f.resync_rate:,.0f}/s, CPU each: {f.resync_cpu_us:.0f} µs bridge (bench and hand-off processes, "
        "live feed included), "
        f"{f.resync_redis_us:.0f} µs redis-server"
    )
    print(
        f"  lane alone    {f.lane_events:,} change events in the same lane, nothing beside them: "
        f"{f.alone_rate:,.0f}/s, CPU each {f.alone_cpu_us:.0f} µs bench, {f.alone_redis_us:.0f} µs "
        f"redis-server; resync / lane alone {f.resync_rate / f.alone_rate:.2f}"
    )
    print(
        f"  lane baseline {f.lane_events:,} change events in the same lane, the live feed beside them: "
        f"{f.lane_rate:,.0f}/s, "
        f"CPU each {f.lane_cpu_us:.0f} µs bench, {f.lane_redis_us:.0f} µs redis-server; "
        f"resync / lane {f.resync_rate / f.lane_rate:.2f}"
    )
    print(
        f"  memory        snapshot holds {f.snapshot_bytes / mib:.1f} MiB; used_memory "
        f"{f.memory_before / mib:.1f} MiB before, peak {f.memory_peak / mib:.1f} MiB ({f.samples} samples): "
        f"+{f.peak_extra / mib:.2f} MiB during the resync; {f.memory_after / mib:.1f} MiB after it drained "
        f"(attempt log {f.log_before / mib:.2f} -> {f.log_after / mib:.2f} MiB)"
    )
    print(
        f"                live change events hold {f.live_bytes:.0f} bytes each in Redis (log, indexes, "
        f"trace; measured in the live phases): less the {f.live_during_total:,} committed during the resync, "
        f"the resync's own peak is {f.resync_peak / mib:+.2f} MiB and {f.resync_left / mib:+.2f} MiB stays"
    )
    print(
        f"  all at once   {f.all_at_once_queued:,} deliveries queued with no limit: "
        f"+{f.all_at_once / mib:.2f} MiB ({f.all_at_once / max(1, f.all_at_once_queued):.0f} bytes each); "
        f"resync's own peak / all at once {f.resync_peak / f.all_at_once:.3f} "
        f"(with the live events' {f.peak_extra / f.all_at_once:.3f})"
    )
    print(f"  deliveries hash at most {f.hash_max:,} long (limit {MAX_PENDING:,} + a chunk of {CHUNK})")
    print(
        f"  live          without a resync: {len(f.without):,} events at {f.without_rate:.0f}/s, "
        f"append -> received p50 {w50:.1f} ms, p99 {w99:.1f} ms"
    )
    print(
        f"                during the resync: {len(f.during):,} events at {f.during_rate:.0f}/s, "
        f"p50 {d50:.1f} ms, p99 {d99:.1f} ms; p99 ratio {d99 / w99:.2f}x"
    )
    passed = [
        verdict(
            "resync rate",
            f.resync_rate >= TARGET_RATE_SHARE * f.lane_rate,
            f">= {TARGET_RATE_SHARE:g} of the same lane's change-event rate",
        ),
        verdict(
            "resync memory",
            f.resync_peak <= TARGET_MEMORY_SHARE * f.all_at_once,
            f"the resync's own peak used_memory <= {TARGET_MEMORY_SHARE:g} of queuing every snapshot at once",
        ),
        verdict(
            "resync pending",
            f.hash_max <= TARGET_HASH,
            f"deliveries hash <= {TARGET_HASH:,} (MAX_PENDING + CHUNK)",
        ),
        verdict(
            "resync live latency",
            d99 <= TARGET_P99_RATIO * w99,
            f"live p99 during the resync <= {TARGET_P99_RATIO:g}x the p99 without",
        ),
    ]
    return verdict("resync", all(passed), f"all {len(passed)} above")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--learners",
        type=int,
        default=BIG_LEARNERS,
        help="the big school's size (the resync's own peak should not follow it; all at once does)",
    )
    sys.exit(0 if asyncio.run(main(parser.parse_args().learners)) else 1)
