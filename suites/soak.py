"""Soak: the bridge left running under churn and flaky receivers; memory, Redis and latency over time.

    python -m suites.soak                  # 6 minutes (the default, for CI)
    python -m suites.soak --minutes 60     # the long run

The chaos suite's deployment (two `serve` replicas on one Redis, 10 schools with churn, three flaky
receivers: 20% 500s, 10% 500s and 10% stalls past the delivery timeout, 5% and 5%), with
`BRIDGE_EVENT_RETENTION_DAYS` short (0.001 days = 86 s by default) so that retention runs many times in
the window and Redis must stop growing once it does. Every `--sample` seconds: the RSS of each serve,
Redis `used_memory`, the number of keys and of events held in the school logs, and the delivery latency
of every webhook that succeeded in the window (receiver clock minus the time in the event id, so it
includes retries after the receivers' failures).

The first `retention + 60 s` are warm-up (caches fill, retention has not removed anything yet). The rest
is split in halves, and each figure of the second half is compared with the first:

- each serve's median RSS grows by at most 10% + 5 MB;
- Redis' median `used_memory` by at most 15%, and the events held stay within 1.5x (retention works);
- the median delivery latency by at most 2x + 50 ms (nothing backs up).

At the end the churn stops, the receivers heal and everything settles: every event still in the logs
(older ones were removed by retention) reached every subscription it matches, ordered ones in order.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from dataclasses import dataclass, field

from bridge.events.ids import event_id_ms
from suites.checks import check_deliveries, read_log
from suites.deployment import Deployment, Layout
from suites.processes import rss_bytes
from suites.report import Report

MB = 1024 * 1024


@dataclass
class Sample:
    at: float
    rss: dict[str, int]
    redis_memory: int
    keys: int
    events_held: int
    latencies: list[float] = field(default_factory=list)


def percentile(values: list[float], fraction: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


class Sampler:
    def __init__(self, deployment: Deployment) -> None:
        self.deployment = deployment
        self.samples: list[Sample] = []
        self._seen = {name: 0 for name in deployment.endpoints}
        self.started = time.monotonic()

    def take(self) -> Sample:
        d = self.deployment
        client = d.client()
        try:
            held = sum(int(client.xlen(d.keys.school_events(s))) for s in d.sim.school_ids)
            sample = Sample(
                at=time.monotonic() - self.started,
                rss={s.name: rss_bytes(s.pid) for s in d.serves if s.alive},
                redis_memory=int(client.info("memory")["used_memory"]),
                keys=int(client.dbsize()),
                events_held=held,
            )
        finally:
            client.close()
        for name, (_spec, server) in d.endpoints.items():
            receipts = server.receiver.snapshot()
            for receipt in receipts[self._seen[name] :]:
                if receipt.ok and receipt.event_id:
                    sample.latencies.append(receipt.at - event_id_ms(receipt.event_id) / 1000)
            self._seen[name] = len(receipts)
        self.samples.append(sample)
        return sample


def median(values: list[float]) -> float:
    return statistics.median(values) if values else 0.0


def compare(report: Report, samples: list[Sample], warmup: float) -> None:
    steady = [s for s in samples if s.at >= warmup]
    if len(steady) < 4:
        report.check(False, f"only {len(steady)} samples after the warm-up: run longer (--minutes)")
        return
    half = len(steady) // 2
    first, second = steady[:half], steady[half:]
    span = f"{first[0].at:.0f}-{first[-1].at:.0f} s vs {second[0].at:.0f}-{second[-1].at:.0f} s"
    report.figure("windows compared", span)
    for name in sorted({n for s in steady for n in s.rss}):
        a = median([s.rss[name] for s in first if name in s.rss])
        b = median([s.rss[name] for s in second if name in s.rss])
        report.figure(f"{name} RSS (median)", f"{a / MB:.1f} MB -> {b / MB:.1f} MB")
        report.check(b <= a * 1.10 + 5 * MB, f"{name} RSS grew from {a / MB:.1f} MB to {b / MB:.1f} MB")
    a, b = median([s.redis_memory for s in first]), median([s.redis_memory for s in second])
    report.figure("Redis used_memory (median)", f"{a / MB:.1f} MB -> {b / MB:.1f} MB")
    report.check(b <= a * 1.15, f"Redis memory grew from {a / MB:.1f} MB to {b / MB:.1f} MB")
    a, b = median([s.events_held for s in first]), median([s.events_held for s in second])
    report.figure("events held in the logs (median)", f"{a:.0f} -> {b:.0f}")
    report.check(b <= a * 1.5 + 10, f"events held grew from {a:.0f} to {b:.0f}: retention is not keeping up")
    a_lat = [x for s in first for x in s.latencies]
    b_lat = [x for s in second for x in s.latencies]
    report.figure(
        "delivery latency p50 / p99",
        f"{median(a_lat) * 1000:.0f} / {percentile(a_lat, 0.99) * 1000:.0f} ms -> "
        f"{median(b_lat) * 1000:.0f} / {percentile(b_lat, 0.99) * 1000:.0f} ms "
        f"({len(a_lat)} and {len(b_lat)} deliveries)",
    )
    report.check(
        median(b_lat) <= median(a_lat) * 2 + 0.05,
        f"median delivery latency rose from {median(a_lat) * 1000:.0f} to {median(b_lat) * 1000:.0f} ms",
    )


def final_check(deployment: Deployment, report: Report) -> None:
    """Every event still in the logs reached every subscription it matches (ordered ones in order)."""
    client = deployment.client()
    try:
        events = [e for s in deployment.sim.school_ids for e in read_log(client, s)]
    finally:
        client.close()
    logged = {e["id"] for e in events}
    deployment.collect_dead()
    lost = 0
    for name, (spec, server) in deployment.endpoints.items():
        receipts = [r for r in server.receiver.snapshot() if r.event_id in logged]
        figures = check_deliveries(spec, events, receipts, deployment.dead[name])
        report.extend(figures.problems)
        lost += figures.lost
        report.figure(
            f"{name} (events still held)",
            f"expected {figures.expected}, delivered {figures.delivered}, duplicates {figures.duplicates}, "
            f"lost {figures.lost}" + (f", out of order {figures.out_of_order}" if spec.ordered else ""),
        )
    report.figure("events still held at the end / lost", f"{len(events)} / {lost}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m suites.soak", description=__doc__.split("\n")[0])
    parser.add_argument("--minutes", type=float, default=6.0, help="length of the run (default 6)")
    parser.add_argument("--sample", type=float, default=10.0, help="seconds between samples (default 10)")
    parser.add_argument("--retention-days", type=float, default=0.001, help="BRIDGE_EVENT_RETENTION_DAYS")
    parser.add_argument("--churn", type=float, default=5.0, help="simulator changes per second")
    parser.add_argument("--schools", type=int, default=10)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--keep-logs", action="store_true")
    args = parser.parse_args(argv)

    report = Report("soak")
    retention = args.retention_days * 86400
    warmup = retention + 60
    layout = Layout(
        schools=args.schools,
        churn=args.churn,
        seed=args.seed,
        serves=2,
        keep_logs=args.keep_logs,
        env={"BRIDGE_EVENT_RETENTION_DAYS": str(args.retention_days)},
    )
    with Deployment(layout, report) as deployment:
        sampler = Sampler(deployment)
        deadline = sampler.started + args.minutes * 60
        while time.monotonic() < deadline:
            time.sleep(args.sample)
            sample = sampler.take()
            if len(sampler.samples) % 6 == 0:
                report.note(
                    f"RSS {', '.join(f'{n} {v / MB:.0f} MB' for n, v in sample.rss.items())}; "
                    f"Redis {sample.redis_memory / MB:.1f} MB, {sample.keys} keys, "
                    f"{sample.events_held} events held; p50 latency "
                    f"{median(sample.latencies) * 1000:.0f} ms over {len(sample.latencies)} deliveries"
                )
        report.figure(
            "run / warm-up / retention", f"{args.minutes:g} min / {warmup:.0f} s / {retention:.0f} s"
        )
        report.figure("samples", len(sampler.samples))
        compare(report, sampler.samples, warmup)
        report.note("churn stopped; settling")
        deployment.settle()
        final_check(deployment, report)
    report.check(deployment.clean_exits, "a serve did not exit 0 on SIGTERM at the end")
    return report.finish()


if __name__ == "__main__":
    sys.exit(main())
