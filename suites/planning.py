"""Poll planning in real processes: `fixed` and `adaptive` side by side, a binding d6 budget, skewed churn.

    python -m suites.scale --planning                 # 40 schools, 5 requests/s each bridge, about 5 minutes
    python -m suites.scale --planning --skew 1.5 --window 180
    python -m suites.scale --planning --hours school   # the churn keeps school hours over a compressed week

One simulator (40 schools of 100 learners and 150 debtors: 5 pages a school, 200 a round), one Redis, and
two `d6-bridge serve` processes on it under their own prefixes, so each has its own store and its own d6
budget: one with `BRIDGE_POLL_PLANNING=fixed`, one with `adaptive`. Both poll the same simulator, so both see
the very same changes. Each may send 5 requests a second and wants every feed every 5 s (40 requests a
second): the budget binds eightfold, and a `fixed` round takes about 41 s. `BRIDGE_MAX_POLL_SECONDS` is 90.

Both take their silent baselines; then the simulator churns (`--churn` changes a second, skewed: the school
of rank r in id order makes a share as 1/r^`--skew`). After `--warmup` seconds of learning, the changes of
the next `--window` seconds are measured; then the churn stops and the suite waits until every feed of both
bridges has been polled again. Each change in `/_sim/changes` (school, resource, record key, when) is
matched to the first event of each bridge with the same school, resource and `resource_id` whose
timestamp (when the bridge detected it) is not earlier; its detection lag is the difference. Changes no
event tells (a learner created and removed between two polls, a field changed and changed back) are
counted apart. The poll status of every feed is sampled every 2 s for the gaps between polls.

With `--hours school` or `--hours mixed` the churn follows the week of bench/freshness.py compressed into
`--week-seconds` of wall time (by default the window: the window is one whole week, Monday 00:00 to Sunday
24:00, and the warm-up the end of the week before): a school changes at its share x its week's factor for
the compressed hour (weekdays 07:00 to 17:00 full rate, evenings a quarter, nights 2%, weekends 5% by day
and 1% by night; `mixed`: by id, a day school, an afternoon and evening office or a boarding school). Each
week's factors average 1.0, so a whole week makes as many changes as `--churn` at a constant rate and the
runs compare. The changes of the window are printed by the part of a day school's week they fell in,
beside the shares the hours predict.

Passes when adaptive's mean lag is at most 0.6 x fixed's, each bridge told at least 90% of the changes,
and no feed of `adaptive` went longer than BRIDGE_MAX_POLL_SECONDS between polls in the window.
"""

from __future__ import annotations

import argparse
import bisect
import itertools
import statistics
import tempfile
import time
from collections import defaultdict
from datetime import datetime
from pathlib import Path
from typing import Any

from bridge.simulator.churn import HOURS
from bridge.simulator.hours import DAY, HOUR, HOURS_A_WEEK, WEEK, shape_of, week_of
from bridge.store.keys import Keys
from bridge.testing.redis import RedisServer
from bridge.testing.settings import serve_env
from suites.bridge_api import BridgeApi
from suites.processes import Serve, Simulator, start_serves, stop_serves
from suites.report import Report

MODES = ("fixed", "adaptive")
PREFIX = {"debtors": "debtor", "learners": "learner"}
SAMPLE_SECONDS = 2.0
PERIODS = ("school hours", "evenings", "nights", "weekends")
"""The parts of a day school's week (weekdays 07:00-17:00, 17:00-22:00, 22:00-07:00; Saturday and Sunday)."""


