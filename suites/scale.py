"""Scale: many schools, one `serve` then three replicas on one Redis, then three on a Redis Cluster.

    python -m suites.scale                  # 500 schools x (1,000 learners, 800 debtors), about 15 minutes
    python -m suites.scale --intervals 2    # two steady intervals per phase, about 25 minutes
    python -m suites.scale --schools 50 --interval 30     # a quick run
    python -m suites.scale --planning       # fixed against adaptive poll planning, a binding budget (5 min)

One simulator (generated once, reused by every phase) and a fresh store per phase:

1. one `serve` on one redis-server;
2. three `serve` replicas on a fresh redis-server;
3. the same three on a fresh Redis Cluster of three masters (`--cluster-enabled yes`, `redis-cli --cluster
   create`), with `BRIDGE_REDIS_CLUSTER=true`.

In each phase the replicas start on an empty store with `BRIDGE_EMIT_INITIAL_SNAPSHOT=false`: the first
cycle records every school's baseline silently (900,000 records would otherwise be 900,000 events). One
ordered subscription points at a loopback receiver that answers 200 at once. When every school has its
baseline, the simulator starts churning (`--churn` changes a second, spread over all schools) and the
suite watches `--intervals` more cycles, then stops the churn and waits until every event is delivered.

What is measured, and how:

- every 2 s the suite reads each school's poll status hash in Redis (`last_started`, `last_due`,
  `last_success`, record counts) and the CPU time and RSS of every process (from /proc). A poll is a
  distinct `last_started`; cycle k is every school's k-th poll, its wall time from the first start to the
  last success;
- the simulator's request log (`/_sim/requests`) gives every d6 request: each is attributed to the poll
  of its school that was running then, and each poll's pages are compared with its floor
  ceil(learners / 50) + ceil(debtors / 50), from the counts that poll recorded (as bench/d6_requests.py
  does, 50 being d6's `max_allowed_limit`). Requests outside any poll are extra. Integrations-list
  requests are counted apart. The busiest 5 s must stay within `BRIDGE_D6_MAX_RPS` (the shared budget);
- "each school polled exactly once per interval": the number of scans per school in the simulator's
  log must equal the polls seen in the status (no scan by a second replica), each poll must start at
  least an interval less the poller's tolerance after the due time the previous poll recorded (the
  poller's own rule: no second poll in one interval), and consecutive polls must start at most interval +
  jitter + one cycle's wall time apart (no interval skipped beyond the lag a queue drain explains);
- Redis INFO `used_memory` (summed over the masters) before, after the baselines (bytes per record) and
  at the end (with the events); CPU seconds per process over the first cycle and over the steady window,
  and per school-poll; peak RSS; events emitted (the replicas' counters) per second and deliveries per
  second, with the delivery latency (envelope timestamp to arrival).

Settings, chosen so that a full run fits 2 cores: `BRIDGE_D6_MAX_RPS=300` (32 poll workers per process,
more than one serve can spend on one core, so the shared budget is what three replicas run into),
`BRIDGE_SCHOOL_POLL_SECONDS=150` with the default jitter of 10% (15 s), integrations every 30 s. A cycle at
the floor is 18,036 requests: 60 s at 300 rps, and one serve needed 70 to 130 s of wall time for it on this
shared machine, so 150 s leaves room for a cycle and the jitter. With a shorter interval the bridge falls
behind and the suite measures the lag regime instead (schools polled less than once per interval). The
default watches one steady interval per phase (about 15 minutes in all); `--intervals 2` watches two.
The suite itself (receiver, sampling, merging the request log) runs in this process and shares the 2
cores; so does whatever else runs on the machine: the load average is printed with the figures.
"""

from __future__ import annotations

import argparse
import bisect
import dataclasses
import itertools
import math
import os
import re
import statistics
import sys
import tempfile
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import msgspec

