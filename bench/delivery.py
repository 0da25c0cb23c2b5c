"""Delivery: signed webhooks per second out of the real dispatcher, and the latency from append to answer.

The bridge is wired by `Services.build` on a redis-server of our own; only its hand-off and dispatcher
run (no d6 polling). Subscriptions are made through `SubscriptionStore.create`. Events are appended the
way the school poller appends them: a complete scan of a school's learners is diffed against its
snapshot (`plan_diff`, `finish_diff`, `record_events`), committed with the events in one script
(`SnapshotStore.commit`) and published (`Outbox.publish`). The receiver (bridge/testing/receiver_process.py)
is a bare asyncio HTTP/1.1 server in a process of its own that answers 200 at once and counts.

1. Unordered: 20,000 `learner.updated` events, 200 in each of 100 schools, are appended and published
   before the clock starts. Timed: from starting the hand-off and the dispatcher until every delivery is
   done (all 20,000 queued by the fan-out and none left in the queue, so each one's response was read
   and its outcome recorded). The fan-out runs inside the timed window.
2. Ordered: the same with a default (`ordered`) subscription: 100 lanes, one event per school in flight.
3. Latency: a default (ordered) subscription while one school is polled every 25 ms with 5 changed
   learners (200 events/s, schools in turn) for 20 s, in the dispatcher's own event loop as in a serve
   process; each poll then wakes the hand-off, as `Services.build` does. Per event: from just before its
   commit to the moment the dispatcher had the response (the `at` of its attempt in the bridge's attempt
   log, taken right after the body was read). Also shown: to the receiver's receive time (same clock).
4. Raw ceiling: the session the dispatcher's `Sender` makes (aiohttp), the same envelopes pre-signed, the
   same concurrency (`BRIDGE_DELIVERY_CONCURRENCY`) as workers POSTing in a tight loop: no Redis, no
   bookkeeping. What the client can do here; httpx's ceiling is printed beside it.
5. arq baseline: the same envelopes as arq 0.28.0 jobs (sign + POST with aiohttp, bench/arq/worker.py) in
   `.venv-arq`, with its own redis-server; queued before the worker starts (not timed), then timed from
   the worker's start-up hook until its queue is empty and the receiver has every request.

Logging is at warning level in the bridge and in arq. The machine has 2 cores for the bench process,
the receiver, redis-server and (for 5) the arq worker, so the figures are of a crowded machine.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
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

from bench.common import make_school, quiet_logs, verdict, with_changes
from bridge.app import Services
from bridge.d6.records import Record, normalise_in_place
from bridge.delivery.sender import Sender
from bridge.delivery.signing import headers as signature_headers
from bridge.delivery.signing import new_secret
from bridge.delivery.urls import UrlGuard
from bridge.events.envelope import Event
from bridge.settings import Settings, load_settings
from bridge.store.redis import connect
from bridge.sync.diff import finish_diff, plan_diff
from bridge.sync.events import record_events
from bridge.testing.receiver_process import ReceiverProcess, receiver_process
from bridge.testing.receivers import verify_signature
from bridge.testing.redis import redis_server

SCHOOLS = 100
EVENTS_PER_SCHOOL = 200
EVENTS = SCHOOLS * EVENTS_PER_SCHOOL
LATENCY_RATE = 200
LATENCY_SECONDS = 20
LATENCY_BATCH = 5
LATENCY_LEARNERS = 20
TARGET_UNORDERED = 1_000
TARGET_ORDERED = 500
TARGET_CEILING_SHARE = 0.5
TARGET_ARQ_RATIO = 1.5
TARGET_P99_MS = 250.0
ARQ_PYTHON = Path(".venv-arq/bin/python")
ARQ_QUEUE = "arq:queue"
POLL_SECONDS = 0.02
DEADLINE_SECONDS = 120.0


@dataclass(frozen=True)
class Sent:
    """An event as it went out: the exact envelope the bridge signed."""

    event_id: str
    school_id: int
    sequence: int
    body: bytes


class SchoolFeed:
    """One school's learners as the poller scans them; each poll changes some and commits the diff."""

    def __init__(self, school_id: int, learners: int) -> None:
        self.school_id = school_id
        school = make_school(school_id, learners=learners)
        self.records: list[Record] = [normalise_in_place(dict(r)) for r in school.learners.records.values()]
        self.token = 0
        self.polls = 0

    async def poll(self, services: Services, changes: int) -> tuple[float, list[Event]]:
        """`SchoolPoller._commit` and the publish of `SchoolPoller._poll`, on a scan in which `changes`
        learners changed (none on the first, silent poll). Returns the time just before the commit."""
        if self.polls == 0:
            self.token = await services.lease.acquire(self.school_id, "bench", ttl=3600) or 0
        else:
            changed = with_changes(self.records, changes, seed=self.school_id * 1000 + self.polls)
            self.records = [normalise_in_place(r) for r in changed]
        self.polls += 1
        snapshots = services.snapshots
        previous = await snapshots.load(self.school_id, "learner")
        plan = plan_diff(previous, self.records, "learner_id")
        result = finish_diff(plan, await snapshots.records(self.school_id, "learner", plan.need_old))
        events = record_events(
            result, school_id=self.school_id, resource="learner", emit_created=previous.baseline
        )
        appended = time.time()
        committed = await snapshots.commit(self.school_id, "learner", result, events, token=self.token)
        await services.outbox.publish(self.school_id)
        return appended, committed.events


