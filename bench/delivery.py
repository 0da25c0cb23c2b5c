"""Delivery: signed webhooks per second out of the real worker, and the latency from append to answer.

The bridge is wired by `Services.build` on a redis-server of our own; only its hand-off and delivery worker
run (no d6 polling). Subscriptions are made through `SubscriptionStore.create`. Events are appended the
way the school poller appends them: a complete scan of a school's learners is diffed against its
snapshot (`plan_diff`, `finish_diff`, `record_events`), committed with the events in one script
(`SnapshotStore.commit`) and published (`Outbox.publish`). The receiver (bridge/testing/receiver_process.py)
is a bare asyncio HTTP/1.1 server in a process of its own that answers 200 at once and counts.

1. Unordered: 20,000 `learner.updated` events, 200 in each of 100 schools, are appended and published
   before the clock starts. Timed: from starting the hand-off and the delivery worker until every delivery is
   done (all 20,000 queued by the fan-out and none left in the queue, so each one's response was read
   and its outcome recorded). The fan-out runs inside the timed window.
2. Ordered: the same with a default (`ordered`) subscription: 100 lanes, one event per school in flight;
   against unordered runs made beside it, in the order ordered, unordered, unordered, ordered, each figure
   the mean of its two runs (a drift of the machine's speed weighs on both alike, as in 7).
3. Latency: a default (ordered) subscription while one school is polled every 25 ms with 5 changed
   learners (200 events/s, schools in turn) for 20 s, in the worker's own event loop as in a serve
   process; each poll then wakes the hand-off, as `Services.build` does. Per event: from just before its
   commit to the moment the delivery worker had the response (the `at` of its attempt in the bridge's attempt
   log, taken right after the body was read). Also shown: to the receiver's receive time (same clock).
4. Raw ceiling: the session the delivery `Sender` makes (aiohttp), the same envelopes pre-signed, the
   same concurrency (`BRIDGE_DELIVERY_CONCURRENCY`) as workers POSTing in a tight loop: no Redis, no
   bookkeeping. What the client can do here; httpx's ceiling is printed beside it.
5. arq baseline: the same envelopes as arq 0.28.0 jobs (sign + POST with aiohttp, bench/arq/worker.py) in
   `.venv-arq`, with its own redis-server; queued before the worker starts (not timed), then timed from
   the worker's start-up hook until its queue is empty and the receiver has every request.

6. HTTPS: 1, 4 and 3 again to a TLS receiver (the same receiver process with a self-signed certificate for
   127.0.0.1 made with `openssl` in the run, trusted through `Sender(ssl_context=...)`).
7. Two processes, and 8. a backlog of 100,000 after an outage: see bench/delivery_load.py. The drain is
   judged against the mean of two unordered runs (2) made right before and right after it.

Every target is a ratio to something measured in the same run: the raw ceiling (its rate and its CPU a
request), unordered delivery, arq, one process and what the machine can give two. Issue 15's absolute
figures for 2 cores are restated so (2,500/s unordered: the ceiling's share; 2,000/s ordered: 0.8 of
unordered; 350 µs: 3x the client's CPU; the drain at 0.9 of unordered) and printed. One figure stays
absolute: p99 from append to answer <= 100 ms, the latency subscribers are promised, not a speed.
Two processes: 1.6x one, or 0.9 of what the machine can give where that is less (the cores over those it
kept busy with one delivering process, Redis and the receiver included: /proc/stat over the timed span).

Logging is at warning level in the bridge and in arq. The machine has 2 cores for the bench process,
the receiver, redis-server and (for 5) the arq worker, so the figures are of a crowded machine.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import ssl
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import redis.asyncio as aioredis

from bench import delivery_load
from bench.common import quiet_logs, verdict
from bench.delivery_setup import (
    DEADLINE_SECONDS,
    EVENTS,
    POLL_SECONDS,
    SCHOOLS,
    SchoolFeed,
    Sent,
    append_events,
    bench_settings,
    delivery_cpu,
    settled,
    start_delivery,
    stop,
    tls_files,
    until_delivered,
    verify_samples,
)
from bridge.app import Services
from bridge.delivery.sender import Sender
from bridge.delivery.signing import headers as signature_headers
from bridge.delivery.signing import new_secret
from bridge.delivery.urls import UrlGuard
from bridge.events.envelope import Event
from bridge.settings import Settings
from bridge.store.redis import connect
from bridge.testing.receiver_process import ReceiverProcess, receiver_process
from bridge.testing.redis import redis_server

LATENCY_RATE = 200
LATENCY_SECONDS = 20
LATENCY_BATCH = 5
LATENCY_LEARNERS = 20
CORES = os.cpu_count() or 1
TARGET_CEILING_SHARE = 0.6  # issue 26: with a margin over the 0.5 of issue 15
PAIRS = 3
"""Unordered runs and raw ceilings measured in turn; `PAIRS` must be odd, for one median pair."""
TARGET_ORDERED_SHARE = 0.8
"""Ordered over 100 schools, against unordered run beside it: 2,000/s against 2,500/s in issue 15."""
TARGET_ARQ_RATIO = 3.0
TARGET_CPU_RATIO = 3.0
"""The bridge's CPU a delivery against the raw client's a request in the same run: 350 µs in issue 15,
whose ceiling took 107 to 114 µs."""
TARGET_P99_MS = 100.0
"""The latency subscribers are promised (not a speed): the slowest machine measured kept it 4 times over."""
TARGET_TWO_PROCESSES = 1.6
TARGET_MACHINE_SHARE = 0.9
"""Where the machine cannot give two processes 1.6x one (its cores busy with one process, Redis and the
receiver leave less than that), two must reach this share of what it can give (`main`: `bound`)."""
TARGET_DRAIN_SHARE = 0.9
"""The backlog drain against unordered in the same run: "at the unordered rate" in issue 15."""
TARGET_MEMORY_LEFT = 0.25
ARQ_PYTHON = Path(".venv-arq/bin/python")
ARQ_QUEUE = "arq:queue"


def build(redis: aioredis.Redis, settings: Settings, tls: ssl.SSLContext | None) -> Services:
    """The services `serve` builds; with `tls`, the delivery sender trusts that context's CA."""
    return Services.build(settings, redis=redis, delivery_tls=tls)


