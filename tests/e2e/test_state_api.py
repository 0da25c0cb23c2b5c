"""The state API (`GET /v1/schools/{id}/records/{resource}`) on a bridge that polled the simulator: pages
that cover every record once, `ids=`, its 404s and 400s, the read-only token, an erased record, and not one
d6 request; then the late consumer of docs/consumers.md, which ends with exactly what the snapshot holds."""

from __future__ import annotations

import asyncio
import re
import time
from pathlib import Path
from typing import Any

import httpx
import redis.asyncio as aioredis

from bridge.api.records import Records, RecordsController, encode_cursor
from bridge.api.wiring import build_api, parts, provide
from bridge.delivery.projection import Shape
from bridge.testing.consumer import PREFIX, Materialiser, read_state
from bridge.testing.receivers import Receiver
from bridge.testing.servers import SimulatorServer, ThreadedServer
from bridge.testing.settings import bridge_settings
from bridge.testing.waiting import wait_for
from tests.delivery.api_app import api_client
from tests.e2e.helpers import ROOT, api, running_bridge

READER = "reader-token-abcdefghijklmnop"
SCHOOL = 1000
LEARNERS = f"/v1/schools/{SCHOOL}/records/learners"


async def _baselined(services: Any, school_id: int, feeds: tuple[str, ...]) -> bool:
    status = await services.status.get(school_id)
    return all(status.feeds.get(f) is not None and status.feeds[f].last_success for f in feeds)


async def _d6_requests(control: httpx.AsyncClient) -> int:
    return int((await control.get("/stats")).json()["total"])


async def _all_pages(client: httpx.AsyncClient, path: str, limit: int) -> tuple[list[dict[str, Any]], int]:
    rows: list[dict[str, Any]] = []
    params: dict[str, Any] = {"limit": limit}
    pages = 0
    while True:
        answer = await client.get(path, params=params)
        assert answer.status_code == 200, answer.text
        page = answer.json()
        pages += 1
        assert page["meta"]["limit"] == limit and page["meta"]["as_of_sequence"] >= 0
        rows.extend(page["data"])
        if "next_cursor" not in page["meta"]:
            return rows, pages
        params["cursor"] = page["meta"]["next_cursor"]


async def test_the_state_api_pages_fetches_refuses_and_never_asks_d6(
    redis: aioredis.Redis, redis_url: str, simulator_factory: Any
) -> None:
    sim: SimulatorServer = simulator_factory(schools=2, learners=45, debtors=30, seed=4)
    control = httpx.AsyncClient(base_url=sim.control_url)
    settings = bridge_settings(
        redis_url,
        sim.base_url,
        BRIDGE_READONLY_TOKEN=READER,
        BRIDGE_SCHOOL_POLL_SECONDS="3600",
        BRIDGE_INTEGRATIONS_POLL_SECONDS="3600",
    )
    async with running_bridge(settings) as services, api(services) as client:
        await wait_for(lambda: _baselined(services, SCHOOL, ("learners", "debtors")), what="the baseline")
        await asyncio.sleep(0.5)  # the other school's polls, if any, settle
        asked = await _d6_requests(control)
        learners = (await control.get(f"/schools/{SCHOOL}/learners")).json()["data"]
        ids = [str(n) for n in sorted(int(learner["learner_id"]) for learner in learners)]  # by value

        rows, pages = await _all_pages(client, LEARNERS, limit=7)
        assert [row["resource_id"] for row in rows] == ids and pages >= len(ids) // 7
        assert {row["sequence"] for row in rows} == {0}  # a silent baseline
        by_id = {str(learner["learner_id"]): learner for learner in learners}
        assert all(row["data"]["learner_id"] == by_id[row["resource_id"]]["learner_id"] for row in rows)
        debtors, _ = await _all_pages(client, f"/v1/schools/{SCHOOL}/records/debtors", limit=500)
        assert len(debtors) == 30

        wanted = [ids[3], ids[0], "no-such-record"]
        fetched = (await client.get(LEARNERS, params={"ids": ",".join(wanted)})).json()
        assert sorted(row["resource_id"] for row in fetched["data"]) == sorted(ids[i] for i in (0, 3))
        assert "next_cursor" not in fetched["meta"] and fetched["meta"]["as_of_sequence"] == 0

        too_many = await client.get(LEARNERS, params={"ids": ",".join(str(n) for n in range(1001))})
        assert too_many.status_code == 400 and too_many.json()["detail"].startswith("ids:")
        assert "at most 1000" in too_many.json()["detail"] and too_many.json()["extra"]["field"] == "ids"
        for params, field in (
            ({"cursor": "not a cursor!"}, "cursor"),
            ({"cursor": "Zm9v="}, "cursor"),
            ({"limit": "0"}, "limit"),
            ({"limit": "many"}, "limit"),
            ({"limit": "501"}, "limit"),
            ({"ids": " , "}, "ids"),
            ({"ids": ids[0], "cursor": rows[0]["resource_id"].encode().hex()}, "cursor"),
        ):
            refused = await client.get(LEARNERS, params=params)
            assert refused.status_code == 400, (params, refused.text)
            assert field in refused.json()["detail"], (params, refused.json())

        for odd in (
            "1e5",
            "-3",
            "0x10",
            "abc",
            "\u00e9\u0000",
            str(2**80),
        ):  # any id is a place to resume
            resumed = await client.get(LEARNERS, params={"cursor": encode_cursor(odd)})
            assert resumed.status_code == 200, (odd, resumed.text)
            fetched_odd = await client.get(LEARNERS, params={"ids": odd})
            assert fetched_odd.status_code == 200 and fetched_odd.json()["data"] == [], odd
        assert (await client.get("/v1/schools/-5/records/learners")).status_code == 404

        unknown = await client.get("/v1/schools/4242/records/learners")
        assert unknown.status_code == 404 and "school 4242" in unknown.json()["detail"]
        assert unknown.json()["extra"] == {"school_id": 4242}
        not_watched = await client.get(f"/v1/schools/{SCHOOL}/records/promises")
        assert not_watched.status_code == 404 and "'promises'" in not_watched.json()["detail"]
        assert "BRIDGE_RESOURCES" in not_watched.json()["detail"]
        nonsense = await client.get(f"/v1/schools/{SCHOOL}/records/widgets")
        assert nonsense.status_code == 404 and "names no resource" in nonsense.json()["detail"]
        assert "widgets" not in nonsense.text, "a value sent is never repeated (it may be a pasted token)"
        assert (await client.get(LEARNERS, headers={"Authorization": "Bearer wrong"})).status_code == 401

        reader = await client.get(
            LEARNERS, params={"limit": 3}, headers={"Authorization": f"Bearer {READER}"}
        )
        assert reader.status_code == 200 and len(reader.json()["data"]) == 3

        erased = await client.post(
            "/v1/erasure", json={"school_id": SCHOOL, "resource": "learner", "record_id": ids[1]}
        )
        assert erased.status_code == 202, erased.text
        after = (await client.get(LEARNERS, params={"ids": ids[1]})).json()["data"]
        assert after == [{"resource_id": ids[1], "sequence": 0, "data": {"erased": True}}]

        # The hook a subscription-scoped token will use: its subscription's shape cuts every row.
        records = Records(settings=settings, snapshots=services.snapshots, watcher=services.watcher)
        shaped = build_api(
            settings,
            [RecordsController],
            {**parts(records=records), "shape": provide(Shape(fields={"learner": frozenset({"grade"})}))},
        )
        async with api_client(shaped) as scoped:
            cut = (await scoped.get(LEARNERS, params={"ids": f"{ids[0]},{ids[1]}"})).json()["data"]
        assert set(cut[0]["data"]) == {"learner_id", "grade"} | {
            f for f in cut[0]["data"] if f.endswith("_id")
        }
        assert cut[0]["data"]["grade"] == by_id[ids[0]]["grade"] and cut[1]["data"] == {"erased": True}

        assert await _d6_requests(control) == asked  # the state API never asked d6