def bench_settings(redis_url: str) -> Settings:
    env = {"BRIDGE_REDIS_URL": redis_url, "BRIDGE_ALLOW_PRIVATE_URLS": "true", "BRIDGE_LOG_LEVEL": "warning"}
    if "BRIDGE_DELIVERY_CONCURRENCY" in os.environ:
        env["BRIDGE_DELIVERY_CONCURRENCY"] = os.environ["BRIDGE_DELIVERY_CONCURRENCY"]
    return load_settings(env, isatty=False)


async def until_delivered(services: Services, subscription_id: str, count: int) -> float:
    """Wait until `count` events were queued for the subscription and none is left; returns when."""
    keys = services.dispatcher.keys
    deadline = time.monotonic() + DEADLINE_SECONDS
    while time.monotonic() < deadline:
        async with services.redis.pipeline(transaction=False) as pipe:
            pipe.zcard(keys.fanned(subscription_id))
            pipe.hlen(keys.deliveries(subscription_id))
            fanned, left = await pipe.execute()
        if fanned >= count and left == 0:
            return time.perf_counter()
        await asyncio.sleep(POLL_SECONDS)
    raise RuntimeError(f"{count} deliveries did not finish within {DEADLINE_SECONDS:g} s")


async def stop(services: Services) -> None:
    await services.handoff.stop()
    await services.dispatcher.stop()
    await services.d6.aclose()


def verify_samples(stats: dict[str, Any], secret: str) -> int:
    """Check the receiver's sample requests with the `standardwebhooks` package; returns how many."""
    for sample in stats["samples"]:
        problem = verify_signature(secret, sample["headers"], sample["body"].encode())
        if problem:
            raise RuntimeError(f"a delivery does not verify: {problem}")
    return len(stats["samples"])


async def throughput(
    redis: aioredis.Redis, settings: Settings, receiver: ReceiverProcess, *, ordered: bool
) -> tuple[float, float, list[Sent]]:
    """Deliveries per second of 20,000 pre-appended events, the bench process's CPU µs per delivery,
    and the envelopes that went out."""
    await redis.flushdb()
    services = Services.build(settings, redis=redis)
    subscription = await services.subscriptions.create(url=receiver.url, ordered=ordered)
    feeds = [SchoolFeed(1000 + n, EVENTS_PER_SCHOOL) for n in range(SCHOOLS)]
    appended: list[Event] = []
    for feed in feeds:
        await feed.poll(services, 0)
        appended += (await feed.poll(services, EVENTS_PER_SCHOOL))[1]
    assert len(appended) == EVENTS
    await receiver.reset()
    started, cpu = time.perf_counter(), time.process_time()
    await services.dispatcher.start()
    services.handoff.start()
    finished = await until_delivered(services, subscription.id, EVENTS)
    cpu = time.process_time() - cpu
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