from bridge.store.keys import Keys
from bridge.testing.receivers import Receiver, ReceiverServer
from bridge.testing.redis import RedisCluster, RedisServer
from bridge.testing.settings import serve_env
from suites import planning
from suites.bridge_api import BridgeApi
from suites.processes import (
    Processes,
    Serve,
    Simulator,
    cpu_seconds,
    rss_bytes,
    start_serves,
    stop_serves,
)
from suites.report import Report

PAGE_LIMIT = 50
SAMPLE_SECONDS = 2.0
# Each school's poll is followed through its learners feed (the largest); the debtors feed adds its count.
STATUS_FIELDS = (
    "learners.last_started",
    "learners.last_due",
    "learners.last_success",
    "learners.count",
    "debtors.count",
)
SCHOOL_PATHS = ("/learners", "/accountablepersons")
INTEGRATIONS_PATH = "/clientintegrations"


# -- the webhook receiver ------------------------------------------------------------------------------


def arrivals(receiver: Receiver) -> list[tuple[float, str, str]]:
    """(arrival, event id, envelope timestamp) of every webhook the receiver answered."""
    entries = []
    for request in receiver.received:
        try:
            envelope = request.json
            entries.append((request.at, str(envelope["id"]), str(envelope["timestamp"])))
        except (msgspec.DecodeError, KeyError, TypeError):
            entries.append((request.at, "", ""))
    return entries


def rfc3339(text: str) -> float:
    """Unix time of the envelope's `timestamp` (`2026-11-22T11:02:03.123456Z`)."""
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


# -- what a phase observes -----------------------------------------------------------------------------


@dataclass
class Poll:
    started: float
    due: float
    success: float | None = None
    learners: int | None = None
    debtors: int | None = None

    @property
    def floor(self) -> int | None:
        if self.learners is None or self.debtors is None:
            return None
        return math.ceil(self.learners / PAGE_LIMIT) + math.ceil(self.debtors / PAGE_LIMIT)


class RequestLog:
    """The simulator's request log, read every `COLLECT_SECONDS` and merged: it keeps only the last
    100,000 requests, fewer than a phase sends."""

    def __init__(self, sim: Simulator) -> None:
        self.sim = sim
        self.entries: dict[tuple[Any, ...], dict[str, Any]] = {}
        self.collected = 0.0

    def collect(self) -> None:
        for entry in self.sim.requests():
            key = (entry["t"], entry["path"], entry["school_id"], entry["query"].get("cursor"))
            self.entries[key] = entry
        self.collected = time.monotonic()

    def all(self) -> list[dict[str, Any]]:
        self.collect()
        return sorted(self.entries.values(), key=lambda e: e["t"])


COLLECT_SECONDS = 60.0


class Watcher:
    """Samples every school's poll status (pipelined) and the processes; merges the request log."""

    def __init__(
        self, client: Any, keys: Keys, schools: list[int], processes: Processes, requests: RequestLog
    ) -> None:
        self.client = client
        self.keys = keys
        self.schools = schools
        self.processes = processes
        self.requests = requests
        self.polls: dict[int, dict[float, Poll]] = {s: {} for s in schools}
        self.last_sample = 0.0

    def sample(self) -> None:
        pipe = self.client.pipeline(transaction=False)
        for school_id in self.schools:
            pipe.hmget(self.keys.poll_status(school_id), list(STATUS_FIELDS))
        answers = pipe.execute()
        self.last_sample = time.time()
        for school_id, values in zip(self.schools, answers, strict=True):
            started, due, success, learners, debtors = (v.decode() if v is not None else None for v in values)
            if started is None:
                continue
            began = float(started)
            poll = self.polls[school_id].get(began)
            if poll is None:
                poll = self.polls[school_id][began] = Poll(began, float(due) if due else began)
            if success is not None and float(success) >= began:
                poll.success = float(success)
                poll.learners = int(learners) if learners else None
                poll.debtors = int(debtors) if debtors else None
        self.processes.sample_rss()
        if time.monotonic() - self.requests.collected > COLLECT_SECONDS:
            self.requests.collect()

    def completed(self, school_id: int) -> int:
        return sum(1 for p in self.polls[school_id].values() if p.success is not None)

    def wait(self, until: Callable[[], bool], timeout: float, report: Report, what: str) -> bool:
        deadline = time.monotonic() + timeout
        last_note = time.monotonic()
        while True:
            self.sample()
            if until():
                return True
            if time.monotonic() > deadline:
                return False
            if time.monotonic() - last_note > 20:
                done = sorted(self.completed(s) for s in self.schools)
                report.note(f"  waiting for {what}: completed polls per school min {done[0]}, max {done[-1]}")
                last_note = time.monotonic()
            time.sleep(SAMPLE_SECONDS)

    def ordered(self, school_id: int) -> list[Poll]:
        return [self.polls[school_id][k] for k in sorted(self.polls[school_id])]


