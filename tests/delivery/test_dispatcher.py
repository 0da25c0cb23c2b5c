"""The dispatcher against a real Redis and real receivers on loopback."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Callable
from typing import Any

from standardwebhooks.webhooks import Webhook

from bridge import __version__
from bridge.delivery.models import Delivery, ErasureEntry
from bridge.delivery.store import SubscriptionStore
from bridge.testing.events import make_event, make_events
from bridge.testing.receivers import Answer, Received, Receiver
from bridge.testing.settings import fast_settings
from bridge.testing.waiting import wait_for
from tests.delivery.parts import DeliveryParts

Factory = Callable[..., DeliveryParts]
Receivers = Callable[..., tuple[Receiver, str]]


def gaps(times: list[float]) -> list[float]:
    return [b - a for a, b in itertools.pairwise(times)]


async def test_delivers_signed_envelopes_in_order(
    dispatcher_factory: Factory, receiver_factory: Receivers
) -> None:
    receiver, url = receiver_factory()
    dispatcher = dispatcher_factory()
    subscription = await dispatcher.store.create(url=url)
    events = make_events(1000, 5)
    assert await dispatcher.fan_out(events) == 5
    await dispatcher.start()
    await wait_for(lambda: len(receiver.received) == 5, what="5 deliveries")
    assert receiver.ids() == [e.event_id for e in events]
    for request, event in zip(receiver.received, events, strict=True):
        assert request.body == event.body
        assert request.headers["content-type"] == "application/json"
        assert request.headers["user-agent"] == f"d6-bridge/{__version__}"
        assert request.json["id"] == request.headers["webhook-id"]
        Webhook(subscription.secret).verify(request.body, request.headers)

    async def settled() -> bool:
        # The receiver answers before the dispatcher records the outcome.
        return await dispatcher.store.counts(subscription.id) == (0, 0)

    await wait_for(settled, what="every outcome recorded")
    log = await dispatcher.queue.attempts(subscription.id, before=None, limit=10)
    assert [a.outcome for a in log] == ["ok"] * 5


async def test_fan_out_twice_queues_once(dispatcher_factory: Factory, receiver_factory: Receivers) -> None:
    receiver, url = receiver_factory()
    dispatcher = dispatcher_factory()
    await dispatcher.store.create(url=url)
    events = make_events(7, 4)
    assert await dispatcher.fan_out(events) == 4
    assert await dispatcher.fan_out(events) == 0  # the outbox repeating itself after a crash
    assert await dispatcher.fan_out(events[:2] + make_events(7, 1, start=5)) == 1
    await dispatcher.start()
    await wait_for(lambda: len(receiver.received) == 5)
    await asyncio.sleep(0.2)
    assert len(receiver.received) == 5


async def test_filters_by_type_wildcard_and_school(
    dispatcher_factory: Factory, receiver_factory: Receivers
) -> None:
    debtors, debtors_url = receiver_factory()
    school2, school2_url = receiver_factory()
    created, created_url = receiver_factory()
    dispatcher = dispatcher_factory()
    await dispatcher.store.create(url=debtors_url, event_types=["debtor.*"])
    await dispatcher.store.create(url=school2_url, school_ids=[2])
    await dispatcher.store.create(url=created_url, event_types=["learner.created"], school_ids=[1])
    events = [
        make_event(1, 1, "debtor.updated"),
        make_event(1, 2, "learner.created"),
        make_event(2, 1, "learner.created"),
        make_event(2, 2, "debtor.removed"),
        make_event(3, 1, "integration.activated"),
    ]
    await dispatcher.fan_out(events)
    await dispatcher.start()
    ids = [e.event_id for e in events]
    await wait_for(
        lambda: len(debtors.received) == 2 and len(school2.received) == 2 and len(created.received) == 1
    )
    await asyncio.sleep(0.2)
    assert sorted(debtors.ids()) == sorted([ids[0], ids[3]])
    assert sorted(school2.ids()) == sorted([ids[2], ids[3]])
    assert created.ids() == [ids[1]]


async def test_school_order_holds_under_retries(
    dispatcher_factory: Factory, receiver_factory: Receivers
) -> None:
    seen: set[str] = set()

    def fail_first(request: Received, _n: int) -> Answer:
        if request.event_id not in seen:
            seen.add(request.event_id)
            return Answer(status=500)
        return Answer()

    receiver, url = receiver_factory(fail_first)
    dispatcher = dispatcher_factory()
    await dispatcher.store.create(url=url)
    await dispatcher.fan_out(make_events(1, 5) + make_events(2, 5))
    await dispatcher.start()
    await wait_for(lambda: len(receiver.received) == 20, what="20 attempts")
    for school in (1, 2):
        arrivals = [b["sequence"] for b in receiver.bodies() if b["school_id"] == school]
        assert arrivals == [1, 1, 2, 2, 3, 3, 4, 4, 5, 5]


async def test_unordered_subscription_sends_in_parallel(
    dispatcher_factory: Factory, receiver_factory: Receivers
) -> None:
    receiver, url = receiver_factory(lambda _r, _n: Answer(delay=0.3))
    dispatcher = dispatcher_factory()
    await dispatcher.store.create(url=url, ordered=False)
    await dispatcher.fan_out(make_events(1, 10))
    started = time.monotonic()
    await dispatcher.start()
    await wait_for(lambda: len(receiver.received) == 10)
    assert time.monotonic() - started < 1.5  # one at a time would take 3 s


async def test_retries_on_schedule_then_dead_letter_then_retry(
    dispatcher_factory: Factory, receiver_factory: Receivers
) -> None:
    healthy = False
    receiver, url = receiver_factory(lambda _r, _n: Answer() if healthy else Answer(status=500, body=b"boom"))
    dispatcher = dispatcher_factory(fast_settings(retry_schedule=(0.2, 0.4)))
    subscription = await dispatcher.store.create(url=url)
    first, second = make_events(1, 2)
    await dispatcher.fan_out([first])
    await dispatcher.start()
    await wait_for(lambda: len(receiver.received) == 3, what="3 attempts")
    await wait_for(lambda: _dead_count(dispatcher, subscription.id), what="a dead letter")
    intervals = gaps([r.at for r in receiver.received])
    assert 0.2 * 0.8 - 0.02 <= intervals[0] <= 0.2 * 1.2 + 0.4
    assert 0.4 * 0.8 - 0.02 <= intervals[1] <= 0.4 * 1.2 + 0.4
    log = await dispatcher.queue.attempts(subscription.id, before=None, limit=10)
    assert [(a.attempt, a.outcome, a.status_code) for a in log] == [
        (3, "dead", 500),
        (2, "retry", 500),
        (1, "retry", 500),
    ]
    assert log[0].response_body == "boom"
    rows = await dispatcher.service.dead_letters(subscription_id=None, before=None, limit=10)
    assert [d.event_id for _, d in rows] == [first.event_id]
    # The lane moved on after the dead letter.
    healthy = True
    await dispatcher.fan_out([second])
    await wait_for(lambda: receiver.ids()[-1:] == [second.event_id])
    requeued = await dispatcher.service.retry_dead_letters(ids=[rows[0][1].id], subscription_id=None)
    assert requeued == [rows[0][1].id]
    await wait_for(lambda: receiver.ids()[-1:] == [first.event_id], what="the retried dead letter")
    assert await dispatcher.service.dead_letters(subscription_id=None, before=None, limit=10) == []


async def _dead_count(dispatcher: DeliveryParts, subscription_id: str) -> bool:
    return (await dispatcher.store.counts(subscription_id))[1] == 1


async def test_retry_after_is_honoured_and_capped(
    dispatcher_factory: Factory, receiver_factory: Receivers
) -> None:
    def script(_r: Received, n: int) -> Answer:
        if n == 1:
            return Answer(status=429, headers={"retry-after": "0"})
        if n == 2:
            return Answer(status=503, headers={"retry-after": "3600"})
        return Answer()

    receiver, url = receiver_factory(script)
    dispatcher = dispatcher_factory(fast_settings(retry_schedule=(1.0, 0.3)))
    await dispatcher.store.create(url=url)
    await dispatcher.fan_out(make_events(1, 1))
    await dispatcher.start()
    await wait_for(lambda: len(receiver.received) == 3)
    first, second = gaps([r.at for r in receiver.received])
    assert first < 0.5  # Retry-After: 0 beats the scheduled 1 s
    assert 0.55 <= second <= 1.5  # 3600 s capped at 2 x 0.3 s


async def test_410_disables_and_reenabling_resumes(
    dispatcher_factory: Factory, receiver_factory: Receivers
) -> None:
    gone = True
    receiver, url = receiver_factory(lambda _r, _n: Answer(status=410) if gone else Answer())
    dispatcher = dispatcher_factory()
    subscription = await dispatcher.store.create(url=url)
    events = make_events(1, 3)
    await dispatcher.fan_out(events)
    await dispatcher.start()
    await wait_for(lambda: len(receiver.received) == 1)
    await wait_for(lambda: _disabled(dispatcher.store, subscription.id), what="disabled by 410")
    found = await dispatcher.store.get(subscription.id)
    assert found.disabled_reason and "410" in found.disabled_reason
    await asyncio.sleep(0.3)
    assert len(receiver.received) == 1
    assert await dispatcher.store.counts(subscription.id) == (3, 0)
    gone = False
    await dispatcher.store.update(subscription.id, {"enabled": True})
    await wait_for(lambda: len(receiver.received) == 4)
    assert receiver.ids()[1:] == [e.event_id for e in events]


async def _disabled(store: SubscriptionStore, subscription_id: str) -> bool:
    return not (await store.get(subscription_id)).enabled


async def test_disabled_subscription_keeps_events_and_resumes(
    dispatcher_factory: Factory, receiver_factory: Receivers
) -> None:
    receiver, url = receiver_factory()
    dispatcher = dispatcher_factory()
    subscription = await dispatcher.store.create(url=url)
    await dispatcher.store.update(subscription.id, {"enabled": False})
    await dispatcher.start()
    events = make_events(5, 3)
    await dispatcher.fan_out(events)
    await asyncio.sleep(0.4)
    assert receiver.received == []
    await dispatcher.store.update(subscription.id, {"enabled": True})
    await wait_for(lambda: len(receiver.received) == 3)
    assert receiver.ids() == [e.event_id for e in events]


async def test_redirect_is_a_failure_and_not_followed(
    dispatcher_factory: Factory, receiver_factory: Receivers
) -> None:
    receiver, url = receiver_factory(lambda _r, _n: Answer(status=302, headers={"location": "/elsewhere"}))
    dispatcher = dispatcher_factory()
    subscription = await dispatcher.store.create(url=url)
    await dispatcher.fan_out(make_events(1, 1))
    await dispatcher.start()
    await wait_for(lambda: _dead_count(dispatcher, subscription.id))
    assert len(receiver.received) == 3  # first try + 2 retries, all to /hook
    log = await dispatcher.queue.attempts(subscription.id, before=None, limit=10)
    assert {a.status_code for a in log} == {302}


async def test_timeout_is_retried(dispatcher_factory: Factory, receiver_factory: Receivers) -> None:
    receiver, url = receiver_factory(lambda _r, n: Answer(delay=1.5) if n == 1 else Answer())
    dispatcher = dispatcher_factory(fast_settings(delivery_timeout_seconds=0.3))
    subscription = await dispatcher.store.create(url=url)
    await dispatcher.fan_out(make_events(1, 1))
    await dispatcher.start()
    await wait_for(lambda: len(receiver.received) == 2)
    await wait_for(lambda: _log_size(dispatcher, subscription.id, 2))
    log = await dispatcher.queue.attempts(subscription.id, before=None, limit=10)
    assert log[0].outcome == "ok"
    assert log[1].error is not None and "timed out" in log[1].error
    assert log[1].duration_ms < 1000


async def _log_size(dispatcher: DeliveryParts, subscription_id: str, size: int) -> bool:
    return len(await dispatcher.queue.attempts(subscription_id, before=None, limit=100)) >= size


async def test_rotated_secret_both_verify(dispatcher_factory: Factory, receiver_factory: Receivers) -> None:
    receiver, url = receiver_factory()
    dispatcher = dispatcher_factory()
    old = await dispatcher.store.create(url=url)
    new = await dispatcher.store.rotate_secret(old.id)
    assert new.secret != old.secret
    await dispatcher.fan_out(make_events(1, 1))
    await dispatcher.start()
    await wait_for(lambda: len(receiver.received) == 1)
    request = receiver.received[0]
    assert len(request.headers["webhook-signature"].split(" ")) == 2
    Webhook(old.secret).verify(request.body, request.headers)
    Webhook(new.secret).verify(request.body, request.headers)


async def test_continuous_failure_disables(dispatcher_factory: Factory, receiver_factory: Receivers) -> None:
    receiver, url = receiver_factory(lambda _r, _n: Answer(status=500))
    settings = fast_settings(retry_schedule=(0.1,) * 20, disable_after_hours=0.5 / 3600)
    dispatcher = dispatcher_factory(settings)
    subscription = await dispatcher.store.create(url=url)
    await dispatcher.fan_out(make_events(1, 2))
    await dispatcher.start()
    await wait_for(
        lambda: _disabled(dispatcher.store, subscription.id), what="disabled after 0.5 s of failure"
    )
    found = await dispatcher.store.get(subscription.id)
    assert found.disabled_reason and "continuously" in found.disabled_reason
    count = len(receiver.received)
    assert 4 <= count <= 10
    await asyncio.sleep(0.3)
    assert len(receiver.received) == count
    assert (await dispatcher.store.counts(subscription.id))[0] == 2  # kept for later


async def test_private_address_refused_at_delivery_time(
    dispatcher_factory: Factory, receiver_factory: Receivers, store: SubscriptionStore
) -> None:
    receiver, url = receiver_factory()
    subscription = await store.create(url=url)  # created while private URLs were allowed
    dispatcher = dispatcher_factory(fast_settings(allow_private_urls=False))
    await dispatcher.fan_out(make_events(1, 1))
    await dispatcher.start()
    await wait_for(lambda: _log_size(dispatcher, subscription.id, 1))
    log = await dispatcher.queue.attempts(subscription.id, before=None, limit=10)
    assert log[-1].error is not None and "refused" in log[-1].error and "loopback" in log[-1].error
    assert receiver.received == []


async def test_restarts_after_stop(dispatcher_factory: Factory, receiver_factory: Receivers) -> None:
    receiver, url = receiver_factory()
    dispatcher = dispatcher_factory()  # its own HTTP clients, closed by every stop
    await dispatcher.store.create(url=url)
    await dispatcher.stop()  # stopping before any start is harmless, and start still works after it
    first, second, third = make_events(1, 3)

    await dispatcher.start()
    assert dispatcher.running
    await dispatcher.fan_out([first])
    await wait_for(lambda: len(receiver.received) == 1, what="the first delivery")
    await dispatcher.stop()
    assert not dispatcher.running

    await dispatcher.fan_out([second])  # queued while stopped: nothing is sent
    await asyncio.sleep(0.2)
    assert len(receiver.received) == 1

    await dispatcher.start()
    assert dispatcher.running
    await wait_for(lambda: len(receiver.received) == 2, what="the delivery queued while stopped")
    await dispatcher.fan_out([third])
    await wait_for(lambda: len(receiver.received) == 3, what="a delivery after the restart")
    assert receiver.ids() == [first.event_id, second.event_id, third.event_id]


def counted_claims(dispatcher: DeliveryParts) -> list[int]:
    """The worker's rounds of claims from now on: one entry (the number claimed) per claim script call."""
    calls: list[int] = []
    claim = dispatcher.queue.claim

    async def counting(subscription_id: str, **options: Any) -> list[Delivery]:
        claimed = await claim(subscription_id, **options)
        calls.append(len(claimed))
        return claimed

    dispatcher.queue.claim = counting  # type: ignore[method-assign]
    return calls