async def throughput(
    redis: aioredis.Redis,
    settings: Settings,
    receiver: ReceiverProcess,
    *,
    ordered: bool,
    tls: ssl.SSLContext | None = None,
) -> tuple[float, float, list[Sent]]:
    """Deliveries per second of 20,000 pre-appended events, the bridge's CPU µs per delivery (this process
    and the hand-off process), and the envelopes that went out."""
    await redis.flushdb()
    services = build(redis, settings, tls)
    subscription = await services.subscriptions.create(url=receiver.url, ordered=ordered)
    appended = await append_events(services)
    await receiver.reset()
    started, cpu = await start_delivery(services)
    finished = await until_delivered(services, subscription.id, EVENTS)
    cpu = delivery_cpu(services) - cpu
    await stop(services)
    stats = await receiver.stats(ids=ordered)
    assert stats["count"] == EVENTS, f"the receiver got {stats['count']} requests, not {EVENTS}"
    verify_samples(stats, subscription.secret)
    if ordered:
        check_order(appended, stats["ids"])
    bodies = []
    for start in range(0, EVENTS, 500):
        bodies += await services.events.raw([e.id for e in appended[start : start + 500]])
    sent = [Sent(e.id, e.school_id, e.sequence, b) for e, b in zip(appended, bodies, strict=True)]
    return EVENTS / (finished - started), cpu / EVENTS * 1e6, sent


def check_order(events: list[Event], received: list[tuple[str, float]]) -> None:
    """Each school's events arrived in `sequence` order (the receiver lists them as they came)."""
    sequence = {e.id: (e.school_id, e.sequence) for e in events}
    last: dict[int, int] = {}
    for event_id, _ in received:
        school, seq = sequence[event_id]
        assert seq > last.get(school, 0), f"school {school}: sequence {seq} after {last[school]}"
        last[school] = seq


