"""A whole deployment for a suite: Redis, the simulator, N serve replicas, receivers and subscriptions.

    with Deployment(layout, report) as d:     # everything started, subscriptions registered
        ...disrupt it...                       # kill serves, kill or pause Redis, flaky receivers
        d.settle()                             # stop churn, heal receivers, poll once more, deliver all
        d.verify()                             # the checks of suites.checks, figures into the report

Subscriptions are registered before the bridge may read d6 (the simulator answers 503 until then), so
every event in the log was emitted after every subscription existed and must reach each one it matches.
"""

from __future__ import annotations

import json
import tempfile
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

import redis

from bridge.catalogue import DEFAULT_RESOURCES
from bridge.store.keys import Keys
from bridge.testing.receivers import Behaviour, Received, Receiver, ReceiverServer
from bridge.testing.redis import RedisServer
from bridge.testing.settings import serve_env
from suites.bridge_api import BridgeApi
from suites.checks import (
    RESOURCES,
    SubscriptionSpec,
    check_copy,
    check_deliveries,
    check_log,
    is_resync_event,
    read_log,
)
from suites.processes import Serve, Simulator, start_serves, stop_serves
from suites.pull_reader import PullReader
from suites.report import Report


@dataclass(frozen=True)
class Endpoint:
    spec: SubscriptionSpec
    behaviour: Behaviour


def default_endpoints(schools: list[int], stall_seconds: float, *, snapshot: bool = False) -> list[Endpoint]:
    """Three subscriptions: ordered and flaky, unordered and stalling, filtered by school and type; with
    `snapshot` a fourth, ordered and flaky, created with `"initial": "snapshot"` (its resyncs run through
    whatever the suite does)."""
    extra = [Endpoint(SubscriptionSpec("ordered-snapshot", initial=True), Behaviour(fail_rate=0.1))]
    return [
        *(extra if snapshot else []),
        Endpoint(SubscriptionSpec("ordered-flaky", ordered=True), Behaviour(fail_rate=0.2)),
        Endpoint(
            SubscriptionSpec("unordered-stalling", ordered=False),
            Behaviour(fail_rate=0.1, stall_rate=0.1, stall_seconds=stall_seconds),
        ),
        Endpoint(
            SubscriptionSpec(
                "filtered-ordered",
                ordered=True,
                school_ids=tuple(schools[:3]),
                event_types=("learner.*", "debtor.updated", "integration.*"),
            ),
            Behaviour(fail_rate=0.05, stall_rate=0.05, stall_seconds=stall_seconds),
        ),
    ]


@dataclass
class Layout:
    schools: int = 10
    learners: int = 40
    debtors: int = 30
    seed: int = 1
    churn: float = 2.0
    serves: int = 2
    appendfsync: str | None = None
    delivery_timeout: float = 2.0
    retry_schedule: str = "0.2,0.5,1,2"
    env: dict[str, str] = field(default_factory=dict)
    keep_logs: bool = False
    snapshot_subscriber: bool = False
    """A fourth subscription, created with `"initial": "snapshot"` (default_endpoints)."""
    pull_reader: bool = False
    """A pull subscription to every event, read through the run by a `PullReader` (suites/pull_reader.py)."""


