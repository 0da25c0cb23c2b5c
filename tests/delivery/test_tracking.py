"""An event's delivery state per subscription (`GET /v1/events/{id}`), against real Redis and receivers."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable

import msgspec

from bridge.api.deliveries import event_deliveries
from bridge.delivery.models import Attempt
from bridge.delivery.service import EventDeliveryState
from bridge.testing.events import MemoryEventSource, make_event, make_events
from bridge.testing.receivers import Answer, Receiver
from bridge.testing.settings import fast_settings
from bridge.testing.waiting import wait_for
from tests.delivery.parts import DeliveryParts

Factory = Callable[..., DeliveryParts]
Receivers = Callable[..., tuple[Receiver, str]]


async def states_by_subscription(dispatcher: DeliveryParts, event_id: str) -> dict[str, EventDeliveryState]:
    return {s.subscription_id: s for s in await dispatcher.service.states(event_id)}


def settles(dispatcher: DeliveryParts, event_id: str, wanted: dict[str, str]) -> Callable[[], object]:
    async def check() -> bool:
        states = await states_by_subscription(dispatcher, event_id)
        return {sid: s.state for sid, s in states.items()} == wanted

    return check


async def test_pending_then_delivered_or_dead_and_unmatched_left_out(
    dispatcher_factory: Factory, receiver_factory: Receivers
) -> None:
    _, ok_url = receiver_factory()
    _, failing_url = receiver_factory(lambda _r, _n: Answer(status=500, body=b"broken"))
    dispatcher = dispatcher_factory()
    ok = await dispatcher.store.create(url=ok_url)
    failing = await dispatcher.store.create(url=failing_url)
    await dispatcher.store.create(url=ok_url, school_ids=[2])  # never sees school 1
    event = make_event(1, 1)
    before = time.time()
    await dispatcher.fan_out([event])

    states = await states_by_subscription(dispatcher, event.event_id)
    assert set(states) == {ok.id, failing.id}
    for state in states.values():
        assert state.state == "pending" and state.attempts == 0 and state.subscription_enabled
        assert state.last_status is None and state.last_attempt_at is None
        assert state.next_attempt_at is not None and before <= state.next_attempt_at <= time.time()

    await dispatcher.start()
    await wait_for(
        settles(dispatcher, event.event_id, {ok.id: "delivered", failing.id: "dead"}), what="final states"
    )
    states = await states_by_subscription(dispatcher, event.event_id)
    delivered, dead = states[ok.id], states[failing.id]
    assert delivered.attempts == 1 and delivered.last_status == 200 and delivered.next_attempt_at is None
    assert delivered.last_attempt_at is not None and before <= delivered.last_attempt_at <= time.time()
    assert dead.attempts == 3 and dead.last_status == 500 and dead.next_attempt_at is None
    assert await dispatcher.service.states("evt_unknown") == []


async def test_retrying_shows_the_next_attempt_and_the_error(
    dispatcher_factory: Factory, receiver_factory: Receivers
) -> None:
    _, url = receiver_factory(lambda _r, _n: Answer(status=503, body=b"busy"))
    dispatcher = dispatcher_factory(fast_settings(retry_schedule=(30.0,)))
    subscription = await dispatcher.store.create(url=url)
    event = make_event(1, 1)
    await dispatcher.fan_out([event])
    await dispatcher.start()
    await wait_for(settles(dispatcher, event.event_id, {subscription.id: "retrying"}), what="a retry")
    (state,) = await dispatcher.service.states(event.event_id)
    assert state.attempts == 1 and state.last_status == 503 and state.last_error is None
    assert state.last_attempt_at is not None and state.next_attempt_at is not None
    assert 30 * 0.8 - 0.1 <= state.next_attempt_at - state.last_attempt_at <= 30 * 1.2 + 0.1


async def test_delivering_now_and_waiting_behind_the_lane(
    dispatcher_factory: Factory, receiver_factory: Receivers
) -> None:
    receiver, url = receiver_factory(lambda _r, _n: Answer(delay=1.0))
    dispatcher = dispatcher_factory()
    subscription = await dispatcher.store.create(url=url)
    first, second = make_events(5, 2)
    await dispatcher.fan_out([first, second])
    await dispatcher.start()
    await wait_for(lambda: len(receiver.received) == 1, what="the first request")
    (head,) = await dispatcher.service.states(first.event_id)
    (behind,) = await dispatcher.service.states(second.event_id)
    assert head.state == "delivering" and head.next_attempt_at is None
    assert behind.state == "pending" and behind.next_attempt_at is None  # waits for the first
    await wait_for(settles(dispatcher, second.event_id, {subscription.id: "delivered"}), what="both sent")


async def test_a_redelivery_replaces_the_delivered_state(
    dispatcher_factory: Factory, receiver_factory: Receivers
) -> None:
    receiver, url = receiver_factory()
    event = make_event(1, 1)
    dispatcher = dispatcher_factory(events=MemoryEventSource([event]))
    subscription = await dispatcher.store.create(url=url)
    await dispatcher.fan_out([event])
    await dispatcher.start()
    await wait_for(settles(dispatcher, event.event_id, {subscription.id: "delivered"}), what="delivery")
    (first,) = await dispatcher.service.states(event.event_id)
    await dispatcher.stop()

    await dispatcher.service.redeliver(event.event_id, None)
    (again,) = await dispatcher.service.states(event.event_id)
    assert again.state == "pending" and again.attempts == 0
    assert again.delivery_id != first.delivery_id

    await dispatcher.start()
    await wait_for(settles(dispatcher, event.event_id, {subscription.id: "delivered"}), what="redelivery")
    (last,) = await dispatcher.service.states(event.event_id)
    assert last.delivery_id == again.delivery_id and last.attempts == 1
    assert receiver.ids() == [event.event_id, event.event_id]


async def test_a_late_success_of_a_replaced_delivery_does_not_hide_the_new_one(
    dispatcher_factory: Factory, receiver_factory: Receivers
) -> None:
    _, url = receiver_factory()
    dispatcher = dispatcher_factory()  # not started: the test plays the worker
    subscription = await dispatcher.store.create(url=url)
    event = make_event(1, 1)
    await dispatcher.fan_out([event])
    now = time.time()
    (old,) = await dispatcher.queue.claim(
        subscription.id, now=now, lease_until=now + 30, token="worker", limit=10
    )
    await dispatcher.enqueue(subscription, [event])  # a redelivery while the first is in flight
    (queued,) = await dispatcher.service.states(event.event_id)
    assert queued.delivery_id != old.id and queued.state == "pending"

    attempt = Attempt(
        at=now,
        delivery_id=old.id,
        event_id=event.event_id,
        event_type=event.event_type,
        school_id=event.school_id,
        attempt=1,
        outcome="ok",
        status_code=200,
        duration_ms=1.0,
    )
    held, _ = await dispatcher.queue.complete(
        subscription,
        old,
        token="worker",
        outcome="ok",
        now=now,
        next_at=now,
        attempt=attempt,
        log_cutoff=0.0,
    )
    assert held
    (state,) = await dispatcher.service.states(event.event_id)
    assert state.delivery_id == queued.delivery_id and state.state == "pending"


async def test_a_retried_dead_letter_is_pending_again_then_delivered(
    dispatcher_factory: Factory, receiver_factory: Receivers
) -> None:
    _, url = receiver_factory(lambda _r, n: Answer(status=500) if n <= 3 else Answer())
    dispatcher = dispatcher_factory()
    subscription = await dispatcher.store.create(url=url)
    event = make_event(1, 1)
    await dispatcher.fan_out([event])
    await dispatcher.start()
    await wait_for(settles(dispatcher, event.event_id, {subscription.id: "dead"}), what="a dead letter")
    await dispatcher.stop()
    (dead,) = await dispatcher.service.states(event.event_id)

    assert await dispatcher.service.retry_dead_letters(ids=None, subscription_id=None) == [dead.delivery_id]
    (retried,) = await dispatcher.service.states(event.event_id)
    assert retried.state == "pending" and retried.attempts == 0 and retried.delivery_id == dead.delivery_id

    await dispatcher.start()
    await wait_for(settles(dispatcher, event.event_id, {subscription.id: "delivered"}), what="delivery")


async def test_410_shows_the_subscription_disabled_with_nothing_scheduled(
    dispatcher_factory: Factory, receiver_factory: Receivers
) -> None:
    _, url = receiver_factory(lambda _r, _n: Answer(status=410))
    dispatcher = dispatcher_factory()
    subscription = await dispatcher.store.create(url=url)
    event = make_event(1, 1)
    await dispatcher.fan_out([event])
    await dispatcher.start()

    async def gone() -> bool:
        states = await dispatcher.service.states(event.event_id)
        return bool(states) and not states[0].subscription_enabled and states[0].attempts == 1

    await wait_for(gone, what="the subscription disabled")
    (state,) = await dispatcher.service.states(event.event_id)
    assert state.subscription_id == subscription.id
    assert state.state == "retrying" and state.last_status == 410 and state.next_attempt_at is None


async def test_retention_forgets_traces_in_batches(
    dispatcher_factory: Factory, receiver_factory: Receivers
) -> None:
    _, url = receiver_factory()
    dispatcher = dispatcher_factory()
    subscription = await dispatcher.store.create(url=url)
    old = [make_event(1, n, at=time.time() - 100) for n in range(1, 6)]
    recent = make_event(1, 6)
    await dispatcher.fan_out([*old, recent])
    await dispatcher.start()
    await wait_for(settles(dispatcher, recent.event_id, {subscription.id: "delivered"}), what="delivery")

    assert await dispatcher.queue.trim(subscription.id, cutoff=time.time() - 50, batch=2) == 5
    for event in old:
        assert await dispatcher.service.states(event.event_id) == []
    assert [s.state for s in await dispatcher.service.states(recent.event_id)] == ["delivered"]
    assert await dispatcher.redis.hlen(dispatcher.keys.traces(subscription.id)) == 1
    assert await dispatcher.redis.zcard(dispatcher.keys.fanned(subscription.id)) == 1


async def test_the_api_view_has_rfc3339_times(
    dispatcher_factory: Factory, receiver_factory: Receivers
) -> None:
    _, url = receiver_factory()
    dispatcher = dispatcher_factory()
    subscription = await dispatcher.store.create(url=url)
    event = make_event(1, 1)
    await dispatcher.fan_out([event])
    (pending,) = await event_deliveries(dispatcher.service, event.event_id)
    assert pending.state == "pending" and pending.last_attempt_at is None
    assert pending.next_attempt_at is not None and pending.next_attempt_at.endswith("Z")
    await dispatcher.start()
    await wait_for(settles(dispatcher, event.event_id, {subscription.id: "delivered"}), what="delivery")
    (view,) = await event_deliveries(dispatcher.service, event.event_id)
    body = msgspec.json.decode(msgspec.json.encode(view))
    assert body["subscription_id"] == subscription.id and body["state"] == "delivered"
    assert body["last_status"] == 200 and body["next_attempt_at"] is None
    assert dt.datetime.fromisoformat(body["last_attempt_at"]).tzinfo is not None
