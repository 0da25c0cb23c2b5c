"""Pull subscriptions (docs/pull.md): on a bridge that polls the simulator, a feed reader gets every event,
each school's in `sequence` order, and the same as a webhook subscriber with the same filters; commits
move the position a cursorless read starts at; long-polls answer when an event comes; a resync reaches
the feed; the refusals name what is wrong."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import msgspec
import redis.asyncio as aioredis

from bridge.delivery.feed import decode_cursor, parse_id
from bridge.store.keys import Keys
from bridge.testing.servers import SimulatorServer
from bridge.testing.settings import bridge_settings
from bridge.testing.waiting import wait_for
from tests.e2e.helpers import api, running_bridge

SCHOOLS = (1000, 1001)


async def _drain(
    client: httpx.AsyncClient, sid: str, cursor: str | None, *, limit: int = 50
) -> tuple[list[dict[str, Any]], str]:
    """Every event after `cursor` (the committed position without one), page by page; and the cursor after."""
    events: list[dict[str, Any]] = []
    while True:
        params: dict[str, Any] = {"limit": limit}
        if cursor is not None:
            params["cursor"] = cursor
        page = await client.get(f"/v1/subscriptions/{sid}/feed", params=params)
        assert page.status_code == 200, page.text
        body = page.json()
        events += body["data"]
        cursor = body["meta"]["next_cursor"]
        if not body["meta"]["has_more"]:
            return events, cursor


async def test_a_pull_reader_gets_what_a_webhook_subscriber_gets_in_order_and_commits(
    redis: aioredis.Redis, redis_url: str, simulator_factory: Any, receiver_factory: Any
) -> None:
    sim: SimulatorServer = simulator_factory(schools=2, learners=30, debtors=20, seed=3, churn=20.0)
    control = httpx.AsyncClient(base_url=sim.control_url)
    receiver, url = receiver_factory()
    async with running_bridge(bridge_settings(redis_url, sim.base_url)) as services, api(services) as client:
        pull = (await client.post("/v1/subscriptions", json={"delivery": "pull"})).json()
        hook = (await client.post("/v1/subscriptions", json={"url": url})).json()
        assert pull["delivery"] == "pull" and pull["url"] is None and hook["delivery"] == "webhook"
        sid = pull["id"]

        await wait_for(lambda: len(receiver.received) >= 20, timeout=40, what="some churn told")
        first, cursor = await _drain(client, sid, None, limit=7)
        assert first, "the feed holds the events the webhook got"
        committed = await client.post(f"/v1/subscriptions/{sid}/feed/commit", json={"cursor": cursor})
        assert committed.status_code == 200, committed.text
        assert committed.json()["committed_cursor"] == cursor

        await control.post("/churn", json={"rate": 0})
        await asyncio.sleep(2 * services.settings.school_poll_seconds + 1)  # the last polls commit
        logged = await _logged(client)
        await wait_for(
            lambda: set(receiver.ids()) >= logged, timeout=30, what="the webhook subscriber got every event"
        )
        rest, _ = await _drain(client, sid, None)  # no cursor: starts after the committed position
        got = first + rest
        assert len(got) == len({e["id"] for e in got})  # none twice
        assert {e["id"] for e in got} == logged == set(receiver.ids())
        assert not {e["id"] for e in first} & {e["id"] for e in rest}
        by_id = {b["id"]: b for b in receiver.bodies()}
        assert all(e == by_id[e["id"]] for e in got)  # the very envelopes the webhook was sent
        for school in SCHOOLS:
            sequences = [e["sequence"] for e in got if e["school_id"] == school]
            assert sequences == sorted(sequences) and len(sequences) > 1

        listed = (await client.get("/v1/subscriptions")).json()["data"]
        mine = next(s for s in listed if s["id"] == sid)
        assert mine["delivery"] == "pull" and mine["pending_deliveries"] == len(rest)
        # Nothing was ever POSTed for it: the worker claims no pull subscription's deliveries.
        assert await redis.zcard(Keys("d6b").due(sid)) == 0


async def _logged(client: httpx.AsyncClient) -> set[str]:
    """The ids of every event in the bridge's log."""
    ids: set[str] = set()
    cursor: str | None = None
    while True:
        params: dict[str, Any] = {"limit": 500, **({"cursor": cursor} if cursor else {})}
        page = (await client.get("/v1/events", params=params)).json()
        ids |= {e["id"] for e in page["data"]}
        cursor = page["meta"].get("next_cursor")
        if not cursor:
            return ids