# -- one phase ----------------------------------------------------------------------------------------


@dataclass
class PhaseResult:
    name: str
    serves: int
    first_cycle: float = 0.0
    steady_cycles: list[float] = field(default_factory=list)
    requests_per_cycle: float = 0.0
    floor_per_cycle: float = 0.0
    ratio: float = 0.0
    extra_requests: int = 0
    integration_requests: int = 0
    peak_rps: float = 0.0
    memory_baseline: int = 0
    bytes_per_record: float = 0.0
    memory_end: int = 0
    cpu_first: dict[str, float] = field(default_factory=dict)
    cpu_steady_per_cycle: dict[str, float] = field(default_factory=dict)
    cpu_per_poll_first_ms: float = 0.0
    cpu_per_poll_steady_ms: float = 0.0
    peak_rss: dict[str, int] = field(default_factory=dict)
    events: int = 0
    events_per_second: float = 0.0
    detection_per_second: float = 0.0
    deliveries: int = 0
    deliveries_per_second: float = 0.0
    latency_p50: float = 0.0
    latency_p95: float = 0.0
    polls_by_replica: dict[str, int] = field(default_factory=dict)
    outcomes_by_replica: dict[str, dict[str, int]] = field(default_factory=dict)
    stop_seconds: dict[str, float] = field(default_factory=dict)
    scans_per_school: tuple[int, int] = (0, 0)
    gap_percentiles: str = ""
    scans_ok: str = ""
    due_gap: tuple[float, float] = (0.0, 0.0)
    after_due: float = 0.0
    start_gap: tuple[float, float] = (0.0, 0.0)
    load: str = ""


def metric_sum(text: str, name: str, **labels: str) -> float:
    """Sum of a Prometheus series' samples whose labels include `labels`."""
    total = 0.0
    pattern = re.compile(rf"^{re.escape(name)}(\{{[^}}]*\}})?\s+([0-9.eE+-]+)$")
    for line in text.splitlines():
        match = pattern.match(line)
        if not match:
            continue
        found = dict(re.findall(r'(\w+)="([^"]*)"', match.group(1) or ""))
        if all(found.get(k) == v for k, v in labels.items()):
            total += float(match.group(2))
    return total


