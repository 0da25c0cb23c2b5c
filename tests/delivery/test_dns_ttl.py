"""A subscriber that moves is found again: a name's addresses are reused for at most the guard's DNS TTL.

Real DNS cannot be changed on demand, so the event loop's `getaddrinfo` (what the system resolver asks)
answers `hooks.test` from a dict the test changes; every other name goes to the real one. The two receivers
listen on the same port, A on 127.0.0.1 and B on 127.0.0.2 (all of 127/8 is loopback).
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
import redis.asyncio as aioredis

from bridge.delivery.store import SubscriptionStore
from bridge.delivery.urls import UrlGuard, UrlRefused
from bridge.store.keys import Keys
from bridge.store.scripts import Scripts
from bridge.testing.events import make_events
from bridge.testing.receivers import Receiver, ReceiverServer
from bridge.testing.servers import free_port
from bridge.testing.settings import fast_settings
from bridge.testing.waiting import wait_for
from tests.delivery.parts import DeliveryParts

TTL = 0.5
NAME = "hooks.test"


@pytest.fixture
async def dns(monkeypatch: pytest.MonkeyPatch) -> dict[str, list[str]]:
    """The addresses `hooks.test` resolves to; change them to move the subscriber."""
    answers: dict[str, list[str]] = {}
    loop = asyncio.get_running_loop()
    real = loop.getaddrinfo

    async def getaddrinfo(host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
        if host in answers:
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (a, int(port or 0))) for a in answers[host]]
        return await real(host, port, *args, **kwargs)

    monkeypatch.setattr(loop, "getaddrinfo", getaddrinfo)
    return answers


@pytest.fixture
def receivers() -> Iterator[tuple[Receiver, Receiver, int]]:
    """Receivers A (127.0.0.1) and B (127.0.0.2) on one port."""
    port = free_port()
    a = ReceiverServer(Receiver(), port)
    b = ReceiverServer(Receiver(), port)
    b.server.config.host = "127.0.0.2"
    a.start()
    b.start()
    yield a.receiver, b.receiver, port
    a.stop()
    b.stop()


@pytest.fixture
async def dispatcher(redis: aioredis.Redis) -> AsyncIterator[DeliveryParts]:
    guard = UrlGuard(allow_private=True, dns_ttl=TTL)
    store = SubscriptionStore(redis, Keys(), guard, scripts=Scripts(redis))
    built = DeliveryParts(redis, fast_settings(), store, poll_interval=0.05)
    yield built
    await built.stop(grace=1.0)


async def test_deliveries_follow_a_name_to_its_new_address_after_the_ttl(
    dispatcher: DeliveryParts, dns: dict[str, list[str]], receivers: tuple[Receiver, Receiver, int]
) -> None:
    a, b, port = receivers
    dns[NAME] = ["127.0.0.1"]
    await dispatcher.store.create(url=f"http://{NAME}:{port}/hooks/moving")
    await dispatcher.start()
    first = make_events(1000, 3)
    await dispatcher.fan_out(first)
    await wait_for(lambda: len(a.received) == 3, what="3 deliveries at A")
    assert a.received[0].headers["host"] == f"{NAME}:{port}"

    dns[NAME] = ["127.0.0.2"]  # the subscriber moved; A is still up, with a kept-alive connection
    await asyncio.sleep(TTL + 0.2)
    later = make_events(1000, 3, start=4)
    await dispatcher.fan_out(later)
    await wait_for(lambda: len(b.received) == 3, timeout=10, what="the next 3 deliveries at B")
    assert b.ids() == [e.event_id for e in later]
    assert a.ids() == [e.event_id for e in first]
    assert b.received[0].headers["host"] == f"{NAME}:{port}"


async def test_the_address_check_applies_to_each_fresh_answer(dns: dict[str, list[str]]) -> None:
    # A name that resolved to a public address, then (after the TTL) to a private one: refused, never
    # connected to the cached public one nor the new private one.
    dns[NAME] = ["93.184.216.34"]
    guard = UrlGuard(allow_private=False, dns_ttl=TTL)
    target = await guard.target(f"https://{NAME}/in")
    assert target.url == "https://93.184.216.34/in" and target.sni_hostname == NAME
    assert guard.at_hand(f"https://{NAME}/in") == target  # within the TTL: no second lookup
    dns[NAME] = ["10.0.0.7"]
    await asyncio.sleep(TTL + 0.1)
    assert guard.at_hand(f"https://{NAME}/in") is None
    with pytest.raises(UrlRefused, match=r"10\.0\.0\.7"):
        await guard.target(f"https://{NAME}/in")


async def test_an_address_that_refuses_the_connection_gives_way_to_the_next(
    dispatcher: DeliveryParts, dns: dict[str, list[str]], receivers: tuple[Receiver, Receiver, int]
) -> None:
    a, _, port = receivers
    dns[NAME] = ["127.0.0.3", "127.0.0.1"]  # nothing listens on the first
    await dispatcher.store.create(url=f"http://{NAME}:{port}/hooks/two")
    await dispatcher.start()
    await dispatcher.fan_out(make_events(1000, 2))
    await wait_for(lambda: len(a.received) == 2, what="2 deliveries at the second address")