class Gaps:
    """Every feed's poll starts, as sampled from each bridge's status hashes."""

    def __init__(self, client: Any, schools: list[int]) -> None:
        self.client = client
        self.schools = schools
        self.starts: dict[tuple[str, int, str], set[float]] = defaultdict(set)

    def sample(self) -> None:
        pipe = self.client.pipeline(transaction=False)
        for mode in MODES:
            for school_id in self.schools:
                pipe.hmget(Keys(mode).poll_status(school_id), [f"{r}.last_started" for r in PREFIX])
        answers = iter(pipe.execute())
        for mode in MODES:
            for school_id in self.schools:
                for resource, value in zip(PREFIX, next(answers), strict=True):
                    if value is not None:
                        self.starts[(mode, school_id, resource)].add(float(value))

    def wait(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            self.sample()
            time.sleep(min(SAMPLE_SECONDS, max(0.0, end - time.monotonic())))

    def polled_since(self, mode: str, moment: float) -> bool:
        return all(max(self.starts.get((mode, s, r), {0.0})) > moment for s in self.schools for r in PREFIX)

    def longest(self, mode: str, start: float, end: float) -> float:
        """The longest time a feed went without a poll between `start` and `end`."""
        longest = 0.0
        for school_id in self.schools:
            for resource in PREFIX:
                seen = self.starts.get((mode, school_id, resource), set())
                edges = [start, *sorted(t for t in seen if start <= t <= end), end]
                longest = max(longest, *(b - a for a, b in itertools.pairwise(edges)))
        return longest

    def polls(self, mode: str, start: float, end: float, schools: list[int]) -> int:
        seen = [self.starts.get((mode, s, r), set()) for s in schools for r in PREFIX]
        return sum(1 for starts in seen for t in starts if start <= t <= end)


def detection_lags(changes: list[dict[str, Any]], events: list[dict[str, Any]]) -> tuple[list[float], int]:
    """Each change's lag to the first event of the same record detected no earlier; and how many had none."""
    detected: dict[tuple[int, str, str], list[float]] = defaultdict(list)
    for event in events:
        if event.get("resource") in PREFIX.values():
            key = (int(event["school_id"]), str(event["resource"]), str(event["resource_id"]))
            moment = datetime.fromisoformat(event["timestamp"].replace("Z", "+00:00"))
            detected[key].append(moment.timestamp())
    for times in detected.values():
        times.sort()
    lags, untold = [], 0
    for change in changes:
        times = detected.get((int(change["school_id"]), PREFIX[change["resource"]], str(change["key"])), [])
        index = bisect.bisect_left(times, change["t"])
        if index == len(times):
            untold += 1
        else:
            lags.append(times[index] - change["t"])
    return lags, untold


def period(week_second: float) -> str:
    """The part of a day school's week a moment (seconds after Monday 00:00) falls in."""
    day, hour = int(week_second // DAY) % 7, int(week_second % DAY // HOUR)
    if day >= 5:
        return "weekends"
    if 7 <= hour < 17:
        return "school hours"
    return "evenings" if 17 <= hour < 22 else "nights"


def expected_periods(hours: str, skew: float, school_ids: list[int]) -> dict[str, float]:
    """The share of the churn's changes each part of the week should hold under `hours` (as the churn
    weighs them: each school's share 1/rank^skew x its week's factor in the hour)."""
    shares = [1.0 / float(rank) ** skew for rank in range(1, len(school_ids) + 1)]
    totals = dict.fromkeys(PERIODS, 0.0)
    for school_id, share in zip(school_ids, shares, strict=True):
        shape = shape_of(week_of(school_id, hours)) if hours != "constant" else (1.0,) * HOURS_A_WEEK
        for hour, factor in enumerate(shape):
            totals[period(hour * HOUR)] += share * factor
    whole = sum(totals.values())
    return {name: value / whole for name, value in totals.items()}


def churned(sim: Simulator) -> int:
    """The changes the simulator's churn has applied so far (a creation of a family counts once)."""
    return int(sim.control.get("/churn").raise_for_status().json()["applied"])


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else 0.0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m suites.scale --planning", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--schools", type=int, default=40)
    parser.add_argument("--learners", type=int, default=100)
    parser.add_argument("--debtors", type=int, default=150)
    parser.add_argument("--max-rps", type=float, default=5.0, help="BRIDGE_D6_MAX_RPS of each bridge (5)")
    parser.add_argument("--interval", type=float, default=5.0, help="BRIDGE_SCHOOL_POLL_SECONDS (5)")
    parser.add_argument("--max-poll", type=float, default=90.0, help="BRIDGE_MAX_POLL_SECONDS (90)")
    parser.add_argument("--churn", type=float, default=2.0, help="simulator changes a second (2)")
    parser.add_argument("--skew", type=float, default=2.0, help="churn skew: share as 1/rank^skew (2)")
    parser.add_argument("--warmup", type=float, default=60.0, help="seconds of churn before the window (60)")
    parser.add_argument("--window", type=float, default=120.0, help="seconds of changes measured (120)")
    parser.add_argument(
        "--hours",
        choices=HOURS,
        default="constant",
        help="the churn's week: constant (as ever), school or mixed",
    )
    parser.add_argument(
        "--week-seconds", type=float, default=None, help="wall seconds of a compressed week (the window)"
    )
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--keep-logs", action="store_true")
    args = parser.parse_args(argv)
    week_seconds = args.week_seconds or args.window
    # The compressed week starts so that the window begins on Monday 00:00.
    start_hour = -args.warmup / week_seconds * HOURS_A_WEEK % HOURS_A_WEEK
    if args.hours == "constant":
        hours = "constant rate"
    else:
        hours = (
            f"{args.hours} hours, a week in {week_seconds:g} s (a day {week_seconds / 7:.1f} s), "
            f"the window from Monday 00:00"
        )

    report = Report("scale")
    workdir = Path(tempfile.mkdtemp(prefix="suite-planning-"))
    sim = Simulator(
        workdir, schools=args.schools, learners=args.learners, debtors=args.debtors, seed=args.seed
    )
    store = RedisServer(workdir / "store")
    serves: dict[str, Serve] = {}
    try:
        sim.start()
        store.start()
        for mode in MODES:
            env = serve_env(
                store.url,
                sim.base_url,
                BRIDGE_REDIS_PREFIX=mode,
                BRIDGE_POLL_PLANNING=mode,
                BRIDGE_D6_MAX_RPS=str(args.max_rps),
                BRIDGE_SCHOOL_POLL_SECONDS=str(args.interval),
                BRIDGE_POLL_JITTER_SECONDS=str(args.interval / 10),
                BRIDGE_MAX_POLL_SECONDS=str(args.max_poll),
                BRIDGE_INTEGRATIONS_POLL_SECONDS="30",
                BRIDGE_EMIT_INITIAL_SNAPSHOT="false",
                BRIDGE_LOG_LEVEL="info",
            )
            serves[mode] = Serve(f"serve-{mode}", workdir, env)
        start_serves(serves.values(), timeout=120)
        apis = {mode: BridgeApi(lambda s=serve: [s.url]) for mode, serve in serves.items()}
        gaps = Gaps(store.client(socket_timeout=30), sim.school_ids)
        started = time.time()
        report.note("both bridges ready; silent baselines")
        deadline = time.monotonic() + 300
        while not all(gaps.polled_since(mode, 0.0) for mode in MODES) and time.monotonic() < deadline:
            gaps.wait(SAMPLE_SECONDS)
        report.check(time.monotonic() < deadline, "not every feed had its baseline within 300 s")
        report.note(
            f"baselines in {time.time() - started:.0f} s; churn {args.churn}/s, skew {args.skew}, {hours}"
        )
        churn_started = time.time()
        body = {"rate": args.churn, "skew": args.skew, "hours": args.hours, "week_seconds": week_seconds}
        sim.control.post("/churn", json={**body, "week_start_hour": start_hour}).raise_for_status()
        gaps.wait(args.warmup)
        window_start, applied = time.time(), churned(sim)
        report.note(f"measuring the changes of the next {args.window:.0f} s")
        gaps.wait(args.window)
        window_end, applied = time.time(), churned(sim) - applied
        sim.churn(0)
        plans = {mode: apis[mode].schools() for mode in MODES}
        deadline = time.monotonic() + args.max_poll + 60
        while time.monotonic() < deadline and not all(gaps.polled_since(m, window_end + 1) for m in MODES):
            gaps.wait(SAMPLE_SECONDS)
        report.check(time.monotonic() < deadline, "not every feed was polled again after the window")
        changes = [
            c for c in sim.changes(since=window_start) if c["t"] <= window_end and c["resource"] in PREFIX
        ]
        report.figure(
            "setup",
            f"{args.schools} schools x ({args.learners} learners, {args.debtors} debtors), {args.max_rps:g} "
            f"requests/s each, target {args.interval:g} s, max {args.max_poll:g} s, churn {args.churn:g}/s "
            f"skew {args.skew:g}, warm-up {args.warmup:.0f} s, window {args.window:.0f} s",
        )
        report.figure("hours", hours)
        report.figure(
            "churn in the window",
            f"{applied} changes applied, {applied / args.window:.2f}/s (--churn {args.churn:g}/s)",
        )
        if args.hours != "constant":
            position = start_hour * HOUR
            fell = [period(position + (c["t"] - churn_started) * WEEK / week_seconds) for c in changes]
            expected = expected_periods(args.hours, args.skew, sim.school_ids)
            report.figure(
                "changes by part of the week, made / the hours' share",
                ", ".join(
                    f"{name} {fell.count(name) / max(1, len(fell)):.0%} / {expected[name]:.0%}"
                    for name in PERIODS
                ),
            )
        busy, quiet = sim.school_ids[:5], sim.school_ids[5:]
        report.figure(
            "changes in the window",
            f"{len(changes)} ({sum(1 for c in changes if c['school_id'] in busy)} at the 5 busiest schools)",
        )
        means = {}
        for mode in MODES:
            lags, untold = detection_lags(changes, apis[mode].events())
            means[mode] = statistics.fmean(lags) if lags else 0.0
            report.figure(
                f"{mode}: detection lag mean / p50 / p95",
                f"{means[mode]:.1f} / {percentile(lags, 0.5):.1f} / {percentile(lags, 0.95):.1f} s "
                f"({len(lags)} changes told, {untold} not told by any event)",
            )
            report.check(
                len(lags) >= 0.9 * len(changes), f"{mode}: only {len(lags)} of {len(changes)} changes told"
            )
            report.figure(
                f"{mode}: polls in the window (5 busiest / the rest)",
                f"{gaps.polls(mode, window_start, window_end, busy)} / "
                f"{gaps.polls(mode, window_start, window_end, quiet)}; longest gap "
                f"{gaps.longest(mode, window_start, window_end):.0f} s",
            )
        feeds = {(s["school_id"], f["resource"]): f for s in plans["adaptive"] for f in s["feeds"]}
        report.figure(
            "adaptive: planned interval / rate (learners)",
            ", ".join(
                f"{school_id}: {feeds[(school_id, 'learners')]['planned_interval_seconds']:.0f} s / "
                f"{feeds[(school_id, 'learners')]['change_rate_per_hour'] or 0:.0f} an hour"
                for school_id in (sim.school_ids[0], sim.school_ids[1], sim.school_ids[4], sim.school_ids[-1])
            ),
        )
        ratio = means["adaptive"] / means["fixed"] if means["fixed"] else float("inf")
        report.figure("adaptive / fixed mean detection lag", f"{ratio:.2f} (target <= 0.6)")
        report.check(ratio <= 0.6, f"adaptive's mean lag is {ratio:.2f} x fixed's (target <= 0.6)")
        longest = gaps.longest("adaptive", window_start, window_end)
        report.check(longest <= args.max_poll, f"adaptive: a feed went {longest:.0f} s without a poll")
    finally:
        stopped = stop_serves(serves.values(), timeout=60)
        store.stop()
        sim.stop()
        report.keep_or_remove(workdir, keep=args.keep_logs)
    report.check(all(code == 0 for code, _ in stopped.values()), f"exit codes on SIGTERM {stopped}")
    return report.finish()
