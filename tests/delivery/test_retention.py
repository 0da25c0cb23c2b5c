"""Event retention (`BRIDGE_EVENT_RETENTION_DAYS`) reaches every place a body is kept: a delivery still
waiting (a disabled subscription's), dead letters, attempt logs with the subscribers' answers, and an
erased event's stand-in in the event log."""

from __future__ import annotations

import time
from collections.abc import Callable

import msgspec
import redis.asyncio as aioredis

from bridge.delivery.models import Attempt, encode_attempt
from bridge.events.envelope import Event, new_event
from bridge.events.ids import event_id_at
from bridge.events.log import EventLog, erased_body
from bridge.events.outbox import Outbox
from bridge.store.keys import Keys
from bridge.store.scripts import Scripts
from bridge.sync.diff import PreviousSnapshot, diff
from bridge.sync.snapshot import SnapshotStore
from bridge.testing.events import make_event
from bridge.testing.receivers import Receiver
from tests.delivery.parts import DeliveryParts

Factory = Callable[..., DeliveryParts]
Receivers = Callable[..., tuple[Receiver, str]]
DAY = 86400.0


async def commit_events(redis: aioredis.Redis, school_id: int, specs: list[tuple[str, float]]) -> list[Event]:
    """Events of learner 0 of the given (type, detection time), committed with an empty diff."""
    store = SnapshotStore(redis, Keys("d6b"), Scripts(redis))
    result = diff(PreviousSnapshot(hashes={}), [], "learner_id", {})
    events = [
        msgspec.structs.replace(
            new_event(
                etype, school_id=school_id, resource="learner", resource_id=str(n), data={"n": n}, now=at
            ),
            id=event_id_at(at),
        )
        for n, (etype, at) in ((0 if i < 2 else i, spec) for i, spec in enumerate(specs))
    ]
    return (await store.commit(school_id, "learner", result, events, token=None)).events


async def test_old_waiting_deliveries_dead_letters_and_answers_go(
    dispatcher_factory: Factory, receiver_factory: Receivers, redis: aioredis.Redis
) -> None:
    _, url = receiver_factory()
    dispatcher = dispatcher_factory()
    subscription = await dispatcher.store.create(url=url)
    await dispatcher.store.update(subscription.id, {"enabled": False})
    now = time.time()
    old, young = make_event(1, 1, at=now - 40 * DAY), make_event(1, 2, at=now - DAY)
    await dispatcher.fan_out([old, young])
    keys = dispatcher.keys
    answer = Attempt(
        at=now - 35 * DAY,
        delivery_id="d",
        event_id=old.event_id,
        event_type=old.event_type,
        school_id=1,
        attempt=1,
        outcome="retry",
        duration_ms=1.0,
        response_body="echo of what it got",
    )
    await redis.zadd(keys.attempts(subscription.id), {encode_attempt(answer): answer.at})
    assert await dispatcher.store.counts(subscription.id) == (2, 0)

    await dispatcher.queue.trim(subscription.id, cutoff=now - 30 * DAY)

    assert await dispatcher.store.counts(subscription.id) == (1, 0)
    stored = [
        await redis.hget(keys.deliveries(subscription.id), k)
        for k in await redis.hkeys(keys.deliveries(subscription.id))
    ]
    assert all(old.body not in (raw or b"") for raw in stored)
    attempts = await dispatcher.attempts(subscription.id, before=None, limit=50)
    assert [a.outcome for a in attempts] == ["expired"]  # the old answer went; the drop is recorded
    assert "echo" not in str(attempts)
    assert await redis.zscore(keys.fanned(subscription.id), old.event_id) is None
    assert await redis.zscore(keys.fanned(subscription.id), young.event_id) is not None


async def test_an_erased_events_stand_in_goes_with_the_stream(redis: aioredis.Redis) -> None:
    keys = Keys("d6b")
    now = time.time()
    committed = await commit_events(
        redis,
        7,
        [("learner.created", now - 40 * DAY), ("learner.updated", now - 39 * DAY), ("learner.created", now)],
    )
    await Outbox(redis, keys, Scripts(redis)).publish(7)
    log = EventLog(redis, keys)
    seq, live, _ = await log.events_of_record(7, "learner", "0")
    assert [event_id for _s, event_id, _b in live] == [committed[0].id, committed[1].id]
    done = await SnapshotStore(redis, keys, Scripts(redis)).erase(
        7, "learner", "0", seq=seq, events=[(s, i, erased_body(b)) for s, i, b in live]
    )
    assert done is not None and done.events == 2
    [erased] = await log._bodies([committed[0].id])
    assert erased.data == {"erased": True} and erased.sequence == committed[0].sequence
    assert await redis.hlen(keys.school_erased(7)) == 2

    await log.trim(30, now=now)
    assert await redis.hlen(keys.school_erased(7)) == 0
    assert await log.get(committed[0].id) is None
    assert (await log.get(committed[2].id)) is not None


async def test_a_resync_s_waiting_deliveries_go_with_retention(
    dispatcher_factory: Factory, redis: aioredis.Redis
) -> None:
    """A resync's snapshot and marker deliveries are in no event log and keep no trace while queued: the
    hourly pass finds them among the subscription's deliveries, in a disabled webhook subscription and in
    a pull feed nobody reads alike, and nothing of the record's values stays."""
    from bridge.delivery.resync import Resyncs
    from tests.delivery.test_erasure_race import MARKER, SCHOOL, _commit

    parts = dispatcher_factory()
    store, keys, queue = parts.store, parts.keys, parts.queue
    snapshots = SnapshotStore(redis, keys, store.scripts)
    await _commit(snapshots, 5, id_number=MARKER)
    await Outbox(redis, keys, store.scripts).publish(SCHOOL)
    disabled = await store.create(url="http://127.0.0.1:9/hook", ordered=True)
    await store.update(disabled.id, {"enabled": False})
    pulled = await store.create(url=None, delivery="pull")
    resyncs = Resyncs(redis, keys, snapshots, queue, store, parts.settings, on_queued=lambda: None)
    for sid in (disabled.id, pulled.id):
        await resyncs.start(await store.get(sid), [SCHOOL], ["learner"])
    for _ in range(5):
        await resyncs.step()
    for sid in (disabled.id, pulled.id):
        queued = await redis.hvals(keys.deliveries(sid))
        assert any(MARKER.encode() in r for r in queued), "the resync queued nothing to expire"
        await queue.trim(sid, cutoff=time.time() + 10)
        assert await queue.expire_unlogged(sid, cutoff=time.time() - DAY) == 0  # none that old
        assert await queue.expire_unlogged(sid, cutoff=time.time() + 10) == len(queued)
        assert await redis.hlen(keys.deliveries(sid)) == 0
        assert (await store.counts(sid))[0] == 0  # nothing waiting holds a later resync back
