"""Finished attempts are recorded in batches (one script call per subscription and batch) against real Redis,
and each one keeps what a single completion guaranteed: the lease check, the lane moving on in order."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import msgspec

from bridge.delivery.completer import Completer
from bridge.delivery.models import Attempt, Delivery, Subscription
from bridge.delivery.queue import Claim, Completion
from bridge.store.codec import as_text
from bridge.testing.events import make_events
from tests.delivery.parts import DeliveryParts

Factory = Callable[..., DeliveryParts]


def finished(subscription: Subscription, delivery: Delivery, token: str, now: float) -> Completion:
    attempt = Attempt(
        at=now,
        delivery_id=delivery.id,
        event_id=delivery.event_id,
        event_type=delivery.event_type,
        school_id=delivery.school_id,
        attempt=1,
        outcome="ok",
        status_code=200,
        duration_ms=1.0,
    )
    return Completion(
        subscription=subscription,
        delivery=delivery,
        token=token,
        outcome="ok",
        now=now,
        next_at=now,
        attempt=attempt,
    )


async def test_completions_that_finish_together_are_one_script_call_and_lanes_move_on(
    dispatcher_factory: Factory,
) -> None:
    dispatcher = dispatcher_factory()  # not started: the test plays the worker
    subscription = await dispatcher.store.create(url="http://127.0.0.1:9/hook")  # ordered
    events = make_events(1, 3) + make_events(2, 3)
    await dispatcher.fan_out(events)
    now = time.time()
    heads = await dispatcher.queue.claim(subscription.id, now=now, lease_until=now + 30, token="w", limit=10)
    assert sorted(d.school_id for d in heads) == [1, 2]  # one head per lane

    calls: list[int] = []
    queue = dispatcher.queue
    original = queue.complete_batch

    async def counting(sid: str, batch: list[Completion], **options: Any) -> list[tuple[bool, float | None]]:
        calls.append(len(batch))
        return await original(sid, batch, **options)

    queue.complete_batch = counting  # type: ignore[method-assign]
    completer = Completer(queue, lambda: 0.0)
    results = await asyncio.gather(
        *(completer.complete(finished(subscription, d, "w", now)) for d in heads),
        completer.complete(finished(subscription, heads[0], "someone else", now)),  # its lease is not held
    )
    assert calls == [3]
    assert [held for held, _ in results] == [True, True, False]

    later = time.time()
    nexts = await queue.claim(subscription.id, now=later, lease_until=later + 30, token="w", limit=10)
    by_school = {e.event_id: e for e in events}
    assert sorted((d.school_id, by_school[d.event_id].sequence) for d in nexts) == [(1, 2), (2, 2)]
    logged = await queue.attempts(subscription.id, before=None, limit=10)
    assert len(logged) == 2


async def test_a_batch_is_capped_and_the_rest_follows(dispatcher_factory: Factory) -> None:
    dispatcher = dispatcher_factory()
    subscription = await dispatcher.store.create(url="http://127.0.0.1:9/hook", ordered=False)
    await dispatcher.fan_out(make_events(1, 10))
    now = time.time()
    claimed = await dispatcher.queue.claim(
        subscription.id, now=now, lease_until=now + 30, token="w", limit=10
    )
    completer = Completer(dispatcher.queue, lambda: 0.0, max_batch=4)
    results = await asyncio.gather(
        *(completer.complete(finished(subscription, d, "w", now)) for d in claimed)
    )
    assert all(held for held, _ in results) and len(results) == 10
    assert await dispatcher.redis.hlen(dispatcher.keys.deliveries(subscription.id)) == 0
    assert await dispatcher.redis.zcard(dispatcher.keys.due(subscription.id)) == 0


async def test_a_write_with_a_claim_claims_each_lane_s_next_head_while_the_subscription_is_as_it_was(
    dispatcher_factory: Factory,
) -> None:
    """The worker's completer asks each write to claim the next head of every lane it moves on: leased to
    the claim's token in the same script, so no other claim takes it; not while the subscription is
    disabled or changed since the batch's copy was read (then the next head is due, as without a claim)."""
    dispatcher = dispatcher_factory()  # not started: the test plays the worker
    queue, store = dispatcher.queue, dispatcher.store
    subscription = await store.create(url="http://127.0.0.1:9/hook")  # ordered
    events = make_events(1, 4) + make_events(2, 4)
    by_school = {e.event_id: e for e in events}
    await dispatcher.fan_out(events)
    completer = Completer(queue, lambda: 0.0)
    tokens = iter(["c1", "c2", "c3"])
    told: list[tuple[str, list[tuple[int, int]], str]] = []
    completer.claim = lambda s, finished: Claim(lease_until=time.time() + 30, token=next(tokens))

    def sequences(deliveries: list[Delivery]) -> list[tuple[int, int]]:
        return sorted((d.school_id, by_school[d.event_id].sequence) for d in deliveries)

    completer.claimed = lambda s, ds, token: told.append((s.id, sequences(ds), token))

    now = time.time()
    heads = await queue.claim(subscription.id, now=now, lease_until=now + 30, token="w", limit=10)
    assert sequences(heads) == [(1, 1), (2, 1)]
    await asyncio.gather(*(completer.complete(finished(subscription, d, "w", now)) for d in heads))
    assert told == [(subscription.id, [(1, 2), (2, 2)], "c1")]
    leases = await dispatcher.redis.hgetall(dispatcher.keys.leases(subscription.id))
    assert sorted(leases.values()) == [b"c1", b"c1"]
    later = time.time()
    assert await queue.claim(subscription.id, now=later, lease_until=later + 30, token="x", limit=10) == []

    # Changed since the batch's copy was read: the next heads are due for the next claim instead.
    second = [d for d in await queue.get(subscription.id, [as_text(k) for k in leases]) if d is not None]
    await store.update(subscription.id, {"description": "changed"})
    await asyncio.gather(*(completer.complete(finished(subscription, d, "c1", later)) for d in second))
    assert len(told) == 1
    fresh = time.time()
    due = await queue.claim(subscription.id, now=fresh, lease_until=fresh + 30, token="y", limit=10)
    assert sequences(due) == [(1, 3), (2, 3)]

    # Disabled: nothing claimed, though the batch's copy has the subscription's `updated_at` (what the
    # copy says of `enabled` is not what counts).
    await store.disable(subscription.id, "a test")
    as_read = msgspec.structs.replace(await store.get(subscription.id), enabled=True)
    await asyncio.gather(*(completer.complete(finished(as_read, d, "y", fresh)) for d in due))
    assert len(told) == 1
    fresh = time.time()
    due = await queue.claim(subscription.id, now=fresh, lease_until=fresh + 30, token="z", limit=10)
    assert sequences(due) == [(1, 4), (2, 4)]  # due, for a worker that finds the subscription enabled


