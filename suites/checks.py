"""What must hold when the dust settles, checked against the event log in Redis and the receivers.

The event log (each school's stream `d6b:{s:<id>}:events`) is the reference:

- sequences run 1, 2, 3 ... with no gap and no repeat, every id once, and the school's `seq` and
  `published` watermark agree with the log;
- with `BRIDGE_EMIT_INITIAL_SNAPSHOT=true` the log starts from nothing, so replaying its created /
  updated / removed events rebuilds exactly what the simulator holds at the end. An event emitted twice
  shows up as a second `created`, an `updated` that changes nothing, or a `removed` of an unknown
  record; a false `removed` as a record that the simulator still has;
- every event reaches every subscription it matches at least once (a 2xx in time, by `webhook-id`),
  and no subscription receives an event it does not match; for ordered subscriptions, a school's
  events arrive in sequence order: no event is sent before every earlier one succeeded or was
  dead-lettered.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any

import msgspec
import redis

from bridge.d6.records import normalise
from bridge.events.log import logged_bodies
from bridge.store.keys import Keys
from bridge.testing.consumer import Materialiser
from bridge.testing.receivers import Received

RESOURCES = {"learner": ("learners", "learner_id"), "debtor": ("accountablepersons", "accountable_person_id")}


@dataclass(frozen=True)
class SubscriptionSpec:
    name: str
    ordered: bool = True
    event_types: tuple[str, ...] | None = None
    school_ids: tuple[int, ...] | None = None
    initial: bool = False
    """Created with `"initial": "snapshot"`: it gets a resync at creation and of every new baseline."""

    @property
    def copies(self) -> bool:
        """Whether the suite checks a consumer's copy of every record: an ordered subscription to every event
        of every school (docs/consumers.md)."""
        return self.ordered and self.event_types is None and self.school_ids is None

    def fields(self) -> dict[str, Any]:
        body: dict[str, Any] = {"ordered": self.ordered, "description": f"suite: {self.name}"}
        if self.initial:
            body["initial"] = "snapshot"
        if self.event_types is not None:
            body["event_types"] = list(self.event_types)
        if self.school_ids is not None:
            body["school_ids"] = list(self.school_ids)
        return body

    def matches(self, event_type: str, school_id: int) -> bool:
        if self.school_ids is not None and school_id not in self.school_ids:
            return False
        if self.event_types is None:
            return True
        return any(
            event_type == pattern or (pattern.endswith(".*") and event_type.startswith(pattern[:-1]))
            for pattern in self.event_types
        )


def read_log(client: redis.Redis, school_id: int, prefix: str = "d6b") -> list[dict[str, Any]]:
    """Every envelope in the school's event log, in stream (sequence) order."""
    keys = Keys(prefix)
    entries = client.xrange(keys.school_events(school_id))
    bodies = client.hgetall(keys.school_bodies(school_id))
    return [msgspec.json.decode(body) for body in logged_bodies(entries, bodies)]


def check_log(
    client: redis.Redis,
    school_id: int,
    events: list[dict[str, Any]],
    truth: dict[str, list[dict[str, Any]]],
    prefix: str = "d6b",
) -> list[str]:
    """Problems with one school's log; `truth` maps learner/debtor to the simulator's final records."""
    problems: list[str] = []
    where = f"school {school_id}"
    sequences = [e["sequence"] for e in events]
    if sequences != list(range(1, len(events) + 1)):
        gaps = sorted(set(range(1, max(sequences, default=0) + 1)) - set(sequences))
        repeats = [s for s, n in Counter(sequences).items() if n > 1]
        problems.append(f"{where}: sequences not contiguous (missing {gaps[:10]}, repeated {repeats[:10]})")
    if len({e["id"] for e in events}) != len(events):
        problems.append(f"{where}: an event id appears twice in the log")
    meta = client.hmget(Keys(prefix).school_meta(school_id), ["seq", "published"])
    seq, published = (int(v) if v is not None else 0 for v in meta)
    if seq != len(events) or published != seq:
        problems.append(f"{where}: meta seq={seq} published={published} but the log holds {len(events)}")
    for resource, (_path, id_field) in RESOURCES.items():
        problems += _replay(where, resource, id_field, events, truth[resource])
    integration = Counter(e["type"] for e in events if e["resource"] == "integration")
    if integration["integration.authorised"] != 1 or integration["integration.revoked"]:
        problems.append(f"{where}: unexpected integration events {dict(integration)}")
    return problems