async def _caught_up(services: Any, school_id: int, stopped: float) -> bool:
    """Every feed of the school started a poll after the churn stopped, and that poll succeeded."""
    feeds = (await services.status.get(school_id)).feeds.values()
    return bool(feeds) and all(
        f.last_started and f.last_started > stopped and f.last_success and f.last_success >= f.last_started
        for f in feeds
    )


async def test_a_late_consumer_reads_the_state_then_the_events_and_holds_what_the_snapshot_holds(
    redis: aioredis.Redis, redis_url: str, simulator_factory: Any
) -> None:
    sim: SimulatorServer = simulator_factory(schools=1, learners=60, debtors=40, seed=7, churn=12.0)
    control = httpx.AsyncClient(base_url=sim.control_url)
    receiver = Receiver()
    with ThreadedServer(receiver) as hook:
        async with (
            running_bridge(bridge_settings(redis_url, sim.base_url)) as services,
            api(services) as client,
        ):
            made = await client.post("/v1/subscriptions", json={"url": f"{hook.url}/d6"})
            assert made.status_code == 201, made.text
            await wait_for(lambda: _baselined(services, SCHOOL, ("learners", "debtors")), what="the baseline")
            await wait_for(lambda: len(receiver.received) >= 5, timeout=30, what="some churn told")

            consumer = Materialiser()  # starts late: the bridge has told changes for a while
            as_of = min(
                [await read_state(client, SCHOOL, name, consumer, 9) for name in ("learners", "debtors")]
            )
            assert as_of > 0
            await asyncio.sleep(3)  # churn goes on after the read
            await control.post("/churn", json={"rate": 0})
            stopped = time.time()
            await wait_for(
                lambda: _caught_up(services, SCHOOL, stopped), timeout=30, what="a poll after churn"
            )
            final = (await client.get(LEARNERS, params={"limit": 1})).json()["meta"]["as_of_sequence"]
            await wait_for(
                lambda: any(b["sequence"] == final for b in receiver.bodies() if b["school_id"] == SCHOOL),
                timeout=30,
                what=f"event {final} delivered",
            )

            later = [b for b in receiver.bodies() if b["school_id"] == SCHOOL and b["sequence"] > as_of]
            assert later, "no change after the state was read"
            for body in later:
                consumer.apply(body)
            assert consumer.gaps == []
            for name in ("learners", "debtors"):
                truth, _ = await _all_pages(client, f"/v1/schools/{SCHOOL}/records/{name}", limit=500)
                held = consumer.records.get((SCHOOL, PREFIX[name]), {})
                assert held == {row["resource_id"]: (row["sequence"], row["data"]) for row in truth}, name


def test_the_docs_page_shows_the_consumer_that_is_tested() -> None:
    """docs/consumers.md carries bridge/testing/consumer.py's example verbatim."""
    source = (ROOT / "bridge" / "testing" / "consumer.py").read_text()
    example = re.search(
        r"# --- the example of docs/consumers.md starts here ---\n(.*?)\n+# --- ", source, re.S
    )
    assert example is not None
    page = Path(ROOT / "docs" / "consumers.md").read_text()
    assert example.group(1).strip() in page
