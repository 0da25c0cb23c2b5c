"""The per-record sequence end to end (docs/events.md#per-record-sequence): the simulator over HTTP, a real
Redis, the bridge's own wiring; each record's sequence read back with `SnapshotStore.read_records`."""

from __future__ import annotations

from typing import Any

import httpx
import redis.asyncio as aioredis

from bridge.app import Services
from bridge.sync.snapshot import RecordRow
from bridge.testing.servers import SimulatorServer
from bridge.testing.settings import bridge_settings
from bridge.testing.waiting import wait_for
from tests.e2e.helpers import api, running_bridge, school_events

SCHOOL = 1000


async def rows(services: Services, resource: str) -> dict[str, RecordRow]:
    """Every record of the snapshot, page after page (small pages, so paging is crossed)."""
    found: dict[str, RecordRow] = {}
    after = None
    while True:
        page = await services.snapshots.read_records(SCHOOL, resource, after=after, limit=7)
        for row in page.rows:
            assert row.resource_id not in found
            found[row.resource_id] = row
        if page.next_after is None:
            return found
        after = page.next_after


async def baselined(services: Services) -> bool:
    meta = await services.snapshots.meta(SCHOOL)
    return all(r in meta.resources and meta.resources[r].baseline for r in ("learner", "debtor"))


async def test_sequences_after_a_silent_baseline_a_change_and_an_erasure(
    redis: aioredis.Redis, redis_url: str, simulator_factory: Any
) -> None:
    sim: SimulatorServer = simulator_factory(schools=1, learners=30, debtors=20, seed=5)
    control = httpx.AsyncClient(base_url=sim.control_url)
    async with running_bridge(bridge_settings(redis_url, sim.base_url)) as services, api(services) as client:
        await wait_for(lambda: baselined(services), what="the first poll of both feeds")
        learners, debtors = await rows(services, "learner"), await rows(services, "debtor")
        assert (len(learners), len(debtors)) == (30, 20)
        assert {row.sequence for row in [*learners.values(), *debtors.values()]} == {0}
        assert await school_events(redis, SCHOOL) == []

        changed = (await control.get(f"/schools/{SCHOOL}/learners")).json()["data"][3]
        gone = (await control.get(f"/schools/{SCHOOL}/learners")).json()["data"][8]
        debtor = (await control.get(f"/schools/{SCHOOL}/accountablepersons")).json()["data"][2]
        grade = "12" if changed["grade"] != "12" else "11"
        await control.patch(f"/schools/{SCHOOL}/learners/{changed['learner_id']}", json={"grade": grade})
        await control.delete(f"/schools/{SCHOOL}/learners/{gone['learner_id']}")
        pid = str(debtor["accountable_person_id"])
        await control.patch(f"/schools/{SCHOOL}/accountablepersons/{pid}", json={"employer": "Sasol"})
        events = await wait_for(
            lambda: _at_least(redis, 3), timeout=20, what="the update, the removal and the debtor update"
        )
        told = {(e.resource, e.resource_id): e.sequence for e in events}
        assert sorted(e.type for e in events) == ["debtor.updated", "learner.removed", "learner.updated"]

        now_learners, now_debtors = await rows(services, "learner"), await rows(services, "debtor")
        lid = str(changed["learner_id"])
        assert now_learners[lid].sequence == told[("learner", lid)] > 0
        assert now_learners[lid].data is not None and now_learners[lid].data["grade"] == grade
        assert str(gone["learner_id"]) not in now_learners
        assert {rid: row.sequence for rid, row in now_learners.items() if rid != lid} == {
            rid: 0 for rid in learners if rid not in (lid, str(gone["learner_id"]))
        }
        assert now_debtors[pid].sequence == told[("debtor", pid)]
        assert {row.sequence for rid, row in now_debtors.items() if rid != pid} == {0}
        page = await services.snapshots.read_records(SCHOOL, "learner", ids=[lid])
        assert page.as_of_sequence == (await services.snapshots.meta(SCHOOL)).seq == max(told.values())

        # An erasure keeps the record's digest and its sequence, and none of its data.
        answer = await client.post(
            "/v1/erasure", json={"school_id": SCHOOL, "resource": "debtor", "record_id": pid}
        )
        assert answer.status_code == 202, answer.text
        erased = await services.snapshots.read_records(SCHOOL, "debtor", ids=[pid, "nobody"])
        assert erased.rows == [RecordRow(resource_id=pid, sequence=told[("debtor", pid)], data=None)]
        assert (await rows(services, "debtor"))[pid].data is None


async def test_with_the_initial_snapshot_each_record_has_its_created_sequence(
    redis: aioredis.Redis, redis_url: str, simulator_factory: Any
) -> None:
    sim: SimulatorServer = simulator_factory(schools=1, learners=25, debtors=15, seed=6)
    settings = bridge_settings(redis_url, sim.base_url, BRIDGE_EMIT_INITIAL_SNAPSHOT="true")
    async with running_bridge(settings) as services:
        await wait_for(lambda: baselined(services), what="the first poll of both feeds")
        events = [e for e in await school_events(redis, SCHOOL) if e.resource != "integration"]
        created = {(e.resource, e.resource_id): e.sequence for e in events}
        assert len(created) == 40 and {e.type.split(".")[1] for e in events} == {"created"}
        for resource in ("learner", "debtor"):
            found = await rows(services, resource)
            assert {rid: row.sequence for rid, row in found.items()} == {
                rid: seq for (r, rid), seq in created.items() if r == resource
            }


async def _at_least(redis: aioredis.Redis, n: int) -> list[Any] | None:
    events = await school_events(redis, SCHOOL)
    return events if len(events) >= n else None