async def latency(
    redis: aioredis.Redis, settings: Settings, receiver: ReceiverProcess, tls: ssl.SSLContext | None = None
) -> dict[str, Any]:
    """Append -> response latencies (ms) at a steady rate; the delivery worker runs while events come in."""
    await redis.flushdb()
    services = build(redis, settings, tls)
    subscription = await services.subscriptions.create(url=receiver.url)
    feeds = [SchoolFeed(2000 + n, LATENCY_LEARNERS) for n in range(SCHOOLS)]
    for feed in feeds:
        await feed.poll(services, 0)
    settled()
    await start_delivery(services)
    await receiver.reset()
    appended: dict[str, float] = {}
    interval = LATENCY_BATCH / LATENCY_RATE
    polls = LATENCY_RATE * LATENCY_SECONDS // LATENCY_BATCH
    loop = asyncio.get_running_loop()
    began = loop.time()
    for n in range(polls):
        await asyncio.sleep(max(0.0, began + n * interval - loop.time()))
        at, events = await feeds[n % SCHOOLS].poll(services, LATENCY_BATCH)
        services.handoff.wake()
        appended.update((e.id, at) for e in events)
    rate = len(appended) / (loop.time() - began)
    await until_delivered(services, subscription.id, len(appended))
    await stop(services)
    attempts = await services.deliveries.attempts(subscription.id, before=None, limit=len(appended) * 2)
    answered = {a.event_id: a.at for a in attempts if a.outcome == "ok"}
    stats = await receiver.stats(ids=True)
    verify_samples(stats, subscription.secret)
    received = dict(stats["ids"])
    return {
        "events": len(appended),
        "rate": rate,
        "response": percentiles([answered[i] - at for i, at in appended.items()]),
        "received": percentiles([received[i] - at for i, at in appended.items()]),
    }


def percentiles(seconds: list[float]) -> tuple[float, float]:
    """(p50, p99) in milliseconds."""
    cuts = statistics.quantiles([s * 1000 for s in seconds], n=100)
    return cuts[49], cuts[98]


async def raw_ceiling(
    settings: Settings,
    receiver: ReceiverProcess,
    sent: list[Sent],
    *,
    client: str = "bridge",
    tls: ssl.SSLContext | None = None,
) -> tuple[float, float]:
    """Requests per second of pre-signed envelopes through the bridge's own client (`Sender.session`, the
    session every attempt uses), or through httpx as the bridge used to build it; nothing else: no Redis,
    no bookkeeping. And the CPU µs per request."""
    secret, now = new_secret(), int(time.time())
    requests = [
        (e.body, {**signature_headers([secret], e.event_id, now, e.body), "content-type": "application/json"})
        for e in sent
    ]
    pending: Iterator[tuple[bytes, dict[str, str]]] = iter(requests)
    sender = Sender(
        UrlGuard(allow_private=True),
        timeout=settings.delivery_timeout_seconds,
        concurrency=64,
        ssl_context=tls,
    )
    session = sender.session()
    # Only the client measured is built (each httpx client makes an SSL context: about 50 µs a request
    # of this run, spread over 20,000, when they were built for the aiohttp run too).
    httpx_clients = [
        httpx.AsyncClient(timeout=settings.delivery_timeout_seconds, follow_redirects=False, trust_env=False)
        for _ in range(settings.delivery_concurrency if client == "httpx" else 0)
    ]

    async def worker(n: int) -> None:
        for body, headers in pending:
            if client == "bridge":
                async with session.post(
                    receiver.url, data=body, headers=headers, allow_redirects=False
                ) as answer:
                    await answer.content.read(4096)
                    assert answer.status == 200, answer.status
            else:
                response = await httpx_clients[n].post(receiver.url, content=body, headers=headers)
                assert response.status_code == 200, response.status_code

    await receiver.reset()
    started, cpu = time.perf_counter(), time.process_time()
    await asyncio.gather(*(worker(n) for n in range(settings.delivery_concurrency)))
    elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
    await sender.aclose()
    for httpx_client in httpx_clients:
        await httpx_client.aclose()
    stats = await receiver.stats()
    assert stats["count"] == len(sent)
    verify_samples(stats, secret)
    return len(sent) / elapsed, cpu / len(sent) * 1e6


