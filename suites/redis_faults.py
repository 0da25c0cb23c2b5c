"""Redis faults: redis-server killed and restarted, and unreachable for 30 s, under churn and deliveries.

    python -m suites.redis_faults                       # both fsync policies, about 5 minutes
    python -m suites.redis_faults --policies always --kills 5 --outage 60

One run per AOF policy (`appendfsync everysec`, then `always`), each with the chaos suite's deployment
(two serve replicas, 10 schools with churn, three flaky receivers):

1. `--kills` times: SIGKILL redis-server at a random instant, start it again on the same port and data
   directory (it reads its AOF back) after a second;
2. one outage of `--outage` seconds: for `everysec` the redis-server is frozen with SIGSTOP (the port
   stays open, nothing answers: a partition), for `always` it is killed and only started again after
   the outage (connection refused throughout).

A thread samples `/health/ready` of every replica four times a second. The bridge must recover by
itself: each replica goes 503 during an outage and 200 after it, with the same process (never
restarted). Then everything settles and the chaos checks run.

What was lost: an event a receiver got that is no longer in the final log (Redis forgot it), and a
(school, sequence) that two different events carried (the counter went back and was reused). With
`always` both must be 0. With `everysec` Redis may lose up to a second of writes, but only when the
machine (not just the process) dies: a SIGKILLed redis-server has already handed its AOF writes to the
kernel. This suite can only kill the process, so `everysec` is expected to lose nothing here either;
whatever it sees is reported.
"""

from __future__ import annotations

import argparse
import random
import sys
import threading
import time
from collections import defaultdict

from suites.deployment import Deployment, Layout
from suites.processes import Serve
from suites.report import Report


class ReadinessProbe:
    """Samples `/health/ready` of each replica in a thread; remembers each one's status changes."""

    def __init__(self, serves: list[Serve], every: float = 0.25) -> None:
        self.serves = serves
        self.every = every
        self.changes: dict[str, list[tuple[float, int | None]]] = defaultdict(list)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="readiness-probe")

    def __enter__(self) -> ReadinessProbe:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _run(self) -> None:
        while not self._stop.is_set():
            for serve in self.serves:
                status = serve.ready()
                history = self.changes[serve.name]
                if not history or history[-1][1] != status:
                    history.append((time.time(), status))
            self._stop.wait(self.every)

    def wait_recovery(self, name: str, since: float, timeout: float) -> tuple[bool, float | None]:
        """`saw_recovery`, given the probe time to take its next samples (it may be mid-round)."""
        deadline = time.monotonic() + timeout
        while True:
            flipped, ready_at = self.saw_recovery(name, since)
            if flipped or time.monotonic() > deadline:
                return flipped, ready_at
            time.sleep(self.every)

    def saw_recovery(self, name: str, since: float) -> tuple[bool, float | None]:
        """Did `name` answer 503 after `since` and 200 after that? And when it was 200 again."""
        unready_at = None
        for at, status in self.changes[name]:
            if at < since:
                continue
            if status != 200 and unready_at is None:
                unready_at = at
            elif status == 200 and unready_at is not None:
                return True, at
        return False, None


def wait_all_ready(serves: list[Serve], timeout: float) -> float:
    started = time.monotonic()
    while any(s.ready() != 200 for s in serves):
        if time.monotonic() - started > timeout:
            break
        time.sleep(0.1)
    return time.monotonic() - started