def loadavg() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def run_phase(
    name: str,
    *,
    replicas: int,
    store: RedisServer | RedisCluster,
    sim: Simulator,
    receiver: ReceiverServer,
    workdir: Path,
    args: argparse.Namespace,
    report: Report,
) -> PhaseResult:
    result = PhaseResult(name, replicas)
    interval, jitter = args.interval, args.interval * 0.1
    tolerance = jitter + min(1.0, interval / 20)
    report.note(f"phase {name}: starting the store")
    store.start()
    memory_empty = store.used_memory()
    sim.churn(0)
    sim.reset_stats()
    receiver.receiver.reset()
    env = serve_env(
        store.url,
        sim.base_url,
        BRIDGE_D6_MAX_RPS=str(args.max_rps),
        BRIDGE_SCHOOL_POLL_SECONDS=str(interval),
        BRIDGE_POLL_JITTER_SECONDS=str(jitter),
        BRIDGE_INTEGRATIONS_POLL_SECONDS=str(args.integrations_interval),
        BRIDGE_EMIT_INITIAL_SNAPSHOT="false",
        BRIDGE_DELIVERY_TIMEOUT_SECONDS="10",
        BRIDGE_REDIS_CLUSTER="true" if isinstance(store, RedisCluster) else "false",
        BRIDGE_LOG_LEVEL="info",
    )
    phase_dir = workdir / name
    phase_dir.mkdir()
    serves = [Serve(f"serve-{n + 1}", phase_dir, env) for n in range(replicas)]
    client = store.client(socket_timeout=30)
    try:
        start_serves(serves, timeout=120)
        api = BridgeApi(lambda: [s.url for s in serves if s.alive])
        api.create_subscription(receiver.hook_url, ordered=True)
        processes = Processes(
            {"simulator": sim.pid, **store.pids, **{s.name: s.pid for s in serves}, "suite": os.getpid()}
        )
        requests = RequestLog(sim)
        requests.collect()
        watcher = Watcher(client, Keys("d6b"), sim.school_ids, processes, requests)
        phase_t0 = time.time()
        cpu0 = processes.cpu()
        report.note(f"phase {name}: {replicas} serve ready; first cycle (silent baselines)")
        first_timeout = args.first_timeout
        ok = watcher.wait(
            lambda: all(watcher.completed(s) >= 1 for s in sim.school_ids), first_timeout, report, "baselines"
        )
        report.check(ok, f"{name}: not every school had its first poll within {first_timeout:.0f} s")
        cpu1 = processes.cpu()
        t1 = time.time()
        result.memory_baseline = store.used_memory() - memory_empty
        records = sum(
            (p.learners or 0) + (p.debtors or 0) for s in sim.school_ids for p in watcher.ordered(s)[:1]
        )
        result.bytes_per_record = result.memory_baseline / max(1, records)
        report.note(
            f"phase {name}: baselines done in {t1 - phase_t0:.0f} s, {records:,} records, "
            f"Redis {mib(result.memory_baseline)}; churn {args.churn}/s for {args.intervals} cycles"
        )
        sim.churn(args.churn)
        window_t0 = time.time()
        target = 1 + args.intervals
        ok = watcher.wait(
            lambda: all(watcher.completed(s) >= target for s in sim.school_ids),
            (args.intervals + 1.5) * interval + 120,
            report,
            f"{args.intervals} steady cycles",
        )
        report.check(ok, f"{name}: not every school had {args.intervals} steady polls in time")
        window_t1 = watcher.last_sample
        cpu2 = processes.cpu()
        sim.churn(0)
        result.load = loadavg()
        metrics_text = {s.name: httpx.get(f"{s.url}/metrics", timeout=30).text for s in serves}
        events = int(sum(metric_sum(t, "d6_bridge_events_emitted_total") for t in metrics_text.values()))
        report.note(f"phase {name}: {events} events emitted; waiting for their delivery")
        drain_deadline = time.monotonic() + args.drain_timeout
        while time.monotonic() < drain_deadline:
            metrics_text = {s.name: httpx.get(f"{s.url}/metrics", timeout=30).text for s in serves}
            events = int(sum(metric_sum(t, "d6_bridge_events_emitted_total") for t in metrics_text.values()))
            if len(set(receiver.receiver.ids())) >= events:
                break
            time.sleep(1)
        log = requests.all()
        analyse(result, watcher, log, report, name=name, args=args, tolerance=tolerance)
        result.events = events
        busy_seconds = sum(result.steady_cycles)
        result.detection_per_second = events / busy_seconds if busy_seconds else 0.0
        arrived = arrivals(receiver.receiver)
        delivered = {a[1] for a in arrived}
        report.check(len(delivered) >= events, f"{name}: {events - len(delivered)} events not delivered")
        result.deliveries = len(arrived)
        window = window_t1 - window_t0
        result.events_per_second = events / window if window > 0 else 0.0
        busy = [a for a in arrived if a[2]]
        if busy:
            span = max(a[0] for a in busy) - min(a[0] for a in busy)
            result.deliveries_per_second = len(busy) / span if span > 0 else 0.0
            latencies = sorted(a[0] - rfc3339(a[2]) for a in busy)
            result.latency_p50 = latencies[len(latencies) // 2]
            result.latency_p95 = latencies[int(len(latencies) * 0.95)]
        result.polls_by_replica = {
            n: int(metric_sum(t, "d6_bridge_polls_total", resource="school", outcome="ok"))
            for n, t in metrics_text.items()
        }
        result.outcomes_by_replica = {
            n: {
                o: int(metric_sum(t, "d6_bridge_polls_total", resource="school", outcome=o))
                for o in ("ok", "skipped", "busy", "failed", "lost_lease")
            }
            for n, t in metrics_text.items()
        }
        dump = {
            "polls": {s: [dataclasses.asdict(p) for p in watcher.ordered(s)] for s in sim.school_ids},
            "requests": log,
            "arrivals": arrived,
        }
        (phase_dir / "observed.json").write_bytes(msgspec.json.encode(dump))
        steady_polls = sum(result.polls_by_replica.values()) - len(sim.school_ids)
        result.cpu_first = {k: cpu1[k] - cpu0.get(k, 0.0) for k in cpu1}
        cycles = max(1, args.intervals)
        result.cpu_steady_per_cycle = {k: (cpu2[k] - cpu1.get(k, 0.0)) / cycles for k in cpu2}
        serve_first = sum(v for k, v in result.cpu_first.items() if k.startswith("serve"))
        serve_steady = sum(v for k, v in result.cpu_steady_per_cycle.items() if k.startswith("serve"))
        result.cpu_per_poll_first_ms = 1000 * serve_first / len(sim.school_ids)
        result.cpu_per_poll_steady_ms = 1000 * serve_steady * cycles / max(1, steady_polls)
        result.memory_end = store.used_memory() - memory_empty
        result.peak_rss = dict(processes.peak_rss)
        if replicas > 1:
            least = min(result.polls_by_replica.values())
            report.check(
                least >= 0.1 * sum(result.polls_by_replica.values()) / replicas,
                f"{name}: a replica starves: school polls by replica {result.polls_by_replica}",
            )
        for serve in serves:
            report.check(
                serve.alive, f"{name}: {serve.name} died (exit {serve.process and serve.process.poll()})"
            )
    finally:
        client.close()
        stopped = stop_serves(serves, timeout=60)
        codes = {name: code for name, (code, _seconds) in stopped.items()}
        result.stop_seconds = {name: round(seconds, 1) for name, (_code, seconds) in stopped.items()}
        store.stop()
    report.check(all(c == 0 for c in codes.values()), f"{name}: exit codes on SIGTERM {codes}")
    report.note(f"phase {name}: done")
    return result


def analyse(
    result: PhaseResult,
    watcher: Watcher,
    log: list[dict[str, Any]],
    report: Report,
    *,
    name: str,
    args: argparse.Namespace,
    tolerance: float,
) -> None:
    """Cycles, requests against the floor, scans per school, gaps between polls, the request rate."""
    interval, jitter = args.interval, args.interval * 0.1
    schools = watcher.schools
    times: dict[int, list[float]] = defaultdict(list)
    scans: Counter[int] = Counter()
    integration_requests = 0
    all_times: list[float] = []
    for entry in log:
        path = entry["path"]
        all_times.append(entry["t"])
        if path.endswith(INTEGRATIONS_PATH):
            integration_requests += 1
        elif path.endswith(SCHOOL_PATHS) and entry["school_id"] is not None:
            times[int(entry["school_id"])].append(entry["t"])
            if path.endswith("/learners") and "cursor" not in entry["query"]:
                scans[int(entry["school_id"])] += 1
    result.integration_requests = integration_requests
    # cycle k = every school's k-th completed poll
    completed = {s: [p for p in watcher.ordered(s) if p.success is not None] for s in schools}
    depth = min(len(v) for v in completed.values())
    cycles: list[float] = []
    for k in range(depth):
        polls = [completed[s][k] for s in schools]
        cycles.append(max(p.success or 0.0 for p in polls) - min(p.started for p in polls))
    if cycles:
        result.first_cycle = cycles[0]
        result.steady_cycles = cycles[1:]
    # requests: each attributed to the poll of its school running at the time
    attributed = floor = extra = 0
    steady_requests = steady_floor = 0
    for school_id in schools:
        stamps = sorted(times.get(school_id, []))
        used = 0
        for index, poll in enumerate(completed[school_id]):
            lo = bisect.bisect_left(stamps, poll.started - 0.05)
            hi = bisect.bisect_right(stamps, (poll.success or poll.started) + 0.05)
            count = hi - lo
            used += count
            attributed += count
            floor += poll.floor or 0
            if index >= 1:
                steady_requests += count
                steady_floor += poll.floor or 0
        # requests of polls still running at the end are not extra; the ones before the last start are
        last = max((p.started for p in watcher.ordered(school_id)), default=0.0)
        before_last = bisect.bisect_left(stamps, last - 0.05)
        extra += max(0, before_last - used)
    result.extra_requests = extra
    steady_cycles = max(1, depth - 1)
    result.requests_per_cycle = steady_requests / steady_cycles
    result.floor_per_cycle = steady_floor / steady_cycles
    result.ratio = attributed / floor if floor else 0.0
    report.check(attributed == floor, f"{name}: {attributed} requests in polls, floor {floor}")
    report.check(extra == 0, f"{name}: {extra} d6 requests outside any complete poll")
    # scans per school in the log == polls seen in the status (up to the last sample)
    mismatched = []
    for school_id in schools:
        seen = sum(1 for p in watcher.ordered(school_id) if p.started <= watcher.last_sample)
        logged = scans[school_id]
        if logged != seen and not (logged == seen + 1 and max(times[school_id]) > watcher.last_sample):
            mismatched.append((school_id, logged, seen))
    result.scans_ok = f"{len(schools) - len(mismatched)}/{len(schools)}"
    report.check(
        not mismatched,
        f"{name}: learner scans in the d6 log differ from polls seen (school, scans, polls): "
        f"{mismatched[:5]}",
    )
    # gaps between consecutive polls of a school
    due_gaps: list[float] = []
    start_gaps: list[float] = []
    after_due: list[float] = []
    longest_cycle = max(cycles[1:] or cycles or [0.0])
    for school_id in schools:
        polls = completed[school_id]
        for before, after in itertools.pairwise(polls):
            due_gaps.append(after.due - before.due)
            start_gaps.append(after.started - before.started)
            after_due.append(after.started - before.due)
    per_school = [len(completed[s]) for s in schools]
    result.scans_per_school = (min(per_school), max(per_school))
    if start_gaps:
        ordered = sorted(start_gaps)
        cut = {q: ordered[min(len(ordered) - 1, int(q / 100 * len(ordered)))] for q in (5, 50, 95)}
        result.gap_percentiles = ", ".join(f"p{q} {v:.0f} s" for q, v in cut.items())
    if due_gaps:
        result.due_gap = (min(due_gaps), max(due_gaps))
        result.start_gap = (min(start_gaps), max(start_gaps))
        # the poller's rule: due again one interval (less the tolerance) after the due time the last poll
        # recorded; that due time is the polling replica's job fire time, which may be earlier than the
        # moment the school became due again, so due times alone may be closer than an interval
        result.after_due = min(after_due)
        early = [g for g in after_due if g < interval - tolerance - 0.01]
        report.check(
            not early, f"{name}: {len(early)} polls started within an interval of the last poll's due time"
        )
        limit = interval + jitter + longest_cycle + 2 * SAMPLE_SECONDS
        late = [g for g in start_gaps if g > limit]
        report.check(not late, f"{name}: {len(late)} polls started more than {limit:.0f} s after the last")
    # the busiest 5 s of d6 requests against the shared budget
    all_times.sort()
    busiest = 0
    lo = 0
    for hi, t in enumerate(all_times):
        while all_times[lo] < t - 5.0:
            lo += 1
        busiest = max(busiest, hi - lo + 1)
    result.peak_rps = busiest / 5.0
    report.check(
        busiest <= 5 * args.max_rps + 2,
        f"{name}: {busiest} d6 requests within 5 s, above the budget {args.max_rps}/s",
    )


# -- the report ---------------------------------------------------------------------------------------


def mib(value: float) -> str:
    return f"{value / 2**20:,.0f} MiB"


def describe(report: Report, result: PhaseResult, schools: int) -> None:
    p = f"{result.name}: "
    steady = ", ".join(f"{c:.0f}" for c in result.steady_cycles)
    report.figure(p + "first cycle (baselines) / steady cycles", f"{result.first_cycle:.0f} s / {steady} s")
    report.figure(
        p + "d6 requests per steady cycle / floor",
        f"{result.requests_per_cycle:,.0f} / {result.floor_per_cycle:,.0f} "
        f"(all polls {result.ratio:.3f} x floor, {result.extra_requests} extra, "
        f"{result.integration_requests} integrations-list requests)",
    )
    report.figure(p + "busiest 5 s of d6 requests", f"{result.peak_rps:.0f} requests/s")
    report.figure(
        p + "Redis used_memory: baselines / end",
        f"{mib(result.memory_baseline)} ({result.bytes_per_record:.0f} bytes/record) / "
        f"{mib(result.memory_end)}",
    )
    first = ", ".join(f"{k} {v:.1f}" for k, v in result.cpu_first.items())
    steady_cpu = ", ".join(f"{k} {v:.1f}" for k, v in result.cpu_steady_per_cycle.items())
    report.figure(p + "CPU s, first cycle", first)
    report.figure(p + "CPU s per steady cycle", steady_cpu)
    report.figure(
        p + "serve CPU per school-poll: first / steady",
        f"{result.cpu_per_poll_first_ms:.0f} ms / {result.cpu_per_poll_steady_ms:.0f} ms",
    )
    report.figure(p + "peak RSS", ", ".join(f"{k} {mib(v)}" for k, v in result.peak_rss.items()))
    report.figure(
        p + "events / deliveries",
        f"{result.events} events ({result.events_per_second:.1f}/s over the window, "
        f"{result.detection_per_second:.0f}/s while a cycle detects), {result.deliveries} deliveries "
        f"({result.deliveries_per_second:.1f}/s), latency p50 {result.latency_p50:.1f} s, "
        f"p95 {result.latency_p95:.1f} s",
    )
    report.figure(
        p + "school polls by replica (ok/skipped/busy)",
        {
            n: "/".join(str(o[k]) for k in ("ok", "skipped", "busy"))
            for n, o in result.outcomes_by_replica.items()
        },
    )
    report.figure(p + "SIGTERM to exit", result.stop_seconds)
    report.figure(
        p + "polls per school over the phase; start gaps",
        f"{result.scans_per_school[0]}..{result.scans_per_school[1]}; {result.gap_percentiles}",
    )
    report.figure(
        p + "scans = polls per school; gaps (due, start)",
        f"{result.scans_ok}; start after the last due >= {result.after_due:.1f} s; "
        f"due {result.due_gap[0]:.1f}..{result.due_gap[1]:.1f} s, "
        f"start {result.start_gap[0]:.1f}..{result.start_gap[1]:.1f} s",
    )
    report.figure(p + "load average at the end", result.load)


def arithmetic(report: Report, results: list[PhaseResult], args: argparse.Namespace) -> None:
    """The figures for 2,500 schools of the same size."""
    n = 2500
    per_school = math.ceil(args.learners / PAGE_LIMIT) + math.ceil(args.debtors / PAGE_LIMIT)
    cycle = n * per_school
    records = n * (args.learners + args.debtors)
    bpr = statistics.median(r.bytes_per_record for r in results)
    cpu_ms = statistics.median(r.cpu_per_poll_steady_ms for r in results)
    cpu_first_ms = statistics.median(r.cpu_per_poll_first_ms for r in results)
    report.figure(
        "2,500 schools: requests per cycle", f"{cycle:,} (+ {math.ceil(n / 50)} per integrations poll)"
    )
    report.figure(
        "2,500 schools: rps needed",
        f"{cycle / 300:.0f} at T=300 s, {cycle / 3600:.1f} at 1 h; "
        f"at 10 rps a cycle is {cycle / 10 / 3600:.1f} h",
    )
    report.figure(
        "2,500 schools: Redis snapshots",
        f"{records:,} records x {bpr:.0f} bytes = {records * bpr / 2**30:.2f} GiB (before events)",
    )
    report.figure(
        "2,500 schools: serve CPU per cycle",
        f"{n * cpu_ms / 1000:.0f} s steady ({cpu_ms:.0f} ms/poll), {n * cpu_first_ms / 1000:.0f} s baselines",
    )


# -- main ---------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if "--planning" in argv:  # fixed against adaptive poll planning, a binding budget (suites/planning.py)
        return planning.main([arg for arg in argv if arg != "--planning"])
    parser = argparse.ArgumentParser(prog="python -m suites.scale", description=__doc__.split("\n")[0])
    parser.add_argument("--schools", type=int, default=500)
    parser.add_argument("--learners", type=int, default=1000)
    parser.add_argument("--debtors", type=int, default=800)
    parser.add_argument(
        "--interval", type=float, default=150.0, help="BRIDGE_SCHOOL_POLL_SECONDS (default 150)"
    )
    parser.add_argument("--max-rps", type=float, default=300.0, help="BRIDGE_D6_MAX_RPS (default 300)")
    parser.add_argument("--integrations-interval", type=float, default=30.0)
    parser.add_argument(
        "--intervals", type=int, default=1, help="steady cycles watched per phase (default 1)"
    )
    parser.add_argument("--churn", type=float, default=50.0, help="simulator changes per second (default 50)")
    parser.add_argument("--first-timeout", type=float, default=600.0, help="longest first cycle (s)")
    parser.add_argument("--drain-timeout", type=float, default=120.0, help="longest wait for deliveries (s)")
    parser.add_argument(
        "--phases", default="single,replicas,cluster", help="comma list of single, replicas, cluster"
    )
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--keep-logs", action="store_true")
    args = parser.parse_args(argv)

    report = Report("scale")
    workdir = Path(tempfile.mkdtemp(prefix="suite-scale-"))
    report.note(f"work directory {workdir}; load average {loadavg()}")
    sim = Simulator(
        workdir, schools=args.schools, learners=args.learners, debtors=args.debtors, seed=args.seed
    )
    server = ReceiverServer(Receiver(name="scale"))
    results: list[PhaseResult] = []
    started = time.monotonic()
    try:
        sim.start()
        generated = time.monotonic() - started
        report.note(
            f"simulator: {args.schools} schools x ({args.learners} learners, {args.debtors} debtors) "
            f"generated in {generated:.1f} s, RSS {mib(rss_bytes(sim.pid))}, CPU {cpu_seconds(sim.pid):.1f} s"
        )
        report.figure("simulator generation", f"{generated:.1f} s, RSS {mib(rss_bytes(sim.pid))}")
        server.start()
        plan = {
            "single": (1, RedisServer),
            "replicas": (3, RedisServer),
            "cluster": (3, RedisCluster),
        }
        for phase in [p.strip() for p in args.phases.split(",") if p.strip()]:
            replicas, kind = plan[phase]
            store = kind(workdir / f"store-{phase}")
            results.append(
                run_phase(
                    phase,
                    replicas=replicas,
                    store=store,
                    sim=sim,
                    receiver=server,
                    workdir=workdir,
                    args=args,
                    report=report,
                )
            )
        for result in results:
            describe(report, result, args.schools)
        if results:
            arithmetic(report, results, args)
    finally:
        server.stop()
        sim.stop()
        report.keep_or_remove(workdir, keep=args.keep_logs)
    return report.finish()


if __name__ == "__main__":
    sys.exit(main())
