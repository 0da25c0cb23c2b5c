"""Pull feed: how fast a reader drains a feed, how soon a long-polling reader sees a commit, and what 200 open
Server-Sent Event streams cost Redis.

The bridge is wired by `Services.build` on a redis-server of our own and served by uvicorn in this process
(as `serve` does, without d6 polling); its hand-off runs as `Services.start` starts it. Events are committed
the way the school poller commits them (`SchoolFeed`, bench/delivery_setup.py). Readers run in a process of
their own (`python -m bench.feed_reader`), as a consumer would, over HTTP on loopback.

1. Webhook baseline: the delivery benchmark's unordered throughput (bench/delivery.py `throughput`): 20,000
   events to a receiver process, timed from the worker's start until none is left.
2. Drain: 100,000 events appended to a pull subscription's store first, then the hand-off started with a
   reader already long-polling `GET .../feed?limit=500&wait=5` and committing each page; timed from the
   hand-off's start until the reader has them all (the reader's clock, the same machine's).
3. Latency: 20 schools, one learner changed every 5 ms in turn (200 events/s) for 10 s, the hand-off woken
   after each publish as the poller does; per event, from just before its commit to the long-polling
   reader's receipt.
4. Streams: 200 open streams (10 pull subscriptions of one school each, 20 streams each) held by the reader
   process. Redis commands (INFO commandstats) during 20 idle seconds before the streams open and 20 with
   them open: the difference per stream per second is what an open stream costs. Then 20 events/s to those
   schools for 5 s: every stream must get every event of its subscription; the blocking reads of the
   wake-up stream (XREAD) per event are printed (one per wake-up for the whole replica).

Targets, each a ratio to what the same run measured or a physical bound:
- drain rate >= 0.8 of the unordered webhook rate (1);
- p99 commit-to-read latency <= 50 ms at 200 events/s (3);
- idle streams cost Redis nothing per stream: <= 0.01 commands per stream per second (4), and every stream
  received every event.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import statistics
import sys
import time
from dataclasses import dataclass, field
from typing import Any

import msgspec
import redis.asyncio as aioredis
import uvicorn

from bench.common import quiet_logs, verdict
from bench.delivery import throughput
from bench.delivery_setup import (
    EVENTS,
    SCHOOLS,
    SchoolFeed,
    append_events,
    bench_settings,
    handoff_ready,
    settled,
)
from bridge.app import Services, create_app
from bridge.settings import Settings
from bridge.store.redis import connect
from bridge.testing.receiver_process import receiver_process
from bridge.testing.redis import redis_server
from bridge.testing.servers import free_port
from bridge.testing.settings import TOKEN

DRAIN_BATCHES = 5  # x EVENTS (20,000) = 100,000 events
LIVE_SCHOOLS = 20
LIVE_INTERVAL = 0.005  # 200 events/s
LIVE_SECONDS = 10.0
STREAM_SUBSCRIPTIONS = 10
STREAMS_EACH = 20
STREAM_LIVE_SECONDS = 5.0
STREAM_IDLE_SECONDS = 20.0
"""Each idle window: longer than a stream's keep-alive (15 s, bridge/api/feed.py), so what a stream does
then is counted. And the bridge's own loops (the worker's tick, the hand-off's and the resync loop's idle
reads) make a few commands every fraction of a second, so two windows differ by a loop's round or two
(5 to 11 commands in runs of 5 s windows, streams or not): over 20 s that is a quarter as much a second."""
OPEN_SECONDS = 1.0
"""After the last stream has its answer: each stream's first read of its feed is done by then."""
OPEN_DEADLINE_SECONDS = 60.0


@dataclass
class Figures:
    webhook_rate: float = 0.0
    drain_rate: float = 0.0
    drain_events: int = 0
    latency_p50: float = 0.0
    latency_p99: float = 0.0
    latency_events: int = 0
    idle_commands: float = 0.0
    stream_events: int = 0
    streams_complete: bool = False
    xreads: int = 0
    notes: list[str] = field(default_factory=list)


