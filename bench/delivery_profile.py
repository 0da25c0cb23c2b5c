"""Where a delivery's time goes: CPU per delivery of each process, and a profile of the bridge's own.

    python -m bench.delivery_profile

The unordered run of bench/delivery.py (20,000 pre-appended events, the real hand-off and worker, the
receiver process) and its raw ceiling (the same envelopes POSTed by the same aiohttp session, no Redis, no
bookkeeping), each timed on the wall clock with the CPU time of every process around it: the bench process
(user and kernel), redis-server (INFO cpu) and the receiver (/proc/<pid>/stat). Per delivery, in µs: what
each used, and what the two cores did not use (idle, waiting on one another); Redis's commands (INFO
commandstats, the run's setup included). Then the unordered run again under cProfile, from the worker's
start to the last delivery: the bench process's own time by package (the bridge, aiohttp, redis-py,
msgspec, asyncio and the rest of the standard library) and its 25 costliest functions. The profile slows
that run; its shares are what to read, not its rate.

This prints figures only: bench/delivery.py holds the targets.
"""

from __future__ import annotations

import asyncio
import cProfile
import os
import pstats
import sys
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import redis.asyncio as aioredis

from bench.common import quiet_logs
from bench.delivery import build, raw_ceiling, throughput
from bench.delivery_setup import (
    EVENTS,
    append_events,
    bench_bridge,
    handoff_pid,
    handoff_ready,
    process_cpu,
    stop,
    until_delivered,
)
from bridge.app import Services
from bridge.delivery.models import Subscription
from bridge.settings import Settings
from bridge.testing.receiver_process import ReceiverProcess

CORES = os.cpu_count() or 1
PACKAGES = (
    ("bridge", "/bridge/"),
    ("aiohttp", "/aiohttp/"),
    ("redis-py", "/redis/"),
    ("msgspec", "/msgspec/"),
    ("yarl, multidict", "/yarl/"),
    ("yarl, multidict", "/multidict/"),
    ("asyncio", "/asyncio/"),
)


@dataclass
class Cpu:
    """Seconds of CPU: user and kernel, per process."""

    bench: tuple[float, float]
    redis: tuple[float, float]
    receiver: tuple[float, float]
    handoff: tuple[float, float] = (0.0, 0.0)
    """The hand-off process's, when the hand-off runs in one (`BRIDGE_HANDOFF_PROCESS`)."""

    def __sub__(self, other: Cpu) -> Cpu:
        def less(a: tuple[float, float], b: tuple[float, float]) -> tuple[float, float]:
            return a[0] - b[0], a[1] - b[1]

        return Cpu(
            less(self.bench, other.bench),
            less(self.redis, other.redis),
            less(self.receiver, other.receiver),
            less(self.handoff, other.handoff),
        )


def receiver_pid(port: int) -> int:
    """The receiver process listening on `port` (its command line names the port)."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"bridge.testing.receiver_process" in argv and str(port).encode() in argv:
            return int(entry.name)
    raise RuntimeError(f"no receiver process for port {port}")


async def cpu_now(redis: aioredis.Redis, pid: int, services: Services | None = None) -> Cpu:
    times = os.times()
    info = await redis.info("cpu")
    return Cpu(
        bench=(times.user, times.system),
        redis=(float(info["used_cpu_user"]), float(info["used_cpu_sys"])),
        receiver=process_cpu(pid),
        handoff=process_cpu(handoff_pid(services) if services is not None else None),
    )


def show(name: str, seconds: float, used: Cpu, count: int) -> None:
    per = 1e6 / count
    parts = {
        "bridge (bench process), user": used.bench[0],
        "bridge (bench process), kernel": used.bench[1],
        "hand-off process, user": used.handoff[0],
        "hand-off process, kernel": used.handoff[1],
        "redis-server, user": used.redis[0],
        "redis-server, kernel": used.redis[1],
        "receiver, user": used.receiver[0],
        "receiver, kernel": used.receiver[1],
    }
    idle = CORES * seconds - sum(parts.values())
    print(f"  {name}: {count / seconds:,.0f}/s, {seconds * per:.0f} µs of wall clock each on {CORES} cores")
    for label, value in parts.items():
        print(f"    {label:<32} {value * per:7.1f} µs")
    print(f"    {'idle (nobody on a core)':<32} {idle * per:7.1f} µs")


def by_package(stats: pstats.Stats) -> dict[str, float]:
    """Own time (tottime) per package."""
    totals: dict[str, float] = defaultdict(float)
    for (filename, _line, _name), (_cc, _nc, tottime, _ct, _callers) in stats.stats.items():  # type: ignore[attr-defined]
        package = next((label for label, part in PACKAGES if part in filename), "other")
        if package == "other" and (filename.startswith(("~", "<")) or "/python3." in filename):
            package = "other Python (stdlib, builtins)"
        totals[package] += tottime
    return dict(sorted(totals.items(), key=lambda kv: -kv[1]))


async def main() -> None:
    quiet_logs()
    load = os.getloadavg()
    async with bench_bridge() as (redis, settings, receiver):
        await run(redis, settings, receiver)
    print(f"(load average {load[0]:.2f} at the start; {EVENTS:,} events each run)")


async def prepared(
    redis: aioredis.Redis, settings: Settings, receiver: ReceiverProcess
) -> tuple[Services, Subscription]:
    """What bench/delivery.py's unordered run sets up before its clock starts: 20,000 appended events."""
    await redis.flushdb()
    services = build(redis, settings, None)
    subscription = await services.subscriptions.create(url=receiver.url, ordered=False)
    await append_events(services)
    await receiver.reset()
    return services, subscription