async def test_a_long_poll_answers_when_an_event_comes_and_a_resync_reaches_the_feed(
    redis: aioredis.Redis, redis_url: str, simulator_factory: Any
) -> None:
    sim: SimulatorServer = simulator_factory(schools=1, learners=12, debtors=8, seed=9)
    control = httpx.AsyncClient(base_url=sim.control_url)
    settings = bridge_settings(redis_url, sim.base_url)
    async with running_bridge(settings) as services, api(services) as client:
        sid = (await client.post("/v1/subscriptions", json={"delivery": "pull"})).json()["id"]
        await wait_for(
            lambda: _polled(services), timeout=30, what="a first poll (a silent baseline: nothing to read)"
        )
        _, cursor = await _drain(client, sid, None)

        waited = time.monotonic()
        empty = await client.get(f"/v1/subscriptions/{sid}/feed", params={"cursor": cursor, "wait": 0.5})
        assert empty.json()["data"] == [] and time.monotonic() - waited >= 0.5  # the whole wait, then empty

        reader = asyncio.create_task(
            client.get(f"/v1/subscriptions/{sid}/feed", params={"cursor": cursor, "wait": 25})
        )
        await asyncio.sleep(0.3)
        assert not reader.done()
        await control.post("/churn", json={"rate": 30})
        answer = await asyncio.wait_for(reader, 25)
        arrived = time.time()
        await control.post("/churn", json={"rate": 0})
        events = answer.json()["data"]
        assert events, "the long-poll answered with the change"
        detected = min(_seconds(e["timestamp"]) for e in events)
        assert arrived - detected < 2.0  # measured closely by bench/feed.py

        started = await client.post(f"/v1/subscriptions/{sid}/resync", json={"resources": ["learners"]})
        assert started.status_code == 202, started.text
        after = answer.json()["meta"]["next_cursor"]

        async def completed() -> bool:
            got, _ = await _drain(client, sid, after)
            return any(e["type"] == "resync.completed" for e in got)

        await wait_for(completed, timeout=30, what="the resync in the feed")
        got, _ = await _drain(client, sid, after)
        framed = [e for e in got if e["type"] == "learner.snapshot" or e["type"].startswith("resync.")]
        assert framed[0]["type"] == "resync.started" and framed[-1]["type"] == "resync.completed"
        assert framed[-1]["data"]["count"] == len(framed) - 2 > 0