async def latency(redis: aioredis.Redis, settings: Settings, receiver: ReceiverProcess) -> dict[str, Any]:
    """Append -> response latencies (ms) at a steady rate; the dispatcher runs while events come in."""
    await redis.flushdb()
    services = Services.build(settings, redis=redis)
    subscription = await services.subscriptions.create(url=receiver.url)
    feeds = [SchoolFeed(2000 + n, LATENCY_LEARNERS) for n in range(SCHOOLS)]
    for feed in feeds:
        await feed.poll(services, 0)
    await services.dispatcher.start()
    services.handoff.start()
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
    attempts = await services.dispatcher.queue.attempts(subscription.id, before=None, limit=len(appended) * 2)
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
    settings: Settings, receiver: ReceiverProcess, sent: list[Sent], *, client: str = "bridge"
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
    sender = Sender(UrlGuard(allow_private=True), timeout=settings.delivery_timeout_seconds, concurrency=64)
    session = sender.session()
    httpx_clients = [
        httpx.AsyncClient(timeout=settings.delivery_timeout_seconds, follow_redirects=False, trust_env=False)
        for _ in range(settings.delivery_concurrency)
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


async def main(with_arq: bool) -> bool:
    quiet_logs()
    if not with_arq:
        print(f"no {ARQ_PYTHON}: `make bench` creates it (bench/arq/requirements.txt); arq baseline skipped")
    load = os.getloadavg()
    with redis_server() as url:
        settings = bench_settings(url)
        redis = connect(settings)  # the client `serve` makes
        async with receiver_process() as receiver:
            try:
                unordered, unordered_cpu, sent = await throughput(redis, settings, receiver, ordered=False)
                ceiling, ceiling_cpu = await raw_ceiling(settings, receiver, sent)
                httpx_ceiling, httpx_cpu = await raw_ceiling(settings, receiver, sent, client="httpx")
                arq = await arq_baseline(settings, receiver, sent) if with_arq else None
                ordered, ordered_cpu, _ = await throughput(redis, settings, receiver, ordered=True)
                timing = await latency(redis, settings, receiver)
            finally:
                await redis.aclose()
    concurrency = settings.delivery_concurrency
    p50, p99 = timing["response"]
    r50, r99 = timing["received"]
    print(
        f"delivery, {EVENTS:,} events of {SCHOOLS} schools, concurrency {concurrency}, "
        f"load average {load[0]:.2f} at the start:"
    )
    print(f"  unordered    {unordered:>7,.0f} deliveries/s, {unordered_cpu:.0f} µs CPU each (all of it)")
    print(f"  ordered      {ordered:>7,.0f} deliveries/s, {ordered_cpu:.0f} µs CPU each ({SCHOOLS} lanes)")
    print(
        f"  raw ceiling  {ceiling:>7,.0f} requests/s, {ceiling_cpu:.0f} µs CPU each "
        "(the bridge's aiohttp alone)"
    )
    print(
        f"  httpx        {httpx_ceiling:>7,.0f} requests/s, {httpx_cpu:.0f} µs CPU each "
        "(httpx alone, for comparison)"
    )
    if arq is not None:
        print(f"  arq baseline {arq:>7,.0f} deliveries/s (arq 0.28.0, a job each, max_jobs {concurrency})")
    print(f"  unordered / raw ceiling {unordered / ceiling:.2f}")
    if arq is not None:
        print(f"  unordered / arq         {unordered / arq:.2f}x")
    print(
        f"  latency, {timing['events']:,} events at {timing['rate']:.0f}/s (ordered): appended -> response "
        f"p50 {p50:.1f} ms, p99 {p99:.1f} ms (-> received by the subscriber: p50 {r50:.1f}, p99 {r99:.1f})"
    )
    passed = [
        verdict("delivery unordered", unordered >= TARGET_UNORDERED, f">= {TARGET_UNORDERED:,} deliveries/s"),
        verdict("delivery ordered", ordered >= TARGET_ORDERED, f">= {TARGET_ORDERED:,} deliveries/s"),
        verdict(
            "delivery vs raw ceiling",
            unordered >= TARGET_CEILING_SHARE * ceiling,
            f">= {TARGET_CEILING_SHARE:.0%} of the raw ceiling",
        ),
        verdict(
            "delivery vs arq",
            arq is not None and unordered >= TARGET_ARQ_RATIO * arq,
            f">= {TARGET_ARQ_RATIO:g}x the arq baseline",
        ),
        verdict("delivery latency", p99 <= TARGET_P99_MS, f"p99 <= {TARGET_P99_MS:g} ms at {LATENCY_RATE}/s"),
    ]
    return verdict("delivery", all(passed), "all five above")


if __name__ == "__main__":
    sys.exit(0 if asyncio.run(main(with_arq=ARQ_PYTHON.exists())) else 1)
