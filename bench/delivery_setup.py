"""What the delivery benchmarks share: the bridge's settings, a school feed that appends events the way the
poller does, waiting until a subscription's queue is empty, checking signatures, and a TLS certificate."""

from __future__ import annotations

import asyncio
import contextlib
import os
import ssl
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis

from bench.common import make_school, with_changes
from bridge import collector
from bridge.app import Services
from bridge.d6.records import Record, normalise_in_place
from bridge.delivery.handoff_process import HandoffProcess
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
POLL_SECONDS = 0.02
DEADLINE_SECONDS = 300.0


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


async def append_events(services: Services, first_school: int = 1000) -> list[Event]:
    """`EVENTS` `learner.updated` events, `EVENTS_PER_SCHOOL` in each of `SCHOOLS` schools, appended and
    published as the poller does (a silent first poll of each school, then one with every learner changed)."""
    feeds = [SchoolFeed(first_school + n, EVENTS_PER_SCHOOL) for n in range(SCHOOLS)]
    appended: list[Event] = []
    for feed in feeds:
        await feed.poll(services, 0)
        appended += (await feed.poll(services, EVENTS_PER_SCHOOL))[1]
    assert len(appended) == EVENTS
    settled()
    return appended


def settled() -> None:
    """Settle the garbage collector as `serve` does once started (bridge/collector.py): what exists now is
    frozen out of its passes. Here that is also the benchmark's own records and events, which a serve
    process does not hold: left in, every full pass would walk them at the bridge's expense."""
    collector.settle()


async def until_fanned(services: Services, subscription_id: str, count: int) -> None:
    """Wait until the hand-off has queued `count` events for the subscription."""
    deadline = time.monotonic() + DEADLINE_SECONDS
    while await services.redis.zcard(services.keys.fanned(subscription_id)) < count:
        if time.monotonic() > deadline:
            raise RuntimeError(f"{count} events were not fanned out within {DEADLINE_SECONDS:g} s")
        await asyncio.sleep(POLL_SECONDS)


@contextlib.asynccontextmanager
async def bench_bridge() -> AsyncIterator[tuple[aioredis.Redis, Settings, ReceiverProcess]]:
    """A redis-server of its own with the settings and the client `serve` makes for it, and the receiver
    process: what a benchmark of delivery runs on."""
    with redis_server() as url:
        settings = bench_settings(url)
        redis = connect(settings)
        try:
            async with receiver_process() as receiver:
                yield redis, settings, receiver
        finally:
            await redis.aclose()


def bench_settings(redis_url: str) -> Settings:
    env = {"BRIDGE_REDIS_URL": redis_url, "BRIDGE_ALLOW_PRIVATE_URLS": "true", "BRIDGE_LOG_LEVEL": "warning"}
    if "BRIDGE_DELIVERY_CONCURRENCY" in os.environ:
        env["BRIDGE_DELIVERY_CONCURRENCY"] = os.environ["BRIDGE_DELIVERY_CONCURRENCY"]
    return load_settings(env, isatty=False)


async def until_delivered(services: Services, subscription_id: str, count: int) -> float:
    """Wait until `count` events were queued for the subscription and none is left; returns when."""
    keys = services.keys
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


async def handoff_ready(services: Services) -> None:
    """Start the hand-off process, if it runs in one, and wait until it is ready to go: a serve process
    already running has it ready, so its start (imports, a Redis client) is not part of what is timed."""
    if isinstance(services.handoff, HandoffProcess):
        await services.handoff.prepare()


async def start_delivery(services: Services) -> tuple[float, float]:
    """Start delivery as `serve` does (`Services.start_delivery`), the hand-off ready first; returns the wall
    clock and `delivery_cpu` just before."""
    await handoff_ready(services)
    began = time.perf_counter(), delivery_cpu(services)
    await services.start_delivery()
    return began


def process_cpu(pid: int | None) -> tuple[float, float]:
    """User and kernel seconds of a process so far, from /proc (none: 0, 0)."""
    if pid is None:
        return 0.0, 0.0
    fields = (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return int(fields[11]) / ticks, int(fields[12]) / ticks


def handoff_pid(services: Services) -> int | None:
    """The hand-off process's id, when the hand-off runs in one."""
    return services.handoff.pid if isinstance(services.handoff, HandoffProcess) else None


def delivery_cpu(services: Services) -> float:
    """CPU seconds used so far by this process and by the hand-off process, if one runs: what delivering
    costs is both."""
    return time.process_time() + sum(process_cpu(handoff_pid(services)))


async def stop(services: Services) -> None:
    await services.handoff.stop()
    await services.feed.notices.stop()
    await services.worker.stop()
    await services.d6.aclose()


def verify_samples(stats: dict[str, Any], secret: str) -> int:
    """Check the receiver's sample requests with the `standardwebhooks` package; returns how many."""
    for sample in stats["samples"]:
        problem = verify_signature(secret, sample["headers"], sample["body"].encode())
        if problem:
            raise RuntimeError(f"a delivery does not verify: {problem}")
    return len(stats["samples"])


@contextlib.contextmanager
def tls_files() -> Iterator[tuple[Path, Path, ssl.SSLContext]]:
    """A self-signed certificate for 127.0.0.1 made with `openssl` for this run: (certificate, key, a client
    context that trusts it and nothing else)."""
    with tempfile.TemporaryDirectory(prefix="bench-tls-") as workdir:
        cert, key = Path(workdir) / "cert.pem", Path(workdir) / "key.pem"
        subprocess.run(
            [
                "openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                "-nodes", "-days", "1", "-keyout", str(key), "-out", str(cert), "-subj", "/CN=127.0.0.1",
                "-addext", "subjectAltName=IP:127.0.0.1",
            ],
            check=True,
            capture_output=True,
        )  # fmt: skip
        yield cert, key, ssl.create_default_context(cafile=cert)