async def test_a_school_s_events_follow_each_other_without_rounds_of_claims(
    dispatcher_factory: Factory, receiver_factory: Receivers
) -> None:
    """The poll far off: a lane of 20 events still goes out at once, in order. The write that records
    each one claims the lane's next head; the worker's loop makes no round of claims between them."""
    receiver, url = receiver_factory()
    dispatcher = dispatcher_factory(poll_interval=30.0)
    await dispatcher.store.create(url=url)
    events = make_events(1000, 20)
    await dispatcher.fan_out(events)
    rounds = counted_claims(dispatcher)
    await dispatcher.start()
    await wait_for(lambda: len(receiver.received) == 20, timeout=10.0, what="20 deliveries")
    assert receiver.ids() == [e.event_id for e in events]
    assert len(rounds) <= 2, rounds


async def test_an_unordered_subscription_s_writes_claim_its_next_deliveries(
    dispatcher_factory: Factory, receiver_factory: Receivers
) -> None:
    """The poll far off, 4 slots: 60 events of an unordered subscription still go out at once. The write
    that records finished attempts claims as many due deliveries as it finished; the worker's loop makes
    a few rounds of claims, not one for every write."""
    receiver, url = receiver_factory()
    dispatcher = dispatcher_factory(fast_settings(delivery_concurrency=4), poll_interval=30.0)
    await dispatcher.store.create(url=url, ordered=False)
    events = make_events(1000, 60)
    await dispatcher.fan_out(events)
    rounds = counted_claims(dispatcher)
    await dispatcher.start()
    await wait_for(lambda: len(receiver.received) == 60, timeout=10.0, what="60 deliveries")
    assert sorted(receiver.ids()) == sorted(e.event_id for e in events)
    assert len(rounds) <= 10, rounds  # 3 to 7; one a write (16 to 21) without the writes' claims


