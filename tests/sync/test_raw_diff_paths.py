"""The three ways a scan is planned tell the same story: a raw scan planned against the raw digests stored
as one set (`sighted`), a raw scan planned against every stored value (`full`), and the same records decoded
and planned as a feed that is not raw (`decoded`). A random walk of scans (changes, retyped ids, reordered
keys, other spacing, creations, removals, mass removals, rows repeated) runs through all three, each in its
own store on one real Redis; after every scan the events and the snapshots must be the same."""

from __future__ import annotations

import random
from typing import Any

import msgspec
import pytest
import redis.asyncio as aioredis

from bridge.d6.pagination import Page
from bridge.d6.records import normalise_in_place, record_id
from bridge.events.envelope import Event
from bridge.store.keys import Keys
from bridge.store.scripts import Scripts
from bridge.sync.diff import PreviousSnapshot, finish_diff, plan_diff
from bridge.sync.events import record_events
from bridge.sync.poller import plan_raw_scan
from bridge.sync.snapshot import SnapshotStore

SCHOOL = 1000
LABEL = "GET /v2/finplus/debtmanagement/learners"
PAGE = 7
_JSON = msgspec.json.Encoder()


class FullStore(SnapshotStore):
    async def known_raws(self, school_id: int, resource: str) -> PreviousSnapshot | None:
        return None


def checked(record: dict[str, Any]) -> dict[str, Any]:
    record = normalise_in_place(record)
    record_id("learners", record)
    return record


def as_pages(rows: list[bytes]) -> list[Page]:
    out = []
    for number, start in enumerate(range(0, len(rows), PAGE), 1):
        body = b'{"data": [' + b", ".join(rows[start : start + PAGE]) + b'], "meta": {"limit": 7}}'
        out.append(
            Page.of_raw(body, number=number, limit=PAGE, transform=checked, endpoint=LABEL, school_id=SCHOOL)
        )
    return out


def spelled(record: dict[str, Any], rng: random.Random) -> bytes:
    """The record as d6 might send it: usually as before, sometimes with its id as text, its keys in
    another order, or other spacing (none of which is a change)."""
    roll = rng.random()
    if roll < 0.05:
        record = {**record, "learner_id": str(record["learner_id"])}
    elif roll < 0.1:
        record = dict(reversed(list(record.items())))
    elif roll < 0.15:
        return msgspec.json.format(_JSON.encode(record), indent=1)
    return _JSON.encode(record)


def next_scan(state: dict[int, dict[str, Any]], rng: random.Random, made: list[int]) -> list[bytes]:
    """Change the world a little (or, rarely, a lot) and return the scan d6 would send."""
    roll = rng.random()
    ids = sorted(state)
    before = {rid: _JSON.encode(record) for rid, record in state.items()}
    if roll < 0.05 and len(ids) >= 20:  # a mass removal: more than half the records
        for rid in rng.sample(ids, len(ids) * 2 // 3):
            del state[rid]
    else:
        for rid in rng.sample(ids, min(len(ids), rng.randint(0, 3))):
            state[rid] = {**state[rid], "grade": str(rng.randint(1, 12))}
        for rid in rng.sample(ids, min(len(ids), rng.choice([0, 0, 1, 2]))):
            del state[rid]
        for _ in range(rng.choice([0, 0, 1, 3])):
            made[0] += 1
            state[made[0]] = {"learner_id": made[0], "first_name": f"L{made[0]}", "grade": "1"}
    rows = [spelled(state[rid], rng) for rid in sorted(state)]
    roll = rng.random()
    if rows and roll < 0.1:  # a row repeated (the list moved under the cursor)
        at = rng.randrange(len(rows))
        rows.insert(rng.randrange(len(rows)), rows[at])
    elif roll < 0.2:  # a record's row as it was before, beside its row as it is (it changed mid-scan)
        rid = rng.choice(ids)
        if rid in state:
            rows.insert(rng.randrange(len(rows) + 1), before[rid])
    return rows


async def poll(store: SnapshotStore, rows: list[bytes], *, raw: bool) -> list[Event] | None:
    """One poll, as the poller makes it; None for a scan not trusted (nothing committed)."""
    if raw:
        plan = await plan_raw_scan(store, SCHOOL, "learner", as_pages(rows), "learner_id")
    else:
        previous = await store.load(SCHOOL, "learner")
        records = [checked(msgspec.json.decode(row)) for row in rows]
        plan = plan_diff(previous, records, "learner_id")
    if plan.duplicated:
        await store.unsettle(SCHOOL, "learner", plan.scan_digest, 60)
        if not plan.trusted:
            return None
    elif plan.previous.unsettled is not None:
        await store.unsettle(SCHOOL, "learner", None, 0)
    result = finish_diff(plan, await store.old_records(SCHOOL, "learner", plan))
    events = record_events(result, school_id=SCHOOL, resource="learner", emit_created=True)
    return (await store.commit(SCHOOL, "learner", result, events, token=None)).events


def told(events: list[Event] | None) -> list[tuple[str, str, Any]] | None:
    if events is None:
        return None
    return [(e.type, e.resource_id, e.data, e.changes, e.sequence) for e in events]


@pytest.mark.parametrize("seed", range(6))
async def test_sighted_full_and_decoded_scans_tell_the_same_story(redis: aioredis.Redis, seed: int) -> None:
    rng = random.Random(seed)
    stores = {
        "sighted": SnapshotStore(redis, Keys("a"), Scripts(redis)),
        "full": FullStore(redis, Keys("b"), Scripts(redis)),
        "decoded": SnapshotStore(redis, Keys("c"), Scripts(redis)),
    }
    state = {i: {"learner_id": i, "first_name": f"L{i}", "grade": "4"} for i in range(1, 41)}
    made = [40]
    for scan in range(60):
        rows = next_scan(state, rng, made)
        outcomes = {
            name: told(await poll(store, rows, raw=name != "decoded")) for name, store in stores.items()
        }
        assert outcomes["sighted"] == outcomes["full"] == outcomes["decoded"], f"scan {scan}"
        snapshots = {
            name: await store.read_records(SCHOOL, "learner", limit=500) for name, store in stores.items()
        }
        assert snapshots["sighted"] == snapshots["full"] == snapshots["decoded"], f"scan {scan}"
