"""The reader process of bench/feed.py: a consumer of pull feeds over HTTP, as an integrator would write it.

python -m bench.feed_reader drain BASE_URL TOKEN SUBSCRIPTION COUNT
    long-poll pages of 500, commit each; print {"count", "finished"} once COUNT events were read
python -m bench.feed_reader latency BASE_URL TOKEN SUBSCRIPTION COUNT
    the same with the receive time of each event: {"received": {event id: time}}
python -m bench.feed_reader streams BASE_URL TOKEN SUBSCRIPTIONS EACH IDLE_SECONDS
    EACH Server-Sent Event streams per subscription (comma-separated ids), held until no event came for
    IDLE_SECONDS after the first; a line `open` once every stream has its answer, then {"counts": events
    received per stream, in order}
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from typing import Any

import httpx


async def pages(
    base_url: str, token: str, subscription_id: str, count: int, *, times: bool
) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {token}"}
    received: dict[str, float] = {}
    seen = 0
    async with httpx.AsyncClient(base_url=base_url, headers=headers, timeout=60) as client:
        feed = f"/v1/subscriptions/{subscription_id}/feed"
        cursor: str | None = None
        while seen < count:
            params: dict[str, Any] = {"limit": 500, "wait": 5, **({"cursor": cursor} if cursor else {})}
            answer = await client.get(feed, params=params)
            answer.raise_for_status()
            at = time.time()
            page = answer.json()
            cursor = page["meta"]["next_cursor"]
            if page["data"]:
                seen += len(page["data"])
                if times:
                    for event in page["data"]:
                        received[event["id"]] = at
                (await client.post(f"{feed}/commit", json={"cursor": cursor})).raise_for_status()
    return {"count": seen, "finished": time.time(), "received": received}


async def streams(
    base_url: str, token: str, subscription_ids: list[str], each: int, idle: float
) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {token}"}
    counts = [0] * (len(subscription_ids) * each)
    last = [time.monotonic()]
    limits = httpx.Limits(max_connections=len(counts) + 10)
    answered = [0]

    async def follow(client: httpx.AsyncClient, n: int, subscription_id: str) -> None:
        async with client.stream("GET", f"/v1/subscriptions/{subscription_id}/stream") as answer:
            answered[0] += 1
            if answered[0] == len(counts):
                print("open", flush=True)  # bench/feed.py times its idle window from here
            async for line in answer.aiter_lines():
                if line.startswith("data:"):
                    counts[n] += 1
                    last[0] = time.monotonic()

    async with httpx.AsyncClient(base_url=base_url, headers=headers, timeout=None, limits=limits) as client:
        tasks = [
            asyncio.create_task(follow(client, s * each + k, sid))
            for s, sid in enumerate(subscription_ids)
            for k in range(each)
        ]
        started = time.monotonic()
        # A quiet spell, not an event, ends it.
        while not (sum(counts) and time.monotonic() - last[0] > idle) and time.monotonic() - started < 120:  # noqa: ASYNC110
            await asyncio.sleep(0.2)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    return {"counts": counts}


def main() -> None:
    mode, base_url, token, *rest = sys.argv[1:]
    if mode == "streams":
        ids, each, idle = rest
        result = asyncio.run(streams(base_url, token, ids.split(","), int(each), float(idle)))
    else:
        subscription_id, count = rest
        result = asyncio.run(pages(base_url, token, subscription_id, int(count), times=mode == "latency"))
    json.dump(result, sys.stdout)


if __name__ == "__main__":
    main()
