"""d6 faults: hypothesis-generated d6 answers against the real d6 client and school poller.

    python -m suites.d6_faults                       # 100 examples per family, about 1 minute
    python -m suites.d6_faults --examples 500        # the long run

The poller is wired exactly as `serve` wires it (`Services.build`) on a redis-server of our own; only
the network is replaced by an `httpx.MockTransport` that plays d6: it pages a school's records (made by
the simulator's generator) and, on one page of one resource, answers what hypothesis drew instead.

Each example: a fresh school is polled once with good answers (its silent baseline), then polled again
with the fault. d6's data did not change in between, so the second poll must emit nothing, whatever
it was told: the snapshot, the held-back removals and the event log must be exactly as before, and no
exception may escape the poller. Families whose answers are plainly bad must also end the poll
"failed", move `d6_bridge_polls_total{outcome="failed"}` (and `d6_bridge_d6_bad_answers_total` for
malformed bodies), and log the warning "poll failed; nothing diffed".

Families (each its own hypothesis run, so one finding does not hide the others):

    not_json        200 with a truncated page, random bytes, an empty body or an HTML page
    content_type    a page sent as text/html, text/plain, application/xml or without a type
    wrong_shape     valid JSON of the wrong shape: top level, data, meta, records, next_cursor
    bad_ids         a record without its id, or an id that is not an integer
    bad_cursor      a cursor that repeats, that d6 then refuses, or that is huge
    bad_status      3xx, 4xx, 5xx and 429 on every attempt, with v1, v2, HTML or empty bodies
    slow_timeout    a body slower than BRIDGE_D6_TIMEOUT_SECONDS on every attempt
    benign          the same data said differently: ids as strings, keys reordered, extra top-level
                    and meta fields, odd JSON content types, a slow body within the timeout, one
                    transient 5xx or 429 (must end "ok" with no event)
    truncation      an empty or short page that still carries `next_cursor`, with the rest of the
                    records after it (a scan that stops there is not complete)
    extra_fields    every record of a page gains a new field (up to 200 kB strings): must end "ok"
                    with exactly one `*.updated` per record of that page, whose `changes` name it
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import traceback
from pathlib import Path
from typing import Any

import httpx
import msgspec
import redis.asyncio as aioredis
from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st
from structlog.testing import capture_logs

from bridge import metrics
from bridge.app import Services
from bridge.d6.client import D6Client
from bridge.events.log import logged_bodies
from bridge.logs import configure_logging
from bridge.settings import load_settings
from bridge.simulator.state import World
from bridge.store.keys import META_POLLED, META_RAWS, META_VERSION, Keys
from bridge.sync.diff import DIGEST_BYTES
from bridge.sync.snapshot import sequence_of
from bridge.testing.redis import RedisServer
from suites.d6_answers import FAMILIES, SLOW_FAMILIES, TIMEOUT, FakeD6, Fault
from suites.report import Report

RESOURCES = ("debtor", "learner")
COMMIT_FIELDS = (META_VERSION, META_POLLED, META_RAWS)
"""Meta fields every successful commit moves, even one that changed nothing (a raw scan's commit keeps
its raw digests valid at the new version: `raws:<r>`, docs/development.md#the-diff-fast-path)."""


class Rig:
    """The school poller as `serve` wires it, on a real Redis, with the network replaced by `FakeD6`."""

    def __init__(self, redis_url: str) -> None:
        env = {
            "BRIDGE_REDIS_URL": redis_url,
            "BRIDGE_D6_BASE_URL": "http://d6.invalid/api",
            "BRIDGE_D6_USERNAME": "sandbox",
            "BRIDGE_D6_PASSWORD": "sandbox",
            "BRIDGE_D6_MAX_RPS": "100000",
            "BRIDGE_D6_TIMEOUT_SECONDS": str(TIMEOUT),
            "BRIDGE_LOG_LEVEL": "warning",
        }
        self.settings = load_settings(env, isatty=False)
        self.redis = aioredis.Redis.from_url(redis_url)
        self.fake = FakeD6()
        transport = httpx.MockTransport(self.fake)
        self.services = Services.build(self.settings, redis=self.redis, d6_transport=transport)
        # The same client with near-zero backoff, so a fault retried four times costs milliseconds.
        self.services.poller.d6 = D6Client(
            self.settings,
            budget=self.services.d6.budget,
            transport=transport,
            backoff_base=0.001,
            backoff_cap=0.005,
            retry_after_cap=0.005,
            on_response=metrics.observe_d6_response,
        )
        self.keys = Keys(self.settings.redis_prefix)
        self.world = World(3)
        self.next_school = 5000

    def new_school(self, learners: int, debtors: int) -> int:
        school_id = self.next_school
        self.next_school += 1
        school = self.world.add_school(school_id, learners=learners, debtors=debtors)
        self.fake.schools[school_id] = {
            "learner": list(school.learners.values()),
            "debtor": list(school.debtors.values()),
        }
        return school_id

    async def state(self, school_id: int) -> dict[str, Any]:
        """Everything the poll may change: meta, snapshots, held-back removals, the event log."""
        k = self.keys
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.hgetall(k.school_meta(school_id))
            for resource in RESOURCES:
                pipe.hgetall(k.snapshot_hashes(school_id, resource))
                pipe.hgetall(k.snapshot_records(school_id, resource))
                pipe.get(k.snapshot_hold(school_id, resource))
            pipe.xrange(k.school_events(school_id))
            pipe.hgetall(k.school_bodies(school_id))
            replies = await pipe.execute()
        meta = {key.decode(): value for key, value in replies[0].items()}
        events = [msgspec.json.decode(body) for body in logged_bodies(replies[-2], replies[-1])]
        snapshots = replies[1:-2]
        for n in range(0, len(snapshots), 3):  # each record's canonical digest and sequence: the raw digest
            # of its bytes may move with no change (keys reordered: docs/development.md#the-diff-fast-path)
            snapshots[n] = {rid: (v[:DIGEST_BYTES], sequence_of(v)) for rid, v in snapshots[n].items()}
        return {"meta": meta, "snapshots": snapshots, "events": events}

    async def close(self) -> None:
        await self.services.poller.d6.aclose()
        await self.services.d6.aclose()
        await self.redis.aclose()


def counter(name: str, **labels: str) -> float:
    """The sum of a counter's samples whose labels include `labels`."""
    total = 0.0
    for family in metrics.REGISTRY.collect():
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                total += sample.value
    return total


def without(meta: dict[str, Any], prefixes: tuple[str, ...]) -> dict[str, Any]:
    return {k: v for k, v in meta.items() if not k.startswith(prefixes)}


async def check(rig: Rig, learners: int, debtors: int, fault: Fault) -> list[str]:
    """One example: a baseline poll, then the faulty one; the problems found (none is a pass)."""
    school_id = rig.new_school(learners, debtors)
    rig.fake.fault = None
    if (outcome := await rig.services.poller.poll(school_id, force=True)) != "ok":
        return [f"the baseline poll ended {outcome!r}"]
    before = await rig.state(school_id)
    failed = counter("d6_bridge_polls_total", resource="school", outcome="failed")
    held = counter("d6_bridge_polls_total", resource="school", outcome="duplicates")
    bad = counter("d6_bridge_d6_bad_answers_total")
    rig.fake.fault = fault
    with capture_logs() as logs:
        try:
            outcome = await rig.services.poller.poll(school_id, force=True)
        except Exception as error:
            return [f"an exception escaped the poller: {type(error).__name__}: {error}"]
        finally:
            rig.fake.fault = None
    after = await rig.state(school_id)
    problems = []
    fired = fault.fired > 0
    if fault.family == "extra_fields" and fired:
        problems += _check_new_field(fault, outcome, before, after)
    else:
        if after["events"] != before["events"]:
            new = after["events"][len(before["events"]) :]
            kinds = sorted({f"{e['type']} {e['resource_id']}" for e in new})[:6]
            problems.append(f"emitted {len(new)} events from an unchanged d6: {kinds}")
        if without(after["meta"], COMMIT_FIELDS) != without(before["meta"], COMMIT_FIELDS):
            problems.append("the school's sequence or counts changed")
        if after["snapshots"] != before["snapshots"]:
            problems.append("the snapshot or its held-back removals changed")
    if fault.must_fail and fired and outcome == "duplicates":
        problems += _check_held(fault, after, before, held, logs)
    elif fault.must_fail and fired:
        problems += _check_failed(fault, outcome, before, after, failed, bad, logs)
    elif outcome not in ("ok", "failed", "duplicates"):
        problems.append(f"outcome {outcome!r}")
    if fault.family == "benign" and outcome != "ok":
        problems.append(f"a benign answer failed the poll ({outcome})")
    return problems


def _check_held(
    fault: Fault, after: dict[str, Any], before: dict[str, Any], held: float, logs: list[dict[str, Any]]
) -> list[str]:
    """A bad answer that repeats rows (the same page twice, a page that overlaps the next) reads as a scan
    in which an id appears twice: held, not diffed, until the next scan agrees (docs/guarantees.md)."""
    problems = _moved(fault, before, after)
    if counter("d6_bridge_polls_total", resource="school", outcome="duplicates") != held + 1:
        problems.append("polls_total{outcome=duplicates} did not move by one")
    if not any(str(e.get("event", "")).startswith("scan not trusted") for e in logs):
        problems.append("no 'scan not trusted' warning was logged")
    return problems


def _moved(fault: Fault, before: dict[str, Any], after: dict[str, Any]) -> list[str]:
    """The faulty resource's scan must not have committed (the other resource's may have, on its own)."""
    moved = [
        f
        for f in (f"ver:{fault.resource}", f"polled:{fault.resource}")
        if after["meta"].get(f) != before["meta"].get(f)
    ]
    return [f"the failed {fault.resource} scan committed ({', '.join(moved)} moved)"] if moved else []


def _check_failed(
    fault: Fault,
    outcome: str,
    before: dict[str, Any],
    after: dict[str, Any],
    failed: float,
    bad: float,
    logs: list[dict[str, Any]],
) -> list[str]:
    problems = []
    if outcome != "failed":
        problems.append(f"a bad answer ended the poll {outcome!r}, not 'failed'")
    problems += _moved(fault, before, after)
    if counter("d6_bridge_polls_total", resource="school", outcome="failed") != failed + 1:
        problems.append("polls_total{outcome=failed} did not move by one")
    if fault.malformed and counter("d6_bridge_d6_bad_answers_total") <= bad:
        problems.append("d6_bad_answers_total did not move")
    if not any(e.get("event") == "poll failed; nothing diffed" for e in logs):
        problems.append("no 'poll failed; nothing diffed' warning was logged")
    return problems


def _check_new_field(fault: Fault, outcome: str, before: dict[str, Any], after: dict[str, Any]) -> list[str]:
    """Every record of the page gained one field: exactly one `*.updated` each, naming that field."""
    if outcome != "ok":
        return [f"a page with a new field ended the poll {outcome!r}"]
    new = after["events"][len(before["events"]) :]
    wanted = {str(r.get("learner_id", r.get("accountable_person_id"))) for r in fault.chunk}
    got = [e for e in new if e["type"] == f"{fault.resource}.updated"]
    problems = []
    if len(new) != len(got) or {e["resource_id"] for e in got} != wanted or len(got) != len(wanted):
        problems.append(
            f"expected {len(wanted)} {fault.resource}.updated, got {[e['type'] for e in new][:6]}"
        )
    for event in got:
        changes = event.get("changes") or {}
        if list(changes) != [fault.extra_field] or changes[fault.extra_field]["old"] is not None:
            problems.append(f"updated {event['resource_id']} has changes {list(changes)[:4]}")
            break
    return problems


def run_family(
    name: str, examples: int, rig: Rig, loop: asyncio.AbstractEventLoop, report: Report, seed_value: int
) -> None:
    outcomes: dict[str, int] = {}
    labels: dict[str, int] = {}
    found: list[str] = []

    @seed(seed_value)
    @settings(
        max_examples=examples,
        deadline=None,
        database=None,
        derandomize=False,
        print_blob=False,
        suppress_health_check=list(HealthCheck),
    )
    @given(
        learners=st.integers(0, 130),
        debtors=st.integers(0, 70),
        fault=FAMILIES[name](),
    )
    def example(learners: int, debtors: int, fault: Fault) -> None:
        problems = loop.run_until_complete(check(rig, learners, debtors, fault))
        outcomes["fired" if fault.fired else "not reached"] = (
            outcomes.get("fired" if fault.fired else "not reached", 0) + 1
        )
        labels[fault.label.split(" ")[0]] = labels.get(fault.label.split(" ")[0], 0) + 1
        if problems:
            found.append(
                f"{name}: {fault.label} on {fault.resource} page {fault.page} "
                f"({learners} learners, {debtors} debtors): {'; '.join(problems)}"
            )
            raise AssertionError(found[-1])

    try:
        example()
    except AssertionError:
        pass
    except Exception:
        found.append(f"{name}: the suite itself failed: {traceback.format_exc(limit=3)}")
    verdict = "FAIL" if found else "pass"
    report.figure(f"{name}", f"{verdict}: {sum(outcomes.values())} examples ({outcomes})")
    if found:
        report.problems.append(found[-1])  # the shrunk (simplest) counterexample hypothesis ended on


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m suites.d6_faults", description=__doc__.split("\n")[0])
    parser.add_argument(
        "--examples", type=int, default=100, help="hypothesis examples per family (default 100)"
    )
    parser.add_argument("--families", default=",".join(FAMILIES), help="comma list (default: all)")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    # Warnings are what the checks look for (capture_logs); they go nowhere else.
    configure_logging(level="warning", fmt="console", stream=Path(os.devnull).open("w"))  # noqa: SIM115
    report = Report("d6_faults")
    loop = asyncio.new_event_loop()
    with tempfile.TemporaryDirectory(prefix="suite-d6-faults-") as workdir:
        server = RedisServer(Path(workdir))
        server.start()
        rig = Rig(server.url)
        try:
            for name in args.families.split(","):
                examples = max(5, int(args.examples * SLOW_FAMILIES.get(name, 1.0)))
                report.note(f"{name}: {examples} examples")
                run_family(name, examples, rig, loop, report, args.seed)
        finally:
            loop.run_until_complete(rig.close())
            loop.close()
            server.stop()
    return report.finish()


if __name__ == "__main__":
    sys.exit(main())