class Deployment:
    def __init__(self, layout: Layout, report: Report, endpoints: list[Endpoint] | None = None) -> None:
        self.layout = layout
        self.report = report
        self.workdir = Path(tempfile.mkdtemp(prefix=f"suite-{report.name}-"))
        self.redis = RedisServer(self.workdir, appendfsync=layout.appendfsync)
        self.sim = Simulator(
            self.workdir,
            schools=layout.schools,
            learners=layout.learners,
            debtors=layout.debtors,
            seed=layout.seed,
        )
        env = serve_env(
            self.redis.url,
            self.sim.base_url,
            BRIDGE_DELIVERY_TIMEOUT_SECONDS=str(layout.delivery_timeout),
            BRIDGE_RETRY_SCHEDULE=layout.retry_schedule,
            **layout.env,
        )
        self.serves = [Serve(f"serve-{n + 1}", self.workdir, env) for n in range(layout.serves)]
        self.api = BridgeApi(lambda: [s.url for s in self.serves if s.alive])
        endpoints = endpoints or default_endpoints(
            self.sim.school_ids, layout.delivery_timeout + 1.0, snapshot=layout.snapshot_subscriber
        )
        self.endpoints: dict[str, tuple[SubscriptionSpec, ReceiverServer]] = {}
        for n, e in enumerate(endpoints):
            receiver = Receiver(e.behaviour.script(seed=layout.seed + n), name=e.spec.name, verify=True)
            self.endpoints[e.spec.name] = (e.spec, ReceiverServer(receiver))
        self.subscription_ids: dict[str, str] = {}
        self.pull: tuple[SubscriptionSpec, PullReader] | None = None
        self.dead: dict[str, set[str]] = defaultdict(set)  # subscription name -> event ids ever dead
        self.dead_retried = 0
        self.keys = Keys("d6b")

    # -- lifetime -------------------------------------------------------------------------------------

    def __enter__(self) -> Deployment:
        try:
            self.start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.close(failed=kind is not None or bool(self.report.problems))

    def start(self) -> None:
        self.report.note(f"work directory {self.workdir}")
        self.redis.start()
        self.sim.start()
        self.sim.faults(error_rate=1.0, error_status=503)  # d6 "down" until the subscriptions exist
        for _spec, server in self.endpoints.values():
            server.start()
        start_serves(self.serves)
        for name, (spec, server) in self.endpoints.items():
            created = self.api.create_subscription(server.hook_url, **spec.fields())
            server.receiver.secret = created["secret"]
            self.subscription_ids[name] = created["id"]
        if self.layout.pull_reader:
            spec = SubscriptionSpec("pull-reader")
            created = self.api.call(
                "POST", "/v1/subscriptions", json={"delivery": "pull", "description": "suite: pull-reader"}
            )
            self.subscription_ids[spec.name] = created["id"]
            self.pull = (spec, PullReader(self.api, created["id"], seed=self.layout.seed))
            self.pull[1].start()
        self.sim.clear_faults()
        self.sim.churn(self.layout.churn)
        self.report.note(
            f"{len(self.serves)} serve, {self.layout.schools} schools x ({self.layout.learners} learners, "
            f"{self.layout.debtors} debtors), churn {self.layout.churn}/s, "
            f"{len(self.endpoints)} webhook subscriptions" + (", a pull reader" if self.pull else "")
        )

    def close(self, failed: bool = False) -> None:
        if self.pull is not None:
            self.pull[1].stop()
        stopped = stop_serves(self.serves, timeout=45)
        self.clean_exits = all(code == 0 for code, _seconds in stopped.values())
        for _spec, server in self.endpoints.values():
            server.stop()
        self.sim.stop()
        self.redis.stop()
        self.report.keep_or_remove(self.workdir, keep=failed or self.layout.keep_logs)

    def client(self) -> redis.Redis:
        return self.redis.client()

    # -- during the run -------------------------------------------------------------------------------

    def collect_dead(self) -> int:
        """Remember every dead letter (an ordered lane may move past them); returns how many exist now."""
        names = {sub_id: name for name, sub_id in self.subscription_ids.items()}
        letters = self.api.dead_letters()
        for letter in letters:
            name = names.get(letter["subscription_id"])
            if name is not None:
                self.dead[name].add(letter["event_id"])
        return len(letters)

    def revive(self) -> None:
        """Start any replica that is down and wait until every one is ready."""
        start_serves(self.serves, timeout=120)

    def total_receipts(self) -> int:
        return sum(len(server.receiver.snapshot()) for _spec, server in self.endpoints.values())

    # -- the end --------------------------------------------------------------------------------------

    def settle(self, timeout: float = 180.0) -> float:
        """Stop the churn, heal the receivers, wait for one more complete poll of every school and for
        every event to be delivered (retrying dead letters); returns the seconds it took."""
        started = time.monotonic()
        self.sim.churn(0)
        calm = time.time() + 0.5
        for _spec, server in self.endpoints.values():
            server.receiver.heal()
        self.revive()
        client = self.client()
        deadline = time.monotonic() + timeout
        waiting = set(self.sim.school_ids)
        fields = [f"{r}.{f}" for r in DEFAULT_RESOURCES for f in ("last_started", "last_success")]
        while waiting and time.monotonic() < deadline:
            for school_id in sorted(waiting):
                status = [
                    float(v) if v is not None else 0.0
                    for v in client.hmget(self.keys.poll_status(school_id), fields)
                ]
                feeds = list(zip(status[0::2], status[1::2], strict=True))  # (began, done) of each feed
                if all(began > calm and done > began for began, done in feeds):
                    waiting.discard(school_id)
            time.sleep(0.2)
        self.report.check(not waiting, f"schools not polled after the churn stopped: {sorted(waiting)}")
        while time.monotonic() < deadline:
            if self.collect_dead():
                self.dead_retried += self.api.retry_dead_letters()
            if self._undelivered(client) == 0:
                break
            time.sleep(1.0)
        client.close()
        return time.monotonic() - started

    def _undelivered(self, client: redis.Redis) -> int:
        events = [e for s in self.sim.school_ids for e in read_log(client, s)]
        missing = 0
        for _name, spec, receipts in self._receipts():
            ok = {r.event_id for r in receipts if r.ok}
            missing += sum(1 for e in events if spec.matches(e["type"], e["school_id"]) and e["id"] not in ok)
        return missing

    def _receipts(self) -> list[tuple[str, SubscriptionSpec, list[Received]]]:
        """Per subscription: what its receiver accepted so far, or what the pull reader read."""
        found = [(name, spec, server.receiver.snapshot()) for name, (spec, server) in self.endpoints.items()]
        if self.pull is not None:
            spec, reader = self.pull
            found.append((spec.name, spec, reader.snapshot()))
        return found

    def verify(self, prefix: str = "") -> dict[str, int]:
        """Every check of `suites.checks`; figures go into the report. Returns the totals."""
        client = self.client()
        report = self.report
        logs = {s: read_log(client, s) for s in self.sim.school_ids}
        events = [e for log in logs.values() for e in log]
        truths = {
            school_id: {r: self.sim.truth(school_id, path) for r, (path, _id) in RESOURCES.items()}
            for school_id in logs
        }
        for school_id, log in logs.items():
            report.extend(check_log(client, school_id, log, truths[school_id]))
        listed = {e["id"] for e in self.api.events()}
        logged = {e["id"] for e in events}
        report.check(
            listed == logged,
            f"GET /v1/events and the logs differ: {len(logged - listed)} only in the logs, "
            f"{len(listed - logged)} only in the listing",
        )
        kinds = Counter(e["type"].split(".")[1] for e in events)
        report.figure(prefix + "events in the log", f"{len(events)} ({dict(sorted(kinds.items()))})")
        report.figure(prefix + "GET /v1/events lists", len(listed))
        totals: Counter[str] = Counter()
        self.collect_dead()
        for name, spec, receipts in self._receipts():
            with (self.workdir / f"receipts-{name}.jsonl").open("w") as out:
                out.writelines(json.dumps(r.summary()) + "\n" for r in receipts)
            if spec.copies:
                problems = check_copy(spec, receipts, truths)
                report.extend(problems)
                told = Counter(
                    "resync" if is_resync_event(r.event_type or "") else "change" for r in receipts if r.ok
                )
                report.figure(
                    f"{prefix}{name}: its consumer's copy",
                    f"{'equals d6' if not problems else 'differs'} (from {told['change']} change events "
                    f"and {told['resync']} snapshot and resync events accepted)",
                )
            receipts = [r for r in receipts if not is_resync_event(r.event_type or "")]
            figures = check_deliveries(spec, events, receipts, self.dead[name])
            report.extend(figures.problems)
            order = f", out of order {figures.out_of_order}" if spec.ordered else ""
            report.figure(
                f"{prefix}{name}",
                f"expected {figures.expected}, delivered {figures.delivered}, requests {figures.requests}, "
                f"duplicates {figures.duplicates}, lost {figures.lost}, dead letters {figures.dead_lettered}"
                f"{order}, cut off by a kill {figures.aborted}",
            )
            totals.update(
                expected=figures.expected,
                delivered=figures.delivered,
                requests=figures.requests,
                duplicates=figures.duplicates,
                lost=figures.lost,
                out_of_order=figures.out_of_order,
                dead_lettered=figures.dead_lettered,
                unexpected=figures.unexpected,
            )
        if self.pull is not None:
            reader = self.pull[1]
            report.figure(
                prefix + "pull-reader: pages read / cursors dropped before their commit",
                f"{reader.pages} / {reader.forgotten}",
            )
        report.figure(
            prefix + "deliveries (all subscriptions)",
            f"expected {totals['expected']}, delivered {totals['delivered']}, "
            f"requests {totals['requests']}, duplicates {totals['duplicates']}, lost {totals['lost']}",
        )
        report.figure(
            prefix + "dead letters seen / requeued", f"{totals['dead_lettered']} / {self.dead_retried}"
        )
        client.close()
        return dict(totals, events=len(events))