async def test_an_unordered_write_with_a_claim_takes_as_many_due_deliveries_as_the_claim_allows(
    dispatcher_factory: Factory,
) -> None:
    """An unordered subscription's write claims up to the claim's `limit` of its due deliveries, leased to
    the claim's token in the same script, as a round of claims would: not those another claim holds, and
    nothing while the subscription is disabled or changed since the batch's copy was read."""
    dispatcher = dispatcher_factory()  # not started: the test plays the worker
    queue, store = dispatcher.queue, dispatcher.store
    subscription = await store.create(url="http://127.0.0.1:9/hook", ordered=False)
    await dispatcher.fan_out(make_events(1, 10))
    completer = Completer(queue, lambda: 0.0)
    tokens = iter(["c1", "c2", "c3"])
    told: list[tuple[int, str]] = []
    completer.claim = lambda s, finished: Claim(
        lease_until=time.time() + 30, token=next(tokens), limit=finished * 5, now=time.time()
    )
    completer.claimed = lambda s, ds, token: told.append((len(ds), token))

    async def claim(token: str) -> list[Delivery]:
        now = time.time()
        return await queue.claim(subscription.id, now=now, lease_until=now + 30, token=token, limit=10)

    async def release(deliveries: list[Delivery], token: str) -> None:
        for d in deliveries:
            await queue.release(subscription.id, d.id, token=token, now=time.time())

    async def leased(token: str) -> list[Delivery]:
        leases = await dispatcher.redis.hgetall(dispatcher.keys.leases(subscription.id))
        ids = [as_text(k) for k, v in leases.items() if v == token.encode()]
        return [d for d in await queue.get(subscription.id, ids) if d is not None]

    now = time.time()
    held = await queue.claim(subscription.id, now=now, lease_until=now + 30, token="w", limit=4)
    await asyncio.gather(*(completer.complete(finished(subscription, d, "w", now)) for d in held[:2]))
    assert told == [(6, "c1")]  # room for 10; the 6 due, not the 2 "w" still holds
    assert len(await leased("w")) == 2 and len(await leased("c1")) == 6
    assert await claim("x") == []

    # Changed since the batch's copy was read: the write claims nothing, what is due stays due.
    await release(await leased("c1"), "c1")
    await store.update(subscription.id, {"description": "changed"})
    await asyncio.gather(*(completer.complete(finished(subscription, d, "w", now)) for d in held[2:]))
    assert len(told) == 1
    due = await claim("y")
    assert len(due) == 6

    # Disabled: nothing claimed either, whatever the batch's copy says of `enabled`.
    await release(due[2:], "y")
    await store.disable(subscription.id, "a test")
    as_read = msgspec.structs.replace(await store.get(subscription.id), enabled=True)
    await asyncio.gather(*(completer.complete(finished(as_read, d, "y", time.time())) for d in due[:2]))
    assert len(told) == 1
    assert len(await claim("z")) == 4