async def test_the_refusals_name_what_is_wrong(
    redis: aioredis.Redis, redis_url: str, simulator_factory: Any, receiver_factory: Any
) -> None:
    sim: SimulatorServer = simulator_factory(schools=1, learners=5, debtors=5, seed=1)
    _, url = receiver_factory()
    async with running_bridge(bridge_settings(redis_url, sim.base_url)) as services, api(services) as client:
        with_url = await client.post("/v1/subscriptions", json={"delivery": "pull", "url": url})
        assert with_url.status_code == 400 and with_url.json()["extra"]["field"] == "url"
        no_url = await client.post("/v1/subscriptions", json={})
        assert no_url.status_code == 400 and no_url.json()["extra"]["field"] == "url"
        odd = await client.post("/v1/subscriptions", json={"delivery": "carrier-pigeon"})
        assert odd.status_code == 400 and "delivery" in odd.json()["detail"]

        pull = (await client.post("/v1/subscriptions", json={"delivery": "pull"})).json()["id"]
        other = (await client.post("/v1/subscriptions", json={"delivery": "pull"})).json()["id"]
        hook = (await client.post("/v1/subscriptions", json={"url": url})).json()["id"]
        feed = f"/v1/subscriptions/{pull}/feed"

        conflict = await client.get(f"/v1/subscriptions/{hook}/feed")
        assert conflict.status_code == 409 and "pull" in conflict.json()["detail"]
        assert (await client.post(f"/v1/subscriptions/{pull}/test")).status_code == 409
        patched = await client.patch(f"/v1/subscriptions/{pull}", json={"url": url})
        assert patched.status_code == 400 and patched.json()["extra"]["field"] == "url"

        for params in ({"limit": 0}, {"limit": 501}, {"wait": -1}, {"wait": 31}):
            bad = await client.get(feed, params=params)
            assert bad.status_code == 400, params
            assert next(iter(params)) in bad.json()["detail"]

        theirs = (await client.get(f"/v1/subscriptions/{other}/feed")).json()["meta"]["next_cursor"]
        for cursor, says in (("not-a-cursor!", "not a feed cursor"), (theirs, "another subscription")):
            bad = await client.get(feed, params={"cursor": cursor})
            assert bad.status_code == 400 and bad.json()["extra"]["field"] == "cursor"
            assert says in bad.json()["detail"] and cursor not in bad.json()["detail"]
            commit = await client.post(f"{feed}/commit", json={"cursor": cursor})
            assert commit.status_code == 400 and commit.json()["extra"]["field"] == "cursor"
        missing = await client.post(f"{feed}/commit", json={})
        assert missing.status_code == 400 and "cursor" in missing.json()["detail"]

        def made_up(position: str) -> str:
            return base64.urlsafe_b64encode(f"{pull}|{position}".encode()).decode().rstrip("=")

        ahead = made_up(f"{int(time.time() * 1000) + 3_600_000}-0")  # an hour ahead: never given
        for cursor, says in ((made_up(f"{2**64}-0"), "not a feed cursor"), (ahead, "ahead of everything")):
            for params in ({"cursor": cursor}, {"cursor": cursor, "wait": 1}):
                bad = await client.get(feed, params=params)
                assert bad.status_code == 400 and says in bad.json()["detail"], bad.text
            stream = await client.get(f"/v1/subscriptions/{pull}/stream", headers={"Last-Event-ID": cursor})
            assert stream.status_code == 400 and stream.json()["extra"]["field"] == "Last-Event-ID"


async def _polled(services: Any) -> bool:
    status = await services.status.get(1000)
    return bool(status.feeds) and all(f.last_success for f in status.feeds.values())