async def run(redis: aioredis.Redis, settings: Settings, receiver: ReceiverProcess) -> None:
    pid = receiver_pid(receiver.port)
    print(f"delivery profile, concurrency {settings.delivery_concurrency}:")
    rate, _cpu, sent = await throughput(redis, settings, receiver, ordered=False)
    ceiling, _ = await raw_ceiling(settings, receiver, sent)
    print(
        f"  bench/delivery.py's figures: {rate:,.0f}/s against a ceiling of {ceiling:,.0f}/s: "
        f"{rate / ceiling:.2f}"
    )

    # The same run, measured from the worker's start to the last delivery (its setup left out).
    services, subscription = await prepared(redis, settings, receiver)
    await redis.config_resetstat()
    await handoff_ready(services)
    before, began = await cpu_now(redis, pid, services), time.perf_counter()
    await services.start_delivery()
    await until_delivered(services, subscription.id, EVENTS)
    seconds, used = time.perf_counter() - began, await cpu_now(redis, pid, services) - before
    commands = await redis.info("commandstats")
    await stop(services)
    show("unordered, the bridge", seconds, used, EVENTS)
    before, began = await cpu_now(redis, pid), time.perf_counter()
    await raw_ceiling(settings, receiver, sent)
    used = await cpu_now(redis, pid) - before
    show(
        "raw ceiling, aiohttp alone (signing its envelopes first included)",
        time.perf_counter() - began,
        used,
        EVENTS,
    )
    print("  Redis commands of the unordered run, per delivery:")
    ranked = sorted(commands.items(), key=lambda kv: -float(kv[1]["usec"]))
    for name, figures in ranked[:12]:
        calls, usec = int(figures["calls"]), float(figures["usec"])
        print(f"    {name.removeprefix('cmdstat_'):<24} {calls / EVENTS:6.2f} calls {usec / EVENTS:7.1f} µs")

    # Once more under cProfile, from the worker's start to the last delivery.
    services, subscription = await prepared(redis, settings, receiver)
    await handoff_ready(services)
    profiler = cProfile.Profile()
    profiler.enable()
    await services.start_delivery()
    await until_delivered(services, subscription.id, EVENTS)
    profiler.disable()
    await stop(services)
    stats = pstats.Stats(profiler)
    total = sum(stats.stats[k][2] for k in stats.stats)  # type: ignore[attr-defined]
    print("  the bench process under cProfile, own time by package (share of all profiled time):")
    for package, seconds in by_package(stats).items():
        print(f"    {package:<32} {seconds / total:6.1%}   {seconds / EVENTS * 1e6:7.1f} µs a delivery")
    print("  the 25 costliest functions by own time:")
    stats.sort_stats("tottime").print_stats(int(os.environ.get("PROFILE_ROWS", "25")))


if __name__ == "__main__":
    asyncio.run(main())
    sys.exit(0)