async def arq_baseline(settings: Settings, receiver: ReceiverProcess, sent: list[Sent]) -> float:
    """Deliveries per second of arq jobs."""
    secret = new_secret()
    with redis_server() as url, tempfile.TemporaryDirectory(prefix="bench-arq-") as workdir:
        path = Path(workdir) / "events.jsonl"
        path.write_text(
            "".join(
                json.dumps({"id": e.event_id, "school_id": e.school_id, "body": e.body.decode()}) + "\n"
                for e in sent
            )
        )
        enqueue = await asyncio.create_subprocess_exec(
            ARQ_PYTHON, "-m", "bench.arq.enqueue", url, str(path), receiver.url, secret
        )
        if await enqueue.wait() != 0:
            raise RuntimeError("queueing the arq jobs failed")
        await receiver.reset()
        worker = await asyncio.create_subprocess_exec(
            ARQ_PYTHON,
            "-m",
            "bench.arq.worker",
            env={**os.environ, "ARQ_REDIS_URL": url, "BENCH_CONCURRENCY": str(settings.delivery_concurrency)},
        )
        client = aioredis.Redis.from_url(url)
        try:
            deadline = time.monotonic() + DEADLINE_SECONDS
            while True:
                started, queued = await client.get("bench:started"), await client.zcard(ARQ_QUEUE)
                if started is not None and queued == 0:
                    finished = time.time()
                    break
                if time.monotonic() > deadline or worker.returncode is not None:
                    raise RuntimeError(f"the arq worker did not finish ({queued} jobs left)")
                await asyncio.sleep(POLL_SECONDS)
        finally:
            await client.aclose()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(worker.wait(), 10)
            if worker.returncode is None:
                worker.terminate()
                await worker.wait()
    stats = await receiver.stats()
    assert stats["count"] >= len(sent), f"the receiver got {stats['count']} arq requests of {len(sent)}"
    verify_samples(stats, secret)
    return len(sent) / (finished - float(started))


def _mean(*runs: delivery_load.Processes) -> tuple[float, float, float]:
    """The mean rate, CPU a delivery and busy cores of runs of one kind."""
    return (
        statistics.fmean(r.rate for r in runs),
        statistics.fmean(r.cpu_us for r in runs),
        statistics.fmean(r.busy for r in runs),
    )


@dataclass
class Figures:
    """One transport's figures (plain HTTP or HTTPS): those of the pair whose ratio is the median."""

    unordered: float
    unordered_cpu: float
    ceiling: float
    ceiling_cpu: float
    timing: dict[str, Any]
    pairs: list[tuple[float, float]]
    """(unordered, ceiling) of each pair, in the order run."""


async def measure(
    redis: aioredis.Redis, settings: Settings, receiver: ReceiverProcess, tls: ssl.SSLContext | None
) -> tuple[Figures, list[Sent]]:
    """`PAIRS` pairs of the unordered run and the raw ceiling, each pair run back to back (the order
    alternating), so that a slow spell of the machine falls on both sides of a ratio; the median ratio's
    pair is the one reported. The machine's speed moves by a third within minutes (bench/RESULTS.md
    section 4); one run of each side measured that as much as the code."""
    pairs: list[tuple[float, float, float, float]] = []
    sent: list[Sent] = []
    for n in range(PAIRS):
        if n % 2 == 0 or not sent:
            unordered, unordered_cpu, sent = await throughput(
                redis, settings, receiver, ordered=False, tls=tls
            )
            ceiling, ceiling_cpu = await raw_ceiling(settings, receiver, sent, tls=tls)
        else:
            ceiling, ceiling_cpu = await raw_ceiling(settings, receiver, sent, tls=tls)
            unordered, unordered_cpu, sent = await throughput(
                redis, settings, receiver, ordered=False, tls=tls
            )
        pairs.append((unordered, unordered_cpu, ceiling, ceiling_cpu))
    ratios = [u / c for u, _, c, _ in pairs]
    unordered, unordered_cpu, ceiling, ceiling_cpu = pairs[ratios.index(statistics.median(ratios))]
    timing = await latency(redis, settings, receiver, tls)
    figures = [(u, c) for u, _, c, _ in pairs]
    return Figures(unordered, unordered_cpu, ceiling, ceiling_cpu, timing, figures), sent