async def test_a_busy_subscription_s_writes_leave_room_for_another_s_deliveries(
    dispatcher_factory: Factory, receiver_factory: Receivers
) -> None:
    """Two unordered subscriptions, 2 slots, a slow receiver: the writes of the one with a backlog claim
    within its even share of the claims, so events queued for the other meanwhile go out long before
    that backlog is done, not after it."""
    busy, busy_url = receiver_factory(lambda _r, _n: Answer(delay=0.02))
    other, other_url = receiver_factory()
    dispatcher = dispatcher_factory(fast_settings(delivery_concurrency=2), poll_interval=30.0)
    await dispatcher.store.create(url=busy_url, ordered=False, school_ids=[1])
    await dispatcher.store.create(url=other_url, ordered=False, school_ids=[2])
    await dispatcher.fan_out(make_events(1, 100))
    await dispatcher.start()
    await wait_for(lambda: len(busy.received) >= 5, what="the backlog under way")
    await dispatcher.fan_out(make_events(2, 3))
    await wait_for(lambda: len(other.received) == 3, timeout=10.0, what="the other subscription's events")
    assert len(busy.received) < 60, len(busy.received)


async def test_a_write_that_cannot_claim_the_next_head_wakes_the_worker_for_it(
    dispatcher_factory: Factory, receiver_factory: Receivers
) -> None:
    """The subscription changed while its lane's head was sent: the write that records it makes the next
    head due instead of claiming it (a claim holds only while the subscription is as the worker read it),
    and the worker claims it at once, not at its next poll."""
    receiver, url = receiver_factory(lambda _r, n: Answer(delay=0.5) if n == 1 else Answer())
    dispatcher = dispatcher_factory(poll_interval=30.0)
    subscription = await dispatcher.store.create(url=url)
    events = make_events(1000, 3)
    await dispatcher.fan_out(events)
    await dispatcher.start()
    await wait_for(lambda: len(receiver.received) == 1, what="the head sent")
    await dispatcher.store.update(subscription.id, {"description": "changed while it was sent"})
    await wait_for(lambda: len(receiver.received) == 3, timeout=10.0, what="the rest of the lane")
    assert receiver.ids() == [e.event_id for e in events]