def _replay(
    where: str, resource: str, id_field: str, events: list[dict[str, Any]], truth: list[dict[str, Any]]
) -> list[str]:
    problems: list[str] = []
    state: dict[str, dict[str, Any]] = {}
    removed: set[str] = set()
    for event in events:
        if event["resource"] != resource:
            continue
        key, kind, data = event["resource_id"], event["type"].split(".")[1], event["data"]
        label = f"{where}: {event['type']} {key} (sequence {event['sequence']})"
        if kind == "created":
            if key in state:
                problems.append(f"{label}: created twice (emitted twice)")
            if key in removed:
                problems.append(f"{label}: created again after removed (a false removed?)")
            state[key] = data
        elif kind == "updated":
            if key not in state:
                problems.append(f"{label}: updated before created")
            elif state[key] == data:
                problems.append(f"{label}: updated to what it already was (emitted twice)")
            state[key] = data
        elif kind == "removed":
            if key not in state:
                problems.append(f"{label}: removed but not known")
            elif state[key] != data:
                problems.append(f"{label}: removed with data that is not the last known record")
            state.pop(key, None)
            removed.add(key)
    final = {str(normalise(r)[id_field]): normalise(r) for r in truth}
    for key in sorted(removed & final.keys(), key=int):
        if key not in state:
            problems.append(f"{where}: {resource} {key} was removed but d6 still has it (false removed)")
    missing, extra = final.keys() - state.keys(), state.keys() - final.keys()
    changed = [k for k in final.keys() & state.keys() if final[k] != state[k]]
    if missing or extra or changed:
        problems.append(
            f"{where}: replaying the {resource} events does not rebuild d6: missing {sorted(missing)[:8]}, "
            f"extra {sorted(extra)[:8]}, different {sorted(changed)[:8]}"
        )
    return problems


def is_resync_event(event_type: str) -> bool:
    """A resync's delivery (`*.snapshot`, `resync.*`): never in the event log."""
    return event_type.endswith(".snapshot") or event_type.startswith("resync.")


def check_copy(
    spec: SubscriptionSpec, receipts: list[Received], truth: dict[int, dict[str, list[dict[str, Any]]]]
) -> list[str]:
    """A materialising consumer (docs/consumers.md, bridge/testing/consumer.py) fed every body the subscriber
    accepted, in the order it accepted them, holds exactly d6's records of every school and resource:
    `truth` maps school -> learner/debtor -> the simulator's final records."""
    consumer = Materialiser()
    for receipt in receipts:
        if receipt.ok and not receipt.aborted and receipt.verified:
            consumer.apply(receipt.json)
    problems = []
    for school_id, resources in sorted(truth.items()):
        for resource, (_path, id_field) in RESOURCES.items():
            held = {
                rid: data for rid, (_seq, data) in consumer.records.get((school_id, resource), {}).items()
            }
            final = {str(normalise(r)[id_field]): normalise(r) for r in resources[resource]}
            if held != final:
                missing, extra = final.keys() - held.keys(), held.keys() - final.keys()
                changed = [k for k in final.keys() & held.keys() if final[k] != held[k]]
                problems.append(
                    f"{spec.name}: the consumer's copy of school {school_id} {resource}s is not d6's: "
                    f"missing {sorted(missing)[:8]}, extra {sorted(extra)[:8]}, "
                    f"different {sorted(changed)[:8]}"
                )
    return problems