@contextlib.asynccontextmanager
async def served(services: Services) -> Any:
    """The bridge's API on a free port, in this event loop (the services are started by the caller)."""
    port = free_port()
    config = uvicorn.Config(
        create_app(services.settings, services),
        host="127.0.0.1",
        port=port,
        log_config=None,
        access_log=False,
        lifespan="off",
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    while not server.started:  # noqa: ASYNC110 (uvicorn offers no event to wait on)
        await asyncio.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task


async def reader(mode: str, base_url: str, *args: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bench.feed_reader",
        mode,
        base_url,
        TOKEN,
        *args,
        stdout=asyncio.subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": os.getcwd()},
    )


async def opened(process: asyncio.subprocess.Process) -> None:
    """Wait until every stream of the reader has its answer, and then `OPEN_SECONDS`: the idle window starts
    with the streams open (a fixed wait measured the opening of the last streams on a slow machine)."""
    assert process.stdout is not None
    line = await asyncio.wait_for(process.stdout.readline(), timeout=OPEN_DEADLINE_SECONDS)
    if line.strip() != b"open":
        raise RuntimeError(f"the reader did not open its streams (it said {line[:80]!r})")
    await asyncio.sleep(OPEN_SECONDS)


async def answer(process: asyncio.subprocess.Process) -> Any:
    out, _ = await process.communicate()
    if process.returncode != 0:
        raise RuntimeError(f"the reader failed (exit {process.returncode})")
    return json.loads(out)


async def drain(redis: aioredis.Redis, settings: Settings, figures: Figures) -> None:
    await redis.flushdb()
    services = Services.build(settings, redis=redis)
    subscription = await services.subscriptions.create(url=None, delivery="pull")
    for batch in range(DRAIN_BATCHES):
        await append_events(services, first_school=1000 + batch * SCHOOLS)
    total = EVENTS * DRAIN_BATCHES
    async with served(services) as url:
        process = await reader("drain", url, subscription.id, str(total))
        await asyncio.sleep(1.0)  # the reader is long-polling an empty feed
        await handoff_ready(services)
        started = time.time()
        services.handoff.start()
        result = await answer(process)
        await services.handoff.stop()
    figures.drain_events = result["count"]
    figures.drain_rate = result["count"] / (result["finished"] - started)
    await services.feed.notices.stop()  # each phase's replica ends: its wake-up reader too
    await services.d6.aclose()


async def latency(redis: aioredis.Redis, settings: Settings, figures: Figures) -> None:
    await redis.flushdb()
    services = Services.build(settings, redis=redis)
    subscription = await services.subscriptions.create(url=None, delivery="pull")
    feeds = [SchoolFeed(7000 + n, 20) for n in range(LIVE_SCHOOLS)]
    for feed in feeds:
        await feed.poll(services, 0)
    await handoff_ready(services)
    services.handoff.start()
    appended: dict[str, float] = {}
    async with served(services) as url:
        expected = int(LIVE_SECONDS / LIVE_INTERVAL)
        process = await reader("latency", url, subscription.id, str(expected))
        await asyncio.sleep(1.0)
        began = time.monotonic()
        for n in range(expected):
            at, events = await feeds[n % LIVE_SCHOOLS].poll(services, 1)
            services.handoff.wake()
            for event in events:
                appended[event.id] = at
            pause = began + (n + 1) * LIVE_INTERVAL - time.monotonic()
            if pause > 0:
                await asyncio.sleep(pause)
        result = await answer(process)
        await services.handoff.stop()
    delays = sorted(result["received"][i] - at for i, at in appended.items() if i in result["received"])
    figures.latency_events = len(delays)
    figures.latency_p50 = statistics.median(delays)
    figures.latency_p99 = delays[min(len(delays) - 1, int(len(delays) * 0.99))]
    if len(delays) != len(appended):
        figures.notes.append(f"latency: {len(appended) - len(delays)} events not read")
    await services.feed.notices.stop()  # each phase's replica ends: its wake-up reader too
    await services.d6.aclose()


async def commands(redis: aioredis.Redis) -> dict[str, int]:
    stats: Any = await redis.info("commandstats")
    return {name.removeprefix("cmdstat_"): int(v["calls"]) for name, v in stats.items()}


async def idle_calls(redis: aioredis.Redis) -> int:
    """Redis commands (of every client) during `STREAM_IDLE_SECONDS` with nothing happening."""
    before = await commands(redis)
    await asyncio.sleep(STREAM_IDLE_SECONDS)
    after = await commands(redis)
    return sum(after.values()) - sum(before.values()) - 1  # the first INFO itself


async def streams(redis: aioredis.Redis, settings: Settings, figures: Figures) -> None:
    await redis.flushdb()
    services = Services.build(settings, redis=redis)
    subscriptions = [  # each takes one school's events
        await services.subscriptions.create(url=None, delivery="pull", school_ids=[8000 + n])
        for n in range(STREAM_SUBSCRIPTIONS)
    ]
    feeds = [SchoolFeed(8000 + n, 20) for n in range(STREAM_SUBSCRIPTIONS)]
    for feed in feeds:
        await feed.poll(services, 0)
    await handoff_ready(services)
    services.handoff.start()
    async with served(services) as url:
        # What the bridge asks of Redis while idle without a stream (the hand-off's own loop), then with
        # the 200 streams open: the difference is what the streams cost.
        quiet = await idle_calls(redis)
        ids = ",".join(s.id for s in subscriptions)
        process = await reader("streams", url, ids, str(STREAMS_EACH), str(STREAM_IDLE_SECONDS + 2))
        await opened(process)
        with_streams = await idle_calls(redis)
        count = STREAM_SUBSCRIPTIONS * STREAMS_EACH
        figures.idle_commands = max(0, with_streams - quiet) / STREAM_IDLE_SECONDS / count
        figures.notes.append(
            f"idle {STREAM_IDLE_SECONDS:g} s: {quiet} Redis commands without a stream, {with_streams} with "
            f"{count} streams open"
        )
        sent = 0
        began = time.monotonic()
        before = await commands(redis)
        while time.monotonic() - began < STREAM_LIVE_SECONDS:
            feed = feeds[sent % STREAM_SUBSCRIPTIONS]
            await feed.poll(services, 1)
            services.handoff.wake()
            sent += 1
            await asyncio.sleep(0.05)
        await asyncio.sleep(2.0)
        after = await commands(redis)
        figures.xreads = after.get("xread", 0) - before.get("xread", 0)
        result = await answer(process)
        await services.handoff.stop()
    figures.stream_events = sent
    per_subscription = [
        sent // STREAM_SUBSCRIPTIONS + (1 if n < sent % STREAM_SUBSCRIPTIONS else 0)
        for n in range(STREAM_SUBSCRIPTIONS)
    ]
    counts = result["counts"]  # per stream, events received
    figures.streams_complete = all(
        counts[s * STREAMS_EACH + k] == per_subscription[s]
        for s in range(STREAM_SUBSCRIPTIONS)
        for k in range(STREAMS_EACH)
    )
    await services.feed.notices.stop()  # each phase's replica ends: its wake-up reader too
    await services.d6.aclose()


async def webhook(redis: aioredis.Redis, settings: Settings, figures: Figures) -> None:
    async with receiver_process() as receiver:
        rate, _cpu, _sent = await throughput(redis, settings, receiver, ordered=False)
    figures.webhook_rate = rate


async def main() -> bool:
    quiet_logs()
    figures = Figures()
    with redis_server() as redis_url:
        settings = msgspec.structs.replace(bench_settings(redis_url), admin_token=TOKEN)
        redis = connect(settings)
        settled()
        await webhook(redis, settings, figures)
        await drain(redis, settings, figures)
        await latency(redis, settings, figures)
        await streams(redis, settings, figures)
        await redis.aclose()
    print("Pull feed (bench/feed.py)")
    print(f"  unordered webhook delivery   {figures.webhook_rate:>9,.0f} events/s (20,000 events)")
    drained = f"{figures.drain_rate:>9,.0f} events/s ({figures.drain_events:,} events)"
    print(f"  feed drained by a reader     {drained}")
    print(
        f"  long-poll latency at 200/s   p50 {figures.latency_p50 * 1000:.1f} ms, "
        f"p99 {figures.latency_p99 * 1000:.1f} ms ({figures.latency_events:,} events)"
    )
    print(
        f"  200 open streams             {figures.idle_commands:.4f} Redis commands per stream per second "
        "idle; "
        f"{figures.stream_events} events sent, {figures.xreads} wake-up reads (XREAD); "
        f"every stream got every event: {figures.streams_complete}"
    )
    for note in figures.notes:
        print(f"  note: {note}")
    ratio = figures.drain_rate / figures.webhook_rate
    p99_ms = figures.latency_p99 * 1000
    results = [
        verdict(f"feed drain {ratio:.2f} x the unordered webhook rate", ratio >= 0.8, ">= 0.8"),
        verdict(f"long-poll p99 {p99_ms:.1f} ms at 200 events/s", p99_ms <= 50, "<= 50 ms"),
        verdict(
            f"idle streams {figures.idle_commands:.4f} Redis commands per stream per second",
            figures.idle_commands <= 0.01,
            "<= 0.01",
        ),
        verdict("every open stream got every event", figures.streams_complete, "all"),
    ]
    return all(results)


if __name__ == "__main__":
    sys.exit(0 if asyncio.run(main()) else 1)