def show(name: str, figures: Figures) -> None:
    p50, p99 = figures.timing["response"]
    r50, r99 = figures.timing["received"]
    print(f"  {name}:")
    print(
        f"    unordered    {figures.unordered:>7,.0f} deliveries/s, "
        f"{figures.unordered_cpu:.0f} µs CPU each (all of it)"
    )
    print(
        f"    raw ceiling  {figures.ceiling:>7,.0f} requests/s, {figures.ceiling_cpu:.0f} µs CPU each "
        "(the bridge's aiohttp session alone)"
    )
    print(
        f"    unordered / raw ceiling {figures.unordered / figures.ceiling:.2f} (the median of "
        + ", ".join(f"{u / c:.2f}: {u:,.0f} / {c:,.0f}" for u, c in figures.pairs)
        + ")"
    )
    print(
        f"    latency, {figures.timing['events']:,} events at {figures.timing['rate']:.0f}/s (ordered): "
        f"appended -> response p50 {p50:.1f} ms, p99 {p99:.1f} ms (-> received: p50 {r50:.1f}, p99 {r99:.1f})"
    )


def judge(name: str, figures: Figures) -> list[bool]:
    p99 = figures.timing["response"][1]
    share = figures.unordered / figures.ceiling
    cpu = figures.unordered_cpu / figures.ceiling_cpu
    return [
        verdict(
            f"delivery {name} vs raw ceiling",
            share >= TARGET_CEILING_SHARE,
            f">= {TARGET_CEILING_SHARE:g} of the raw ceiling; measured {share:.2f}, "
            f"{figures.unordered:,.0f} of {figures.ceiling:,.0f}/s",
        ),
        verdict(
            f"delivery {name} CPU",
            cpu <= TARGET_CPU_RATIO,
            f"<= {TARGET_CPU_RATIO:g}x the raw client's CPU a request; measured {cpu:.2f}x, "
            f"{figures.unordered_cpu:.0f} against {figures.ceiling_cpu:.0f} µs",
        ),
        verdict(
            f"delivery {name} latency",
            p99 <= TARGET_P99_MS,
            f"p99 <= {TARGET_P99_MS:g} ms at {LATENCY_RATE}/s",
        ),
    ]