@dataclass
class DeliveryFigures:
    expected: int = 0
    requests: int = 0
    ok_requests: int = 0
    delivered: int = 0
    duplicates: int = 0
    lost: int = 0
    unexpected: int = 0
    out_of_order: int = 0
    unverified: int = 0
    dead_lettered: int = 0
    aborted: int = 0
    problems: list[str] = field(default_factory=list)


def check_deliveries(
    spec: SubscriptionSpec,
    events: list[dict[str, Any]],
    receipts: list[Received],
    dead: set[str],
) -> DeliveryFigures:
    """At least once, nothing unmatched, and (for ordered subscriptions) sequence order per school.

    `events` is every event in the log; `dead` the event ids dead-lettered for this subscription at any
    time (an ordered lane moves past a dead letter, so those may legitimately arrive late).
    """
    expected = {e["id"]: e for e in events if spec.matches(e["type"], e["school_id"])}
    aborted = sum(1 for r in receipts if r.aborted)
    receipts = [r for r in receipts if not r.aborted]
    figures = DeliveryFigures(expected=len(expected), requests=len(receipts), dead_lettered=len(dead))
    ok_counts = Counter(r.event_id for r in receipts if r.ok)
    figures.ok_requests = sum(ok_counts.values())
    figures.delivered = len(ok_counts.keys() & expected.keys())
    figures.duplicates = sum(n - 1 for n in ok_counts.values())
    lost = expected.keys() - ok_counts.keys()
    figures.lost = len(lost)
    unexpected = {r.event_id for r in receipts} - expected.keys()
    figures.unexpected = len(unexpected)
    figures.unverified = sum(1 for r in receipts if not r.verified)
    figures.aborted = aborted
    for receipt in [r for r in receipts if not r.verified][:3]:
        figures.problems.append(
            f"{spec.name}: unverified {receipt.event_id or receipt.event_type}: {receipt.problem}"
        )
    for event_id in sorted(lost)[:5]:
        event = expected[event_id]
        figures.problems.append(
            f"{spec.name}: lost {event['type']} school {event['school_id']} sequence {event['sequence']}"
            f" ({event_id})"
        )
    if unexpected:
        figures.problems.append(f"{spec.name}: {len(unexpected)} deliveries it does not match, or not logged")
    if figures.unverified:
        figures.problems.append(f"{spec.name}: {figures.unverified} requests failed signature verification")
    if spec.ordered:
        figures.out_of_order = _order_violations(spec, expected, receipts, dead, figures.problems)
    return figures


def _order_violations(
    spec: SubscriptionSpec,
    expected: dict[str, dict[str, Any]],
    receipts: list[Received],
    dead: set[str],
    problems: list[str],
) -> int:
    """Requests for an event sent before an earlier event of its school had succeeded (or died)."""
    sequences: dict[int, list[int]] = defaultdict(list)
    for event in expected.values():
        sequences[event["school_id"]].append(event["sequence"])
    for values in sequences.values():
        values.sort()
    settled: dict[int, set[int]] = defaultdict(set)  # per school: sequences that succeeded or died
    for event_id in dead & expected.keys():
        settled[expected[event_id]["school_id"]].add(expected[event_id]["sequence"])
    lowest: dict[int, int] = defaultdict(int)  # per school: index of the lowest unsettled sequence
    violations = 0
    for receipt in receipts:
        if receipt.event_id not in expected:
            continue
        school, sequence = receipt.school_id, receipt.sequence
        order, done = sequences[school], settled[school]
        while lowest[school] < len(order) and order[lowest[school]] in done:
            lowest[school] += 1
        first_open = order[lowest[school]] if lowest[school] < len(order) else None
        if first_open is not None and first_open < sequence:
            violations += 1
            if violations <= 5:
                problems.append(
                    f"{spec.name}: school {school} sequence {sequence} sent before {first_open} succeeded"
                )
        if receipt.ok:
            done.add(sequence)
    return violations
