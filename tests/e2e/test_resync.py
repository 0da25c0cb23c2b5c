"""Resync (`POST /v1/subscriptions/{id}/resync`, docs/consumers.md): on a bridge that polled the simulator,
real subscribers get `resync.started`, one `<prefix>.snapshot` per record with the record's sequence, and
`resync.completed`; ordered in the school's lane after the change events, unordered with the completion
last; projected; chunked under a pending cap; erasure reaches queued snapshots; the API's refusals."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from typing import Any

import httpx
import redis.asyncio as aioredis

from bridge.delivery.projection import mask
from bridge.store.keys import Keys
from bridge.testing.consumer import PREFIX, Materialiser
from bridge.testing.servers import SimulatorServer
from bridge.testing.settings import bridge_settings
from bridge.testing.waiting import wait_for
from tests.e2e.helpers import api, running_bridge

SCHOOL = 1000
READER = "reader-token-abcdefghijklmnop"
NAMES = ("learners", "debtors")


async def _baselined(services: Any, school_id: int) -> bool:
    status = await services.status.get(school_id)
    return all(status.feeds.get(f) is not None and status.feeds[f].last_success for f in NAMES)


async def _truth(client: httpx.AsyncClient, school_id: int, name: str) -> dict[str, tuple[int, Any]]:
    page = (await client.get(f"/v1/schools/{school_id}/records/{name}", params={"limit": 500})).json()
    assert "next_cursor" not in page["meta"]
    return {row["resource_id"]: (row["sequence"], row["data"]) for row in page["data"]}


def _of_feed(bodies: list[dict[str, Any]], school_id: int, name: str) -> list[dict[str, Any]]:
    """The resync events of one feed, in arrival order."""
    prefix = PREFIX[name]
    return [
        b
        for b in bodies
        if b["school_id"] == school_id
        and (
            b["type"] == f"{prefix}.snapshot"
            or (b["type"].startswith("resync.") and b["data"]["resource"] == name)
        )
    ]


def _completed(receiver: Any, school_id: int, name: str) -> bool:
    return any(
        b["type"] == "resync.completed" and b["school_id"] == school_id and b["data"]["resource"] == name
        for b in receiver.bodies()
    )


async def _caught_up(services: Any, school_id: int, stopped: float) -> bool:
    feeds = (await services.status.get(school_id)).feeds.values()
    return bool(feeds) and all(
        f.last_started and f.last_started > stopped and f.last_success and f.last_success >= f.last_started
        for f in feeds
    )


async def test_an_ordered_subscription_gets_the_state_after_its_changes_and_a_consumer_converges(
    redis: aioredis.Redis, redis_url: str, simulator_factory: Any, receiver_factory: Any
) -> None:
    sim: SimulatorServer = simulator_factory(schools=1, learners=40, debtors=25, seed=11, churn=15.0)
    control = httpx.AsyncClient(base_url=sim.control_url)
    receiver, url = receiver_factory()
    async with running_bridge(bridge_settings(redis_url, sim.base_url)) as services, api(services) as client:
        made = (await client.post("/v1/subscriptions", json={"url": url})).json()
        await wait_for(lambda: _baselined(services, SCHOOL), what="the baseline")
        await wait_for(lambda: len(receiver.received) >= 5, timeout=30, what="some churn told")

        started = await client.post(f"/v1/subscriptions/{made['id']}/resync", json={})
        assert started.status_code == 202, started.text
        answer = started.json()
        assert answer["feeds"] == 2 and answer["resync_id"].startswith("rsy_")
        await asyncio.sleep(2)  # churn goes on beside the resync
        await control.post("/churn", json={"rate": 0})
        stopped = time.time()
        await wait_for(lambda: _caught_up(services, SCHOOL, stopped), timeout=30, what="a poll after churn")
        for name in NAMES:
            await wait_for(lambda n=name: _completed(receiver, SCHOOL, n), timeout=30, what=f"{name} done")
        final = (await client.get(f"/v1/schools/{SCHOOL}/records/learners", params={"limit": 1})).json()
        last = final["meta"]["as_of_sequence"]
        await wait_for(
            lambda: any(b["sequence"] == last and "." in b["type"] for b in receiver.bodies()),
            timeout=30,
            what="the last change delivered",
        )
        await asyncio.sleep(0.5)

        bodies = receiver.bodies()
        for name in NAMES:
            feed = _of_feed(bodies, SCHOOL, name)
            first, end = feed[0], feed[-1]
            assert first["type"] == "resync.started" and end["type"] == "resync.completed"
            assert first["resource"] == "resync" and first["resource_id"] == answer["resync_id"]
            assert first["data"]["resync_id"] == answer["resync_id"] and first["data"]["resource"] == name
            assert first["sequence"] == first["data"]["as_of_sequence"] == end["sequence"]
            snapshots = feed[1:-1]
            assert snapshots and all(b["type"] == f"{PREFIX[name]}.snapshot" for b in snapshots)
            assert end["data"]["count"] == len(snapshots)
            assert len({b["resource_id"] for b in snapshots}) == len(snapshots)  # each record once
            assert all(b["resource"] == PREFIX[name] and b["sequence"] <= last for b in snapshots)
            # In the lane after every change event queued before it: none newer than as_of_sequence comes
            # before resync.started. One at or below it may come after: committed before the feed was read,
            # queued by the hand-off after resync.started (docs/consumers.md: every change up to it is told
            # before resync.started or in the snapshots). Its record's snapshot then tells a state at least
            # as new (a removed one none), so the consumer's sequence rule leaves it aside.
            at = bodies.index(first)
            changes = [b for b in bodies if b["type"].split(".")[-1] in ("created", "updated", "removed")]
            assert not any(b["sequence"] > first["sequence"] for b in changes if bodies.index(b) < at)
            told = {b["resource_id"]: b["sequence"] for b in snapshots}
            late = [
                b
                for b in changes
                if bodies.index(b) > at
                and b["sequence"] <= first["sequence"]
                and b["resource"] == PREFIX[name]
            ]
            assert all(told.get(b["resource_id"], b["sequence"]) >= b["sequence"] for b in late), late

        consumer = Materialiser()  # a consumer that received all of it, changes and resync alike
        for body in bodies:
            consumer.apply(body)
        assert consumer.gaps == []
        for name in NAMES:
            held = consumer.records.get((SCHOOL, PREFIX[name]), {})
            assert held == await _truth(client, SCHOOL, name), name

        # Not one event of the resync took a number of the school's change sequence or entered the log.
        logged = (await client.get("/v1/events", params={"school_id": SCHOOL, "limit": 500})).json()["data"]
        assert not any(e["type"].endswith(".snapshot") or e["type"].startswith("resync.") for e in logged)
        assert sorted(e["sequence"] for e in logged) == list(range(1, last + 1))


async def test_projection_applies_and_an_unordered_subscription_gets_completed_last_in_small_chunks(
    redis: aioredis.Redis, redis_url: str, simulator_factory: Any, receiver_factory: Any
) -> None:
    sim: SimulatorServer = simulator_factory(schools=2, learners=45, debtors=20, seed=5)
    receiver, url = receiver_factory()
    async with running_bridge(bridge_settings(redis_url, sim.base_url)) as services, api(services) as client:
        services.resyncs.chunk = 7
        services.resyncs.max_pending = 10
        await wait_for(lambda: _baselined(services, SCHOOL), what="the baseline")
        await wait_for(lambda: _baselined(services, SCHOOL + 1), what="the other baseline")
        made = await client.post(
            "/v1/subscriptions",
            json={"url": url, "ordered": False, "event_types": ["learner.*"], "redact": ["first_name"]},
        )
        sid = made.json()["id"]
        highest = 0
        watching = True

        async def pending_within_cap() -> None:
            # Ends when told, not by a cancel: on Python 3.11 a cancel that lands as a redis-py command's
            # send completes is lost (its `asyncio.wait_for` returns the result instead), and a `while True`
            # then outlives the test, stuck on the client the fixture closes (bridge/loops.py `cancelled`).
            nonlocal highest
            keys = Keys()
            while watching:
                highest = max(highest, int(await redis.hlen(keys.deliveries(sid))))
                await asyncio.sleep(0.005)

        watcher = asyncio.create_task(pending_within_cap())
        try:
            answer = (await client.post(f"/v1/subscriptions/{sid}/resync", json={})).json()
            assert answer["feeds"] == 2  # two schools x learners (debtor.* not taken)
            for school in (SCHOOL, SCHOOL + 1):
                await wait_for(lambda s=school: _completed(receiver, s, "learners"), timeout=60, what="done")
        finally:
            watching = False
            await asyncio.wait_for(watcher, timeout=10)
        assert highest <= 10, highest

        bodies = receiver.bodies()
        for school in (SCHOOL, SCHOOL + 1):
            truth = await _truth(client, school, "learners")
            feed = _of_feed(bodies, school, "learners")
            assert feed[0]["type"] == "resync.started" and feed[-1]["type"] == "resync.completed"
            snapshots = feed[1:-1]
            assert Counter(b["resource_id"] for b in snapshots) == Counter(list(truth))  # each exactly once
            assert feed[-1]["data"]["count"] == len(truth) == feed[0]["data"]["count"]
            for body in snapshots:
                sequence, data = truth[body["resource_id"]]
                assert body["sequence"] == sequence
                assert body["data"]["first_name"] == mask(data["first_name"])
                assert {k: v for k, v in body["data"].items() if k != "first_name"} == {
                    k: v for k, v in data.items() if k != "first_name"
                }
        assert not any(b["type"].startswith("debtor.") for b in bodies)
        assert await redis.zcard(Keys().resyncs_active(sid)) == 0
        assert await redis.zcard(Keys().resyncs_unconfirmed(sid)) == 0
        assert await redis.hlen(Keys().traces(sid)) == 0  # snapshot events leave no trace behind


async def test_two_replicas_step_one_resync_and_each_record_is_sent_once_in_order(
    redis: aioredis.Redis, redis_url: str, simulator_factory: Any, receiver_factory: Any
) -> None:
    """Both replicas' resync loops see the same resync; its lease lets one at a time queue a chunk, so the
    lane holds each record once, between one `resync.started` and one `resync.completed`."""
    sim: SimulatorServer = simulator_factory(schools=1, learners=120, debtors=10, seed=8)
    receiver, url = receiver_factory()
    settings = bridge_settings(redis_url, sim.base_url)
    async with running_bridge(settings) as one, running_bridge(settings) as two, api(one) as client:
        for services in (one, two):
            services.resyncs.chunk = 9
            services.resyncs.max_pending = 12
        await wait_for(lambda: _baselined(one, SCHOOL), what="the baseline")
        made = await client.post("/v1/subscriptions", json={"url": url, "event_types": ["learner.*"]})
        sid = made.json()["id"]
        assert (await client.post(f"/v1/subscriptions/{sid}/resync", json={})).status_code == 202
        await wait_for(lambda: _completed(receiver, SCHOOL, "learners"), timeout=60, what="done")
        await asyncio.sleep(0.5)

        truth = await _truth(client, SCHOOL, "learners")
        feed = _of_feed(receiver.bodies(), SCHOOL, "learners")
        assert [b["type"] for b in feed].count("resync.started") == 1
        assert feed[0]["type"] == "resync.started" and feed[-1]["type"] == "resync.completed"
        snapshots = feed[1:-1]
        assert Counter(b["resource_id"] for b in snapshots) == Counter(list(truth))  # each exactly once
        assert [b["resource_id"] for b in snapshots] == sorted(truth, key=int)  # in the feed's id order
        assert all(b["sequence"] == truth[b["resource_id"]][0] for b in snapshots)


async def test_erasure_drops_a_queued_snapshot_delivery(
    redis: aioredis.Redis, redis_url: str, simulator_factory: Any, receiver_factory: Any
) -> None:
    sim: SimulatorServer = simulator_factory(schools=1, learners=12, debtors=5, seed=3)
    receiver, url = receiver_factory()
    async with running_bridge(bridge_settings(redis_url, sim.base_url)) as services, api(services) as client:
        await wait_for(lambda: _baselined(services, SCHOOL), what="the baseline")
        sid = (
            await client.post("/v1/subscriptions", json={"url": url, "event_types": ["learner.*"]})
        ).json()["id"]
        assert (await client.patch(f"/v1/subscriptions/{sid}", json={"enabled": False})).status_code == 200
        await client.post(f"/v1/subscriptions/{sid}/resync", json={"resources": ["learners"]})
        await wait_for(lambda: _resync_done(redis, sid), what="the resync queued")
        record = next(iter(await _truth(client, SCHOOL, "learners")))

        erased = await client.post(
            "/v1/erasure", json={"school_id": SCHOOL, "resource": "learner", "record_id": record}
        )
        assert erased.status_code == 202, erased.text
        assert erased.json()["deliveries"] == 1

        assert (await client.patch(f"/v1/subscriptions/{sid}", json={"enabled": True})).status_code == 200
        await wait_for(lambda: _completed(receiver, SCHOOL, "learners"), timeout=30, what="the resync sent")
        await asyncio.sleep(0.3)
        told = [b for b in receiver.bodies() if b["type"] == "learner.snapshot"]
        assert len(told) == 11 and record not in {b["resource_id"] for b in told}


async def test_a_frozen_id_list_that_expired_mid_resync_is_written_again_and_nothing_is_missed(
    redis: aioredis.Redis, redis_url: str, simulator_factory: Any, receiver_factory: Any
) -> None:
    """The feed's id list outlives any resync that keeps going; one paused past it (a subscriber down for
    longer than the retention) finds it gone: the list is written again and the feed starts over."""
    sim: SimulatorServer = simulator_factory(schools=1, learners=40, debtors=5, seed=9)
    receiver, url = receiver_factory()
    async with running_bridge(bridge_settings(redis_url, sim.base_url)) as services, api(services) as client:
        await wait_for(lambda: _baselined(services, SCHOOL), what="the baseline")
        await services.resyncs.stop_loop()  # stepped by hand below
        services.resyncs.chunk, services.resyncs.max_pending = 7, 1000
        made = await client.post("/v1/subscriptions", json={"url": url, "event_types": ["learner.*"]})
        sid = made.json()["id"]
        rid = (await client.post(f"/v1/subscriptions/{sid}/resync", json={})).json()["resync_id"]
        listed = Keys().resync_ids(SCHOOL, "learner", rid)
        assert await services.resyncs.step() > 0  # resync.started and the first chunk
        assert await redis.llen(listed) == 40
        await redis.delete(listed)  # as its expiry would
        while await services.resyncs.step():
            pass
        await wait_for(lambda: _completed(receiver, SCHOOL, "learners"), timeout=30, what="the resync sent")
        await asyncio.sleep(0.3)
        feed = _of_feed(receiver.bodies(), SCHOOL, "learners")
        told = Counter(b["resource_id"] for b in feed[1:-1])
        assert set(told) == set(await _truth(client, SCHOOL, "learners"))  # none missed
        assert sum(told.values()) == 40 + 7  # the first chunk twice
        assert [b["type"] for b in feed].count("resync.completed") == 1
        assert not await redis.exists(listed)  # gone again once the feed is done


async def _resync_done(redis: aioredis.Redis, sid: str) -> bool:
    return (
        int(await redis.zcard(Keys().resyncs_active(sid))) == 0
        and int(await redis.hlen(Keys().resyncs(sid))) > 0
    )


async def test_the_resync_api_refuses_what_it_cannot_do(
    redis: aioredis.Redis, redis_url: str, simulator_factory: Any, receiver_factory: Any
) -> None:
    sim: SimulatorServer = simulator_factory(schools=1, learners=5, debtors=5, seed=2)
    _receiver, url = receiver_factory()
    settings = bridge_settings(redis_url, sim.base_url, BRIDGE_READONLY_TOKEN=READER)
    async with running_bridge(settings) as services, api(services) as client:
        await wait_for(lambda: _baselined(services, SCHOOL), what="the baseline")
        scoped = (await client.post("/v1/subscriptions", json={"url": url, "school_ids": [SCHOOL]})).json()
        path = f"/v1/subscriptions/{scoped['id']}/resync"
        changes_only = (
            await client.post("/v1/subscriptions", json={"url": url, "event_types": ["learner.created"]})
        ).json()

        missing = await client.post("/v1/subscriptions/sub_nope/resync", json={})
        assert missing.status_code == 404
        for body, field, words in (
            ({"school_ids": [4242]}, "school_ids", "school 4242 is outside"),
            ({"school_ids": []}, "school_ids", "at least one"),
            ({"resources": ["promises"]}, "resources", "not watched"),
            ({"resources": ["widgets"]}, "resources", "not a resource"),
            ({"colour": "red"}, "colour", ""),
        ):
            refused = await client.post(path, json=body)
            assert refused.status_code == 400, (body, refused.text)
            assert field in refused.json()["detail"] and words in refused.json()["detail"], refused.json()
            assert "widgets" not in refused.text and "red" not in refused.text
        no_snapshot = await client.post(f"/v1/subscriptions/{changes_only['id']}/resync", json={})
        assert (
            no_snapshot.status_code == 400 and "match no snapshot event type" in no_snapshot.json()["detail"]
        )
        reader = await client.post(path, json={}, headers={"Authorization": f"Bearer {READER}"})
        assert reader.status_code == 403

        first = (await client.post(path, json={"resources": ["learners"]})).json()
        again = (await client.post(path, json={"resources": ["learners"]})).json()
        assert (first["feeds"] == 1 and again == first) or _resync_finished_between(first, again)


def _resync_finished_between(first: dict[str, Any], again: dict[str, Any]) -> bool:
    """The first resync may finish before the second POST: then the second is a new one."""
    return first["resync_id"] != again["resync_id"] and again["feeds"] == 1


async def test_the_resync_loop_finds_resyncs_through_its_index_and_an_unindexed_one_by_its_full_look(
    redis: aioredis.Redis, redis_url: str, simulator_factory: Any, receiver_factory: Any
) -> None:
    """The loop looks at the subscriptions with a resync under way (`Keys.resyncing`), not at every one:
    the index holds exactly those, and a subscription leaves it once its resyncs are done. A resync stored
    by a process that died before indexing it still runs: every `scan_seconds` the loop looks at all."""
    sim: SimulatorServer = simulator_factory(schools=1, learners=12, debtors=3, seed=9)
    receiver, url = receiver_factory()
    index = Keys().resyncing()
    async with running_bridge(bridge_settings(redis_url, sim.base_url)) as services, api(services) as client:
        await wait_for(lambda: _baselined(services, SCHOOL), what="the baseline")
        await services.resyncs.stop_loop()  # stepped by hand below
        sids = [
            (await client.post("/v1/subscriptions", json={"url": url, "event_types": ["learner.*"]})).json()[
                "id"
            ]
            for _ in range(12)
        ]
        await services.resyncs.step()  # the first step looks at every subscription: none has a resync
        assert await redis.smembers(index) == set()

        busy = sids[3]
        posted = await client.post(f"/v1/subscriptions/{busy}/resync", json={"resources": ["learners"]})
        assert posted.status_code == 202, posted.text
        assert await redis.smembers(index) == {busy.encode()}
        while await services.resyncs.step():
            pass
        await wait_for(lambda: _completed(receiver, SCHOOL, "learners"), timeout=30, what="the resync sent")
        await services.resyncs.step()  # finds it done: the subscription leaves the index
        assert await redis.smembers(index) == set()

        # A resync stored without its index entry (its process killed between the two writes).
        lost = sids[7]
        posted = await client.post(f"/v1/subscriptions/{lost}/resync", json={"resources": ["learners"]})
        assert posted.status_code == 202, posted.text
        await redis.srem(index, lost)
        assert await services.resyncs.step() == 0  # not in the index, and no full look due
        services.resyncs.scan_seconds = 0.0
        assert await services.resyncs.step() > 0  # the full look finds it, and indexes it again
        assert await redis.smembers(index) == {lost.encode()}
        while await services.resyncs.step():
            pass
        await wait_for(
            lambda: sum(1 for b in receiver.bodies() if b["type"] == "resync.completed") == 2,
            timeout=30,
            what="the second resync sent",
        )
