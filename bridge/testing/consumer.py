"""The materialising consumer of docs/consumers.md, runnable: a copy of every record the bridge tells.

The class below is the docs page's example, line for line (tests/e2e/test_state_api.py checks that the
page still shows it, and that a late consumer built on it ends with exactly what the snapshot holds).
"""

from __future__ import annotations

from typing import Any

import httpx

# --- the example of docs/consumers.md starts here ---
RESOURCES = ("debtors", "learners", "balances", "promises", "notes", "transactions")
PREFIX = {name: name.removesuffix("s") for name in RESOURCES}  # the state API's name -> events' resource
CHANGES = ("created", "updated", "removed")
Feed = tuple[int, str]  # (school_id, resource as events name it: "learner", ...)


class Materialiser:
    """Holds (school, resource) -> {record id: (sequence, data)}, applying the rules of docs/consumers.md."""

    def __init__(self) -> None:
        self.records: dict[Feed, dict[str, tuple[int, dict[str, Any]]]] = {}
        self.tombstones: dict[Feed, dict[str, int]] = {}  # removed id -> its removal's sequence
        self.seen: dict[Feed, set[str]] = {}  # ids told since the feed's resync.started
        self.resyncs: dict[Feed, str] = {}  # the resync under way per feed (its id)
        self.finished: set[tuple[str, Feed]] = set()  # (resync id, feed) done: a marker again does nothing
        self.last_change: dict[int, int] = {}  # school -> sequence of the last change event
        self.gaps: list[tuple[int, int, int]] = []  # (school, expected sequence, received)

    def held(self, feed: Feed, record_id: str) -> int:
        if record_id in self.records.get(feed, {}):
            return self.records[feed][record_id][0]
        return self.tombstones.get(feed, {}).get(record_id, -1)

    def put(
        self, feed: Feed, record_id: str, sequence: int, data: dict[str, Any] | None, *, state: bool = False
    ) -> None:
        """A record as of `sequence`: *.created, *.updated, or (`state`) a state API row or *.snapshot."""
        self.seen.get(feed, set()).add(record_id)
        held = self.held(feed, record_id)
        if sequence > held or (state and sequence == held):  # newer news; a state read refreshes its own
            self.records.setdefault(feed, {})[record_id] = (sequence, data or {})
            self.tombstones.get(feed, {}).pop(record_id, None)

    def remove(self, feed: Feed, record_id: str, sequence: int) -> None:
        self.seen.get(feed, set()).add(record_id)
        if sequence > self.held(feed, record_id):
            self.records.get(feed, {}).pop(record_id, None)
            self.tombstones.setdefault(feed, {})[record_id] = sequence  # no late snapshot resurrects it

    def load(self, school_id: int, resource: str, rows: list[dict[str, Any]]) -> None:
        """Rows of `GET /v1/schools/{school_id}/records/{resource}`."""
        for row in rows:
            feed = (school_id, PREFIX[resource])
            self.put(feed, row["resource_id"], row["sequence"], row["data"], state=True)

    def apply(self, event: dict[str, Any]) -> None:
        """One webhook body (or `GET /v1/events` item)."""
        school, sequence, kind = event["school_id"], event["sequence"], event["type"].split(".")[-1]
        if event["type"].startswith("resync."):  # resync markers: data.resource names the feed
            feed = (school, PREFIX[event["data"]["resource"]])
            resync_id = event["data"]["resync_id"]
            if (resync_id, feed) in self.finished:
                return  # a marker sent again (a retry, a redelivery) after its resync completed
            if kind == "started":
                if self.resyncs.get(feed) != resync_id:  # a started sent twice must not forget the seen
                    self.resyncs[feed], self.seen[feed] = resync_id, set()
            elif kind == "completed":
                if self.resyncs.get(feed) != resync_id:
                    return  # a completed sent twice (a retry): the first one did the work
                del self.resyncs[feed]
                self.finished.add((resync_id, feed))
                seen, as_of = self.seen.pop(feed), sequence
                held = self.records.get(feed, {})
                for record_id in [r for r, (at, _) in held.items() if r not in seen and at <= as_of]:
                    del held[record_id]  # not told since resync.started, none newer: it no longer exists
                self.tombstones.pop(feed, None)
            return
        feed, record_id = (school, event["resource"]), event["resource_id"]
        if kind == "snapshot":  # the record's own sequence, not a change's: no gap check
            self.put(feed, record_id, sequence, event.get("data"), state=True)
            return
        if kind not in CHANGES:
            return  # webhook.test
        expected = self.last_change.get(school, sequence - 1) + 1
        if sequence > expected:
            self.gaps.append((school, expected, sequence))  # lost events: resync or re-read the state
        self.last_change[school] = max(sequence, self.last_change.get(school, 0))
        if kind == "removed":
            self.remove(feed, record_id, sequence)
        else:
            self.put(feed, record_id, sequence, event.get("data"))


async def read_state(
    api: httpx.AsyncClient, school_id: int, resource: str, consumer: Materialiser, limit: int = 200
) -> int:
    """A late start: every page of the state API into `consumer`; answers the first page's as_of_sequence
    (apply the events above it next)."""
    path, params, first = f"/v1/schools/{school_id}/records/{resource}", {"limit": str(limit)}, None
    while True:
        page = (await api.get(path, params=params)).raise_for_status().json()
        consumer.load(school_id, resource, page["data"])
        if first is None:
            first = int(page["meta"]["as_of_sequence"])
            consumer.last_change.setdefault(school_id, first)  # gaps are counted from here
        if "next_cursor" not in page["meta"]:
            return first
        params["cursor"] = page["meta"]["next_cursor"]


# --- the example of docs/consumers.md ends here ---
