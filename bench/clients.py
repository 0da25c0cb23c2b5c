"""Which HTTP client delivers: raw ceilings of the candidates, same receiver, same pre-signed bodies.

Each client posts the same signed envelopes (2 KB, like a debtor event) to the same local receiver
process, 64 at a time, with what the bridge needs of it: keep-alive, no redirects, a timeout, TLS
verification configured, a 4 KB cap on the answer read. Printed per client: requests per second and CPU
µs per request in this process (the receiver runs in its own). The bridge's delivery runs at some fraction
of its client's ceiling (bench/delivery.py), so the ceiling bounds what delivery can reach.

    python -m bench.clients [--requests 20000] [--runs 3]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import ssl
import statistics
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import httpx

from bench.common import quiet_logs
from bridge.delivery.signing import headers as signature_headers
from bridge.delivery.signing import new_secret
from bridge.testing.receiver_process import ReceiverProcess, receiver_process

CONCURRENCY = 64
CAP = 4096
Post = Callable[[bytes, dict[str, str]], Awaitable[int]]


def bodies(count: int) -> list[tuple[bytes, dict[str, str]]]:
    secret, now = new_secret(), int(time.time())
    record = {"accountable_person_id": 40, "debtor_code": "1001", "first_name": "Zanele", "notes": "x" * 1500}
    out = []
    for n in range(count):
        event_id = f"evt_01M8P157NM2Y9D6RTEW6D{n:05d}"
        body = json.dumps({"id": event_id, "type": "debtor.updated", "sequence": n, "data": record}).encode()
        headers = {**signature_headers([secret], event_id, now, body), "content-type": "application/json"}
        out.append((body, headers))
    return out


async def httpx_client(url: str) -> tuple[Post, Callable[[], Awaitable[None]]]:
    """httpx as the bridge built it before aiohttp: one client per connection slot."""
    clients = [
        httpx.AsyncClient(
            timeout=15.0,
            follow_redirects=False,
            limits=httpx.Limits(max_connections=5, max_keepalive_connections=5),
            verify=ssl.create_default_context(),
            trust_env=False,
        )
        for _ in range(CONCURRENCY)
    ]
    turn = iter(range(10**12))

    async def post(body: bytes, headers: dict[str, str]) -> int:
        client = clients[next(turn) % len(clients)]
        async with client.stream("POST", url, content=body, headers=headers) as response:
            async for _chunk in response.aiter_bytes():
                break
            return response.status_code

    async def close() -> None:
        for client in clients:
            await client.aclose()

    return post, close


async def httpx_aiohttp_client(url: str) -> tuple[Post, Callable[[], Awaitable[None]]]:
    import httpx_aiohttp

    client = httpx_aiohttp.HttpxAiohttpClient(timeout=15.0, follow_redirects=False, trust_env=False)

    async def post(body: bytes, headers: dict[str, str]) -> int:
        async with client.stream("POST", url, content=body, headers=headers) as response:
            async for _chunk in response.aiter_bytes():
                break
            return response.status_code

    return post, client.aclose


async def aiohttp_client(url: str) -> tuple[Post, Callable[[], Awaitable[None]]]:
    import aiohttp

    connector = aiohttp.TCPConnector(
        limit=CONCURRENCY + 4, ssl=ssl.create_default_context(), ttl_dns_cache=None
    )
    session = aiohttp.ClientSession(
        connector=connector, timeout=aiohttp.ClientTimeout(total=15.0), trust_env=False, auto_decompress=False
    )

    async def post(body: bytes, headers: dict[str, str]) -> int:
        async with session.post(url, data=body, headers=headers, allow_redirects=False) as response:
            await response.content.read(CAP)
            return response.status

    return post, session.close


async def pyreqwest_client(url: str) -> tuple[Post, Callable[[], Awaitable[None]]]:
    from datetime import timedelta

    from pyreqwest.client import ClientBuilder

    client = ClientBuilder().timeout(timedelta(seconds=15)).max_redirects(0).build()

    async def post(body: bytes, headers: dict[str, str]) -> int:
        response = await client.post(url).headers(headers).body_bytes(body).build().send()
        await response.bytes()
        return int(response.status)

    async def close() -> None:
        await client.close()

    return post, close


CLIENTS: dict[str, Callable[[str], Awaitable[tuple[Post, Callable[[], Awaitable[None]]]]]] = {
    "httpx (as the bridge was)": httpx_client,
    "httpx on aiohttp": httpx_aiohttp_client,
    "aiohttp": aiohttp_client,
    "pyreqwest": pyreqwest_client,
}


async def ceiling(
    name: str, receiver: ReceiverProcess, requests: list[tuple[bytes, dict[str, str]]]
) -> tuple[float, float]:
    post, close = await CLIENTS[name](receiver.url)
    pending: Iterator[tuple[bytes, dict[str, str]]] = iter(requests)

    async def worker() -> None:
        for body, headers in pending:
            status = await post(body, headers)
            assert status == 200, (name, status)

    for body, headers in requests[:200]:  # warm: connections, caches
        await post(body, headers)
    await receiver.reset()
    started, cpu = time.perf_counter(), time.process_time()
    await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
    elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
    await close()
    stats: dict[str, Any] = await receiver.stats()
    assert stats["count"] == len(requests), (name, stats["count"])
    return len(requests) / elapsed, cpu / len(requests) * 1e6


async def main(count: int, runs: int) -> bool:
    quiet_logs()
    requests = bodies(count)
    figures: dict[str, list[tuple[float, float]]] = {name: [] for name in CLIENTS}
    async with receiver_process() as receiver:
        for _ in range(runs):
            for name in CLIENTS:
                figures[name].append(await ceiling(name, receiver, requests))
    print(
        f"raw client ceilings: {count:,} signed 2 KB posts, {CONCURRENCY} at a time, "
        f"local receiver; {runs} runs"
    )
    base = statistics.median(rate for rate, _ in figures["httpx (as the bridge was)"])
    for name, rows in figures.items():
        rates, cpus = [r for r, _ in rows], [c for _, c in rows]
        print(
            f"  {name:<26} {statistics.median(rates):>8,.0f}/s (runs {min(rates):,.0f}-{max(rates):,.0f})"
            f"  {statistics.median(cpus):>6,.0f} µs CPU each  {statistics.median(rates) / base:>5.2f}x httpx"
        )
    return True


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=20_000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    sys.exit(0 if asyncio.run(main(args.requests, args.runs)) else 1)