async def test_a_head_claimed_by_a_write_is_not_sent_once_an_erasure_of_its_event_began(
    dispatcher_factory: Factory, receiver_factory: Receivers
) -> None:
    """The write that records a lane's head claims the next one, and no tick reads the erasures under way
    before it is sent: the send reads them itself when the worker's last read is older than a few ms. An
    erasure that began while the head was on the wire keeps the next event from being sent."""
    receiver, url = receiver_factory(lambda _r, n: Answer(delay=0.3) if n == 1 else Answer())
    dispatcher = dispatcher_factory(poll_interval=30.0)
    subscription = await dispatcher.store.create(url=url)
    first, second = make_events(1000, 2)
    await dispatcher.fan_out([first, second])
    await dispatcher.start()
    await wait_for(lambda: len(receiver.received) == 1, what="the head sent")
    erasing = ErasureEntry(
        school_id=1000, resource="learner", record_id="7", event_ids=[second.event_id], started_at=time.time()
    )
    await dispatcher.store.journal("a-test", erasing)  # an erasure's first step: no dispatcher sends it

    async def erased() -> bool:
        states = await dispatcher.service.states(second.event_id)
        return [s.state for s in states if s.subscription_id == subscription.id] == ["erased"]

    await wait_for(erased, what="the next event dropped as erased")
    assert receiver.ids() == [first.event_id]
