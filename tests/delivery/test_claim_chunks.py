"""Claiming at the highest concurrency the settings allow: Lua's `unpack` must never see the whole claim.

`unpack` stops near 8,000 values ("too many results to unpack"), so a claim that unpacked two values per
delivery failed for every claim once `BRIDGE_DELIVERY_CONCURRENCY` reached 4,000 with a backlog that deep.
"""

from __future__ import annotations

from collections.abc import Callable

from bridge.settings import MAX_DELIVERY_CONCURRENCY, load_settings
from bridge.store.codec import as_text
from bridge.testing.events import make_events
from bridge.testing.settings import fast_settings
from tests.delivery.parts import DeliveryParts

Factory = Callable[..., DeliveryParts]


async def test_a_claim_of_the_largest_concurrency_takes_that_many(dispatcher_factory: Factory) -> None:
    dispatcher = dispatcher_factory(fast_settings(delivery_concurrency=MAX_DELIVERY_CONCURRENCY))
    subscription = await dispatcher.store.create(url="http://127.0.0.1:9/hook", ordered=False)
    backlog = MAX_DELIVERY_CONCURRENCY + 2_000  # deeper than the claim, and than Lua's unpack limit
    assert await dispatcher.fan_out(make_events(1000, backlog)) == backlog

    claimed = await dispatcher.queue.claim(
        subscription.id, now=2e9, lease_until=2e9 + 60, token="t", limit=MAX_DELIVERY_CONCURRENCY
    )
    assert len(claimed) == MAX_DELIVERY_CONCURRENCY
    assert len({d.id for d in claimed}) == MAX_DELIVERY_CONCURRENCY
    redis = dispatcher.redis
    assert await redis.hlen(dispatcher.keys.leases(subscription.id)) == MAX_DELIVERY_CONCURRENCY
    leased = await redis.zcount(dispatcher.keys.due(subscription.id), 2e9 + 60, 2e9 + 60)
    assert leased == MAX_DELIVERY_CONCURRENCY

    rest = await dispatcher.queue.claim(
        subscription.id, now=2e9, lease_until=2e9 + 60, token="u", limit=MAX_DELIVERY_CONCURRENCY
    )
    assert len(rest) == 2_000
    assert not {d.id for d in rest} & {d.id for d in claimed}


async def test_a_claim_skips_deliveries_gone_from_the_hash_in_every_chunk(
    dispatcher_factory: Factory,
) -> None:
    dispatcher = dispatcher_factory()
    subscription = await dispatcher.store.create(url="http://127.0.0.1:9/hook", ordered=False)
    assert await dispatcher.fan_out(make_events(1000, 3_000)) == 3_000
    sid = subscription.id
    ids = [as_text(m) for m in await dispatcher.redis.zrange(dispatcher.keys.due(sid), 0, -1)]
    gone = ids[::7]  # one in seven, spread over every chunk
    await dispatcher.redis.hdel(dispatcher.keys.deliveries(sid), *gone)

    claimed = await dispatcher.queue.claim(sid, now=2e9, lease_until=2e9 + 60, token="t", limit=3_000)
    assert len(claimed) == 3_000 - len(gone)
    assert await dispatcher.redis.zcard(dispatcher.keys.due(sid)) == 3_000 - len(gone)
    assert await dispatcher.redis.hlen(dispatcher.keys.leases(sid)) == 3_000 - len(gone)


def test_the_concurrency_setting_allows_what_was_tested() -> None:
    settings = load_settings({"BRIDGE_DELIVERY_CONCURRENCY": str(MAX_DELIVERY_CONCURRENCY)}, isatty=False)
    assert settings.delivery_concurrency == MAX_DELIVERY_CONCURRENCY
