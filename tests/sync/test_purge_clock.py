"""The purge clock of a school that loses its authorisation (docs/guarantees.md, revoked schools): it counts
from the first loss, so a school denied first and revoked later is purged `BRIDGE_REVOKED_PURGE_DAYS`
after the denial, not after the revocation. The simulator over HTTP, a real Redis, the bridge's wiring."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx
import redis.asyncio as aioredis

from bridge.store.keys import META_DENIED, META_PURGED, META_REVOKED, Keys
from bridge.testing.settings import bridge_settings
from bridge.testing.waiting import wait_for
from tests.e2e.helpers import api, running_bridge

KEYS = Keys("d6b")
PURGE_SECONDS = 10.0
SCHOOL = 1001


async def flags(redis: aioredis.Redis, school_id: int) -> dict[str, float | None]:
    values = await redis.hmget(KEYS.school_meta(school_id), [META_DENIED, META_REVOKED, META_PURGED])
    return {
        name: None if value is None else float(value)
        for name, value in zip((META_DENIED, META_REVOKED, META_PURGED), values, strict=True)
    }


async def flag_set(redis: aioredis.Redis, school_id: int, name: str) -> float | None:
    return (await flags(redis, school_id))[name]


async def state(client: httpx.AsyncClient, school_id: int, wanted: str) -> bool:
    schools = (await client.get("/v1/schools")).json()["data"]
    return any(s["school_id"] == school_id and s["state"] == wanted for s in schools)


async def test_a_school_denied_then_revoked_is_purged_counting_from_the_denial(
    redis: aioredis.Redis, redis_url: str, simulator_factory: Any
) -> None:
    sim = simulator_factory(schools=2, learners=20, debtors=10, seed=21)
    control = httpx.AsyncClient(base_url=sim.control_url)
    settings = bridge_settings(redis_url, sim.base_url, BRIDGE_REVOKED_PURGE_DAYS=repr(PURGE_SECONDS / 86400))
    async with running_bridge(settings) as services:
        client = api(services)
        await wait_for(lambda: state(client, SCHOOL, "active"), what="first polls")
        await wait_for(
            lambda: redis.exists(KEYS.snapshot_records(SCHOOL, "learner")), what="the learner snapshot"
        )

        # d6 keeps listing the school but refuses its data: the first loss of authorisation.
        await control.post(f"/schools/{SCHOOL}/access", json={"denied": True})
        denied_at = await wait_for(lambda: flag_set(redis, SCHOOL, META_DENIED), what="the denial")
        assert denied_at is not None

        # Half the purge time later, the school withdraws from the list too.
        await asyncio.sleep(max(0.0, denied_at + PURGE_SECONDS / 2 - time.time()))
        await control.post(f"/schools/{SCHOOL}/revoke")
        revoked_at = await wait_for(lambda: flag_set(redis, SCHOOL, META_REVOKED), what="the revocation")
        assert time.time() < denied_at + PURGE_SECONDS - 1, "too slow to tell the two clocks apart"

        # Purged at denial + purge days (the integrations poll runs every second), not revocation + days.
        purged_at = await wait_for(
            lambda: flag_set(redis, SCHOOL, META_PURGED), what="the purge", timeout=PURGE_SECONDS + 10
        )
        assert purged_at is not None
        assert denied_at + PURGE_SECONDS <= purged_at < denied_at + PURGE_SECONDS + 3, purged_at - denied_at
        # The flags say the same: revoked since the denial, no longer denied (it is no longer listed).
        assert revoked_at == denied_at
        assert (await flags(redis, SCHOOL))[META_DENIED] is None
        assert not await redis.exists(KEYS.snapshot_records(SCHOOL, "learner"))
        assert await redis.exists(KEYS.snapshot_records(1000, "learner"))

        # Authorised again, with its data readable: every flag is cleared, the school is polled again.
        await control.post(f"/schools/{SCHOOL}/access", json={"denied": False})
        await control.post(f"/schools/{SCHOOL}/authorise")
        await wait_for(lambda: state(client, SCHOOL, "active"), what="re-activation")
        await wait_for(
            lambda: redis.exists(KEYS.snapshot_records(SCHOOL, "learner")), what="the new baseline"
        )
        assert await flags(redis, SCHOOL) == {META_DENIED: None, META_REVOKED: None, META_PURGED: None}


async def test_a_school_denied_then_revoked_and_authorised_again_before_the_purge_clears_both(
    redis: aioredis.Redis, redis_url: str, simulator_factory: Any
) -> None:
    sim = simulator_factory(schools=2, learners=20, debtors=10, seed=22)
    control = httpx.AsyncClient(base_url=sim.control_url)
    async with running_bridge(bridge_settings(redis_url, sim.base_url)) as services:
        client = api(services)
        await wait_for(lambda: state(client, SCHOOL, "active"), what="first polls")
        await control.post(f"/schools/{SCHOOL}/access", json={"denied": True})
        denied_at = await wait_for(lambda: flag_set(redis, SCHOOL, META_DENIED), what="the denial")
        await control.post(f"/schools/{SCHOOL}/revoke")
        assert await wait_for(lambda: flag_set(redis, SCHOOL, META_REVOKED), what="revocation") == denied_at

        await control.post(f"/schools/{SCHOOL}/access", json={"denied": False})
        await control.post(f"/schools/{SCHOOL}/authorise")
        await wait_for(lambda: state(client, SCHOOL, "active"), what="re-activation")
        await asyncio.sleep(2.5)  # a few more polls: nothing sets a flag again
        assert await flags(redis, SCHOOL) == {META_DENIED: None, META_REVOKED: None, META_PURGED: None}
        assert await redis.exists(KEYS.snapshot_records(SCHOOL, "learner"))  # not purged