def run_policy(policy: str, args: argparse.Namespace, report: Report, rng: random.Random) -> None:
    layout = Layout(
        schools=args.schools, churn=args.churn, seed=args.seed, appendfsync=policy, keep_logs=args.keep_logs
    )
    with Deployment(layout, report) as deployment, ReadinessProbe(deployment.serves) as probe:
        pids = {serve.name: serve.pid for serve in deployment.serves}
        time.sleep(5)
        recoveries = []
        for _ in range(args.kills):
            time.sleep(rng.uniform(2, 5))
            deployment.redis.kill()
            time.sleep(1.0)
            deployment.redis.start()
            recoveries.append(wait_all_ready(deployment.serves, 60))
            report.note(f"{policy}: redis-server killed and restarted; replicas ready again")
            deployment.collect_dead()
        time.sleep(rng.uniform(2, 5))
        outage_at = time.time()
        if policy == "always":
            deployment.redis.kill()
            time.sleep(args.outage)
            deployment.redis.start()
            kind = f"killed, down {args.outage:g} s"
        else:
            deployment.redis.pause()
            time.sleep(args.outage)
            deployment.redis.resume()
            kind = f"SIGSTOP {args.outage:g} s"
        back_at = time.time()
        outage_recovery = wait_all_ready(deployment.serves, 120)
        report.note(f"{policy}: outage over ({kind}); replicas ready after {outage_recovery:.1f} s")
        for serve in deployment.serves:
            flipped, ready_at = probe.wait_recovery(serve.name, outage_at, timeout=15)
            seen = [(round(at - outage_at, 1), status) for at, status in probe.changes[serve.name]]
            report.check(
                flipped,
                f"{policy}: {serve.name} did not go 503 then 200 around the outage "
                f"(readiness changes, seconds from the outage: {seen[-8:]})",
            )
            report.check(
                serve.alive and serve.pid == pids[serve.name],
                f"{policy}: {serve.name} died or was restarted (it must recover by itself)",
            )
            if ready_at is not None:
                report.figure(
                    f"{policy}: {serve.name} ready again after outage", f"{ready_at - back_at:.1f} s"
                )
        settle_seconds = deployment.settle()
        totals = deployment.verify(prefix=f"{policy}: ")
        lost_from_log, reused = forgotten(deployment)
        report.figure(f"{policy}: redis kills / outage", f"{args.kills} kills / {kind}")
        report.figure(f"{policy}: ready again after a kill (max)", f"{max(recoveries, default=0):.1f} s")
        report.figure(f"{policy}: received but gone from the log", lost_from_log)
        report.figure(f"{policy}: sequences reused by another event", reused)
        report.figure(f"{policy}: settle", f"{settle_seconds:.0f} s")
        report.check(totals["lost"] == 0, f"{policy}: {totals['lost']} deliveries lost")
        if policy == "always":
            report.check(lost_from_log == 0, f"always: {lost_from_log} delivered events are not in the log")
            report.check(reused == 0, f"always: {reused} sequences were given to two events")
    report.check(deployment.clean_exits, f"{policy}: a serve did not exit 0 on SIGTERM at the end")


def forgotten(deployment: Deployment) -> tuple[int, int]:
    """Events that receivers got but the log no longer has, and (school, sequence) pairs used twice."""
    client = deployment.client()
    logged = {}
    for school_id in deployment.sim.school_ids:
        for _entry, fields in client.xrange(deployment.keys.school_events(school_id)):
            logged[fields[b"id"].decode()] = (school_id, int(_entry.split(b"-")[0]))
    client.close()
    received: dict[str, tuple[int, int]] = {}
    for _spec, server in deployment.endpoints.values():
        for receipt in server.receiver.snapshot():
            if receipt.event_id:  # a request cut off before its headers were read names no event
                received[receipt.event_id] = (receipt.school_id, receipt.sequence)
    gone = received.keys() - logged.keys()
    reused = {received[i] for i in gone} & set(logged.values())
    return len(gone), len(reused)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m suites.redis_faults", description=__doc__.split("\n")[0])
    parser.add_argument("--policies", default="everysec,always", help="comma list of appendfsync policies")
    parser.add_argument("--kills", type=int, default=2, help="redis-server kills per policy (default 2)")
    parser.add_argument(
        "--outage", type=float, default=30.0, help="seconds Redis is unreachable (default 30)"
    )
    parser.add_argument("--schools", type=int, default=10)
    parser.add_argument("--churn", type=float, default=2.0)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--keep-logs", action="store_true")
    args = parser.parse_args(argv)
    report = Report("redis_faults")
    rng = random.Random(args.seed)
    for policy in args.policies.split(","):
        report.note(f"appendfsync {policy}")
        run_policy(policy.strip(), args, report, rng)
    return report.finish()


if __name__ == "__main__":
    sys.exit(main())