def _seconds(timestamp: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(timestamp.replace("Z", "+00:00")).timestamp()


async def test_commits_move_forward_only_and_a_cursor_behind_what_is_gone_is_expired(
    redis: aioredis.Redis, redis_url: str, simulator_factory: Any
) -> None:
    sim: SimulatorServer = simulator_factory(schools=1, learners=20, debtors=10, seed=4, churn=25.0)
    control = httpx.AsyncClient(base_url=sim.control_url)
    async with running_bridge(bridge_settings(redis_url, sim.base_url)) as services, api(services) as client:
        sid = (await client.post("/v1/subscriptions", json={"delivery": "pull"})).json()["id"]
        feed = f"/v1/subscriptions/{sid}/feed"

        async def some() -> bool:
            return len((await _drain(client, sid, None))[0]) >= 6

        await wait_for(some, timeout=40, what="a few events in the feed")
        await control.post("/churn", json={"rate": 0})
        one = (await client.get(feed, params={"limit": 2})).json()
        two = (await client.get(feed, params={"limit": 2, "cursor": one["meta"]["next_cursor"]})).json()
        early, later = one["meta"]["next_cursor"], two["meta"]["next_cursor"]

        moved = (await client.post(f"{feed}/commit", json={"cursor": later})).json()
        assert moved["committed_cursor"] == later
        back = (await client.post(f"{feed}/commit", json={"cursor": early})).json()
        assert back["committed_cursor"] == later  # never back
        expired = await client.get(feed, params={"cursor": early})
        assert expired.status_code == 400 and "expired" in expired.json()["detail"]
        resumed = (await client.get(feed, params={"limit": 500})).json()["data"]
        assert resumed[0]["id"] not in {e["id"] for e in one["data"] + two["data"]}
        # What was committed is gone from Redis: the deliveries and their feed entries (a poll that was
        # running when the churn stopped may have queued more since: what is left is after the commit).
        keys = Keys("d6b")
        async with redis.pipeline(transaction=True) as pipe:
            pipe.xlen(keys.feed(sid)).hlen(keys.deliveries(sid)).xrange(keys.feed(sid), count=1)
            entries, deliveries, oldest = await pipe.execute()
        assert entries == deliveries >= moved["waiting"]
        assert not oldest or parse_id(oldest[0][0]) > decode_cursor(sid, later)

        # A cursor ahead of anything the feed held is refused rather than hiding what comes next.
        ahead = _forged(sid, "9999999999999-0")
        refused = await client.post(f"{feed}/commit", json={"cursor": ahead})
        assert refused.status_code == 400 and refused.json()["extra"]["field"] == "cursor"

        # Retention trims the feed too; a reader behind it is told, not silently skipped ahead. Polling
        # stops first, and the last polls' events reach the feed (changes made before the churn stopped
        # are found by the next poll), so nothing comes after the trim.
        await services.scheduler.shutdown(grace_seconds=10)

        async def settled() -> bool:
            before = await redis.xlen(keys.feed(sid))
            await asyncio.sleep(1)
            return await redis.xlen(keys.feed(sid)) == before and not await services.outbox.pending()

        await wait_for(settled, timeout=30, what="the last polls' events in the feed")
        await services.worker._queue.trim(sid, cutoff=time.time() + 1)
        assert await redis.xlen(keys.feed(sid)) == 0
        gone = await client.get(feed, params={"cursor": later})
        assert gone.status_code == 400 and "expired" in gone.json()["detail"]
        assert (await client.get(feed)).json()["data"] == []


def _forged(subscription_id: str, entry: str) -> str:
    import base64

    return base64.urlsafe_b64encode(f"{subscription_id}|{entry}".encode()).decode().rstrip("=")


async def test_a_subscription_token_reads_and_commits_its_own_feed_only(
    redis: aioredis.Redis, redis_url: str, simulator_factory: Any
) -> None:
    sim: SimulatorServer = simulator_factory(schools=1, learners=10, debtors=10, seed=2, churn=20.0)
    async with running_bridge(bridge_settings(redis_url, sim.base_url)) as services, api(services) as admin:
        mine = (
            await admin.post("/v1/subscriptions", json={"delivery": "pull", "redact": ["last_name"]})
        ).json()
        theirs = (await admin.post("/v1/subscriptions", json={"delivery": "pull"})).json()
        token = (await admin.post(f"/v1/subscriptions/{mine['id']}/tokens")).json()["token"]
        admin.headers["Authorization"] = f"Bearer {token}"
        client = admin  # from here on, the subscription token
        feed = f"/v1/subscriptions/{mine['id']}/feed"

        async def learners() -> bool:
            page = (await client.get(feed, params={"limit": 500})).json()
            return any(e["type"] == "learner.updated" for e in page["data"])

        await wait_for(learners, timeout=40, what="a learner change in its feed")
        page = (await client.get(feed, params={"limit": 500})).json()
        names = [e["data"]["last_name"] for e in page["data"] if e["type"] == "learner.updated"]
        assert names and all(name is None or name.startswith("*") for name in names)  # cut by its redact
        done = await client.post(f"{feed}/commit", json={"cursor": page["meta"]["next_cursor"]})
        assert done.status_code == 200, done.text
        resync = await client.post(f"/v1/subscriptions/{mine['id']}/resync", json={})
        assert resync.status_code == 202, resync.text

        for path in (f"/v1/subscriptions/{theirs['id']}/feed", f"/v1/subscriptions/{theirs['id']}/stream"):
            assert (await client.get(path)).status_code == 403, path
        other = await client.post(
            f"/v1/subscriptions/{theirs['id']}/feed/commit", json={"cursor": page["meta"]["next_cursor"]}
        )
        assert other.status_code == 403
        assert (await client.get("/v1/subscriptions")).status_code == 403
        assert token not in (await client.get(f"/v1/subscriptions/{theirs['id']}/feed")).text


async def test_an_idle_stream_writes_a_comment_and_a_stream_starts_after_its_cursor(
    redis: aioredis.Redis, redis_url: str, simulator_factory: Any, monkeypatch: Any
) -> None:

    from bridge.api import feed as feed_api
    from bridge.testing.settings import TOKEN

    monkeypatch.setattr(feed_api, "KEEPALIVE_SECONDS", 0.5)
    sim: SimulatorServer = simulator_factory(schools=1, learners=10, debtors=5, seed=8, churn=30.0)
    async with running_bridge(bridge_settings(redis_url, sim.base_url)) as services, api(services) as client:
        sid = (await client.post("/v1/subscriptions", json={"delivery": "pull"})).json()["id"]

        async def three() -> bool:
            return len((await _drain(client, sid, None))[0]) >= 3

        await wait_for(three, timeout=40, what="three events")
        await httpx.AsyncClient(base_url=sim.control_url).post("/churn", json={"rate": 0})
        events, end = await _drain(client, sid, None)
        first = (await client.get(f"/v1/subscriptions/{sid}/feed", params={"limit": 1})).json()["meta"]
        lines: list[str] = []
        headers = {"Authorization": f"Bearer {TOKEN}", "Last-Event-ID": first["next_cursor"]}
        async with (
            _served(services) as url,
            httpx.AsyncClient(base_url=url, headers=headers) as http,
            http.stream("GET", f"/v1/subscriptions/{sid}/stream") as answer,
        ):
            assert answer.headers["content-type"].startswith("text/event-stream")
            async for line in answer.aiter_lines():
                lines.append(line)
                if line.startswith(":") and sum(x.startswith("data:") for x in lines) >= len(events) - 1:
                    break
        ids = [line.removeprefix("id: ") for line in lines if line.startswith("id:")]
        data = [line.removeprefix("data: ") for line in lines if line.startswith("data:")]
        # After the first event; the stream goes on with what came since (the churn's last polls).
        streamed = [msgspec.json.decode(d)["id"] for d in data]
        assert streamed[: len(events) - 1] == [e["id"] for e in events[1:]]
        assert ids[len(events) - 2] == end  # each id is the cursor after that event
        assert any(line.startswith(": keep-alive") or line == ":keep-alive" for line in lines)


async def _started(server: Any) -> bool:
    return bool(server.started)


@contextlib.asynccontextmanager
async def _served(services: Any) -> AsyncIterator[str]:
    """The bridge's API on a port of its own (a stream read over it comes as it is written, where the
    in-process transport buffers it whole): its base URL."""
    import uvicorn

    from bridge.app import create_app
    from bridge.testing.servers import free_port

    port = free_port()
    config = uvicorn.Config(
        create_app(services.settings, services), port=port, log_config=None, lifespan="off"
    )
    server = uvicorn.Server(config)
    serving = asyncio.create_task(server.serve())
    try:
        await wait_for(lambda: _started(server), timeout=10, what="the server")
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await serving


async def test_an_idle_stream_reads_nothing_between_keep_alives_and_ends_when_its_subscription_goes(
    redis_url: str, simulator_factory: Any, monkeypatch: Any
) -> None:
    """An open stream with nothing to send writes its comment lines without asking Redis for anything
    (its feed is read when something is queued for it), and it ends at once when its subscription is
    deleted."""

    from bridge.api import feed as feed_api
    from bridge.testing.settings import TOKEN

    monkeypatch.setattr(feed_api, "KEEPALIVE_SECONDS", 0.1)
    sim: SimulatorServer = simulator_factory(schools=1, learners=5, debtors=2, seed=9, churn=0.0)
    async with running_bridge(bridge_settings(redis_url, sim.base_url)) as services, api(services) as client:
        # A school that sends nothing: the stream has nothing to send while the bridge polls the other.
        quiet = {"delivery": "pull", "school_ids": [999_999]}
        sid = (await client.post("/v1/subscriptions", json=quiet)).json()["id"]
        reads: list[float] = []
        page = services.feed._page

        async def counted(*args: Any) -> Any:
            reads.append(time.monotonic())
            return await page(*args)

        monkeypatch.setattr(services.feed, "_page", counted)
        comments: list[float] = []
        data: list[str] = []
        following: asyncio.Task[None] | None = None
        headers = {"Authorization": f"Bearer {TOKEN}"}
        try:
            async with _served(services) as url, httpx.AsyncClient(base_url=url, headers=headers) as http:

                async def follow() -> None:
                    async with http.stream("GET", f"/v1/subscriptions/{sid}/stream") as answer:
                        async for line in answer.aiter_lines():
                            if line.startswith(":"):
                                comments.append(time.monotonic())
                            elif line.startswith("data:"):
                                data.append(line)

                following = asyncio.create_task(follow())
                await wait_for(lambda: len(comments) >= 3, timeout=10, what="three keep-alive comments")
                idle_since = comments[0]
                await wait_for(lambda: len(comments) >= 10, timeout=10, what="ten keep-alive comments")
                assert data == []  # a keep-alive is a comment alone: an EventSource fires no empty event
                assert [at for at in reads if at > idle_since] == []  # no read while idle
                deleted = await client.delete(f"/v1/subscriptions/{sid}")
                assert deleted.status_code == 204, deleted.text
                await asyncio.wait_for(following, timeout=5)  # the stream ended
        finally:
            if following is not None and not following.done():
                following.cancel()
                await asyncio.gather(following, return_exceptions=True)


async def test_a_revoked_token_reads_nothing_more_on_a_stream_or_a_long_poll_it_opened(
    redis_url: str, simulator_factory: Any
) -> None:
    """A subscription token revoked while its stream is open ends the stream at once, and a long-poll
    waiting with it answers an empty page; its next request is a 401 (docs/api.md#subscription-tokens)."""

    sim: SimulatorServer = simulator_factory(schools=1, learners=5, debtors=2, seed=9, churn=0.0)
    async with running_bridge(bridge_settings(redis_url, sim.base_url)) as services, api(services) as admin:
        sid = (
            await admin.post("/v1/subscriptions", json={"delivery": "pull", "school_ids": [999_999]})
        ).json()["id"]
        made = (await admin.post(f"/v1/subscriptions/{sid}/tokens")).json()
        following: asyncio.Task[None] | None = None
        headers = {"Authorization": f"Bearer {made['token']}"}
        try:
            async with (
                _served(services) as url,
                httpx.AsyncClient(base_url=url, headers=headers, timeout=30) as http,
            ):
                opened = asyncio.Event()

                async def follow() -> None:
                    async with http.stream("GET", f"/v1/subscriptions/{sid}/stream") as answer:
                        assert answer.status_code == 200
                        opened.set()
                        async for _line in answer.aiter_lines():
                            pass

                following = asyncio.create_task(follow())
                await asyncio.wait_for(opened.wait(), timeout=10)
                polling = asyncio.create_task(http.get(f"/v1/subscriptions/{sid}/feed", params={"wait": 20}))
                await asyncio.sleep(0.5)
                began = time.monotonic()
                revoked = await admin.delete(f"/v1/subscriptions/{sid}/tokens/{made['token_id']}")
                assert revoked.status_code == 204, revoked.text
                await asyncio.wait_for(following, timeout=5)  # the stream ended
                answer = await asyncio.wait_for(polling, timeout=5)
                assert time.monotonic() - began < 5
                assert answer.status_code == 200 and answer.json()["data"] == []
                assert (await http.get(f"/v1/subscriptions/{sid}/feed")).status_code == 401
        finally:
            if following is not None and not following.done():
                following.cancel()
                await asyncio.gather(following, return_exceptions=True)
