"""Chaos: `serve` replicas killed with SIGKILL at random instants while d6 churns and receivers misbehave.

    python -m suites.chaos                    # 30 kills, about 2 minutes
    python -m suites.chaos --iterations 200   # the long run

Two `serve` processes share one Redis and one simulator (10 schools of 40 learners and 30 debtors,
2 changes a second). Three receivers: one answers 500 to 20% of requests (ordered subscription), one
answers 500 to 10% and stalls past the 2 s delivery timeout on 10% (unordered), one filtered by school
and event type (ordered) fails and stalls 5% each; a fourth (ordered, 10% of 500s) is created with
`"initial": "snapshot"`, so it gets a resync of every feed at its creation and again at each new baseline,
through the kills. Retries are short (0.2, 0.5, 1, 2 s) so some deliveries are dead-lettered; they are
counted and retried at the end through the API. A pull subscription to every event is read through the
kills by a reader (suites/pull_reader.py) that long-polls its feed from whichever replica answers and
commits each page, now and then dropping its cursor first (it then reads on from the committed position, as
a reader restarting without state does).

Each iteration waits a random 0 to 3 s, kills a random replica with SIGKILL (whatever it is doing:
starting, polling, committing, delivering) and starts it again at once. Then the churn stops, the
receivers heal, every school is polled once more and everything is delivered, and `suites.checks`
runs: contiguous sequences, a replay of the log that rebuilds the simulator exactly (nothing emitted
twice, no false removed), every event delivered at least once to every matching subscription, ordered
subscriptions (and the pull reader) in sequence order, and for every ordered subscription to every event,
the pull one included, a materialising consumer (docs/consumers.md) fed what its receiver accepted (or its
reader read) holds exactly the simulator's records. Lost must be 0; duplicates are allowed (at-least-once)
and counted.
"""

from __future__ import annotations

import argparse
import random
import sys
import time

from suites.deployment import Deployment, Layout
from suites.report import Report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m suites.chaos", description=__doc__.split("\n")[0])
    parser.add_argument("--iterations", type=int, default=30, help="kills (default 30; the long run: 200)")
    parser.add_argument("--schools", type=int, default=10)
    parser.add_argument("--learners", type=int, default=40)
    parser.add_argument("--debtors", type=int, default=30)
    parser.add_argument("--churn", type=float, default=2.0, help="simulator changes per second")
    parser.add_argument("--max-wait", type=float, default=3.0, help="longest pause before a kill (s)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--keep-logs", action="store_true")
    args = parser.parse_args(argv)

    report = Report("chaos")
    rng = random.Random(args.seed)
    layout = Layout(
        schools=args.schools,
        learners=args.learners,
        debtors=args.debtors,
        churn=args.churn,
        seed=args.seed,
        serves=2,
        keep_logs=args.keep_logs,
        snapshot_subscriber=True,
        pull_reader=True,
    )
    with Deployment(layout, report) as deployment:
        time.sleep(3)  # let the first polls and deliveries get going
        started = time.monotonic()
        for iteration in range(1, args.iterations + 1):
            time.sleep(rng.uniform(0, args.max_wait))
            victim = rng.choice(deployment.serves)
            victim.kill()
            time.sleep(rng.uniform(0, 0.3))
            victim.start()
            if iteration % 10 == 0:
                deployment.revive()  # both up now and then, so work goes on between kills
                deployment.collect_dead()
                report.note(
                    f"{iteration} kills, {deployment.total_receipts()} webhook requests so far, "
                    f"{sum(len(d) for d in deployment.dead.values())} dead letters seen"
                )
        chaos_seconds = time.monotonic() - started
        report.note("churn stopped; settling")
        settle_seconds = deployment.settle()
        totals = deployment.verify()
        report.figure("kills (SIGKILL) / restarts", f"{args.iterations} / {args.iterations}")
        report.figure("chaos phase / settle", f"{chaos_seconds:.0f} s / {settle_seconds:.0f} s")
        report.check(totals["lost"] == 0, f"{totals['lost']} deliveries lost")
    report.check(deployment.clean_exits, "a serve did not exit 0 on SIGTERM at the end")
    return report.finish()


if __name__ == "__main__":
    sys.exit(main())