async def main(with_arq: bool) -> bool:
    quiet_logs()
    if not with_arq:
        print(f"no {ARQ_PYTHON}: `make bench` creates it (bench/arq/requirements.txt); arq baseline skipped")
    load = os.getloadavg()
    with redis_server() as url, tls_files() as (cert, key, trust):
        settings = bench_settings(url)
        redis = connect(settings)  # the client `serve` makes
        try:
            async with receiver_process() as receiver:
                plain, sent = await measure(redis, settings, receiver, None)
                httpx_ceiling, httpx_cpu = await raw_ceiling(settings, receiver, sent, client="httpx")
                arq = await arq_baseline(settings, receiver, sent) if with_arq else None
                # ordered, unordered, unordered, ordered (ABBA), as for the processes below
                lanes = [
                    await throughput(redis, settings, receiver, ordered=o) for o in (True, False, False, True)
                ]
                ordered, ordered_cpu = (lanes[0][0] + lanes[3][0]) / 2, (lanes[0][1] + lanes[3][1]) / 2
                beside = (lanes[1][0] + lanes[2][0]) / 2
                # 1, 2, 2, 1 (ABBA): a drift of the machine's speed over the part weighs on both alike
                runs = [await delivery_load.processes(redis, settings, receiver, n) for n in (1, 2, 2, 1)]
                one, one_cpu, busy = _mean(runs[0], runs[3])
                two, two_cpu, _ = _mean(runs[1], runs[2])
                # What two can give at most here: the cores over those the machine kept busy with one
                # delivering process (Redis and the receiver included), at most 2.
                bound = min(2.0, CORES / busy)
                # the drain between two unordered runs (BAB): it is judged against their mean, measured
                # beside it rather than minutes before, as the ordered lanes are
                around = [(await throughput(redis, settings, receiver, ordered=False))[0]]
                drain = await delivery_load.backlog(redis, settings, receiver, [e.body for e in sent])
                around.append((await throughput(redis, settings, receiver, ordered=False))[0])
                drain_beside = statistics.mean(around)
            async with receiver_process(tls=(cert, key)) as tls_receiver:
                https, _ = await measure(redis, settings, tls_receiver, trust)
        finally:
            await redis.aclose()
    concurrency = settings.delivery_concurrency
    print(
        f"delivery, {EVENTS:,} events of {SCHOOLS} schools, concurrency {concurrency}, "
        f"load average {load[0]:.2f} at the start:"
    )
    show("HTTP", plain)
    print(
        f"    ordered      {ordered:>7,.0f} deliveries/s, {ordered_cpu:.0f} µs CPU each ({SCHOOLS} lanes); "
        f"unordered beside it {beside:,.0f}/s (means of ordered, unordered, unordered, ordered: "
        + ", ".join(f"{rate:,.0f}" for rate, _, _ in lanes)
        + ")"
    )
    print(
        f"    httpx        {httpx_ceiling:>7,.0f} requests/s, {httpx_cpu:.0f} µs CPU each "
        "(httpx alone, for comparison)"
    )
    if arq is not None:
        print(f"    arq baseline {arq:>7,.0f} deliveries/s (arq 0.28.0, a job each, max_jobs {concurrency})")
        print(f"    unordered / arq {plain.unordered / arq:.2f}x")
    print(
        f"    processes    1: {one:,.0f}/s ({one_cpu:.0f} µs CPU each), 2: {two:,.0f}/s ({two_cpu:.0f} µs), "
        f"2 / 1 = {two / one:.2f}x (means of 1, 2, 2, 1: " + ", ".join(f"{r.rate:,.0f}" for r in runs) + ")"
    )
    print(
        f"                 the machine kept {busy:.2f} of "
        f"{CORES} cores busy with one (Redis and the receiver included), "
        + ", ".join(f"{r.busy:.2f}" for r in runs)
        + f" in turn: two can give at most {bound:.2f}x one here; measured {two / one / bound:.2f} of that"
    )
    mib = 1024 * 1024
    held = drain.memory_queued - drain.memory_before
    left = drain.memory_after - drain.memory_before
    print(
        f"    backlog      {delivery_load.BACKLOG:,} drained at {drain.rate:,.0f}/s "
        f"({drain.cpu_us:.0f} µs CPU each); Redis used_memory {drain.memory_before / mib:.1f} MiB before, "
        f"{drain.memory_queued / mib:.1f} MiB queued ({held / delivery_load.BACKLOG:.0f} bytes a delivery), "
        f"{drain.memory_after / mib:.1f} MiB after ({left / delivery_load.BACKLOG:.0f} bytes an event left: "
        "its trace and fan-out mark, until retention); unordered beside it "
        + " and ".join(f"{rate:,.0f}" for rate in around)
        + "/s (before and after)"
    )
    show("HTTPS", https)
    two_target = min(TARGET_TWO_PROCESSES, TARGET_MACHINE_SHARE * bound)
    passed = [
        *judge("HTTP", plain),
        verdict(
            "delivery ordered",
            ordered >= TARGET_ORDERED_SHARE * beside,
            f">= {TARGET_ORDERED_SHARE:g} of unordered over {SCHOOLS} schools, run beside it; measured "
            f"{ordered / beside:.2f}, {ordered:,.0f} of {beside:,.0f}/s",
        ),
        verdict(
            "delivery vs arq",
            arq is not None and plain.unordered >= TARGET_ARQ_RATIO * arq,
            f">= {TARGET_ARQ_RATIO:g}x the arq baseline"
            + (f"; measured {plain.unordered / arq:.2f}x" if arq is not None else "; not measured"),
        ),
        verdict(
            "delivery two processes",
            two >= two_target * one,
            f">= {TARGET_TWO_PROCESSES:g}x one, or {TARGET_MACHINE_SHARE:g} of the {bound:.2f}x the machine "
            f"can give where that is less: {two_target:.2f}x; measured {two / one:.2f}x",
        ),
        verdict(
            "delivery backlog drain",
            drain.rate >= TARGET_DRAIN_SHARE * drain_beside,
            f">= {TARGET_DRAIN_SHARE:g} of unordered beside it; measured {drain.rate / drain_beside:.2f}, "
            f"{drain.rate:,.0f} of {drain_beside:,.0f}/s",
        ),
        verdict(
            "delivery backlog memory",
            left <= TARGET_MEMORY_LEFT * held,
            f"what stays after the drain <= {TARGET_MEMORY_LEFT:g} of what the backlog held",
        ),
        *judge("HTTPS", https),
    ]
    return verdict("delivery", all(passed), f"all {len(passed)} above")


if __name__ == "__main__":
    sys.exit(0 if asyncio.run(main(with_arq=ARQ_PYTHON.exists())) else 1)
