"""The arq baseline's worker: one arq job per delivery, the job signs the event and POSTs it with httpx.

Run by `bench.delivery` in `.venv-arq` as `python -m bench.arq.worker` with `ARQ_REDIS_URL` and
`BENCH_CONCURRENCY` set. It is what a Python team would write with arq, with arq's defaults (poll delay
0.5 s, results kept an hour, up to 5 tries, `queue_read_limit` 5 x `max_jobs`) except two choices made
for fairness:

- `max_jobs` is the bridge's `BRIDGE_DELIVERY_CONCURRENCY` (arq's default is 10);
- the HTTP clients are configured exactly as `bridge/delivery/sender.py:build_clients` configures the
  bridge's (one `httpx.AsyncClient` per 8 connections, no redirects, keep-alive 30 s, the job's school
  picking the client), because a single client with 64 connections is several times slower in httpcore
  1.0 and the comparison would then measure httpx, not the queue.

Logging stays at Python's default (warnings), as the bridge's does in the benchmark. The worker runs in
burst mode (it exits once the queue is empty) and writes the time it started into `bench:started`.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import math
import os
import time
import zlib
from typing import Any

import httpx
from arq.connections import RedisSettings
from arq.worker import run_worker

CONCURRENCY = int(os.environ.get("BENCH_CONCURRENCY", "64"))
TIMEOUT_SECONDS = 15.0
CONNECTIONS_PER_CLIENT = 8


def signature(secret: str, event_id: str, timestamp: int, body: bytes) -> str:
    """Standard Webhooks v1: base64 HMAC-SHA256 of "{id}.{timestamp}.{body}", keyed by the secret."""
    key = base64.b64decode(secret.removeprefix("whsec_"))
    digest = hmac.new(key, f"{event_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


async def deliver(
    ctx: dict[str, Any], event_id: str, school_id: int, body: bytes, url: str, secret: str
) -> int:
    """One delivery: sign and POST; a non-2xx answer raises, and arq retries the job."""
    timestamp = int(time.time())
    headers = {
        "webhook-id": event_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": signature(secret, event_id, timestamp, body),
        "content-type": "application/json",
    }
    clients: list[httpx.AsyncClient] = ctx["clients"]
    client = clients[zlib.crc32(f"arq:{school_id}".encode()) % len(clients)]
    response = await client.post(url, content=body, headers=headers)
    response.raise_for_status()
    return response.status_code


async def startup(ctx: dict[str, Any]) -> None:
    count = max(1, math.ceil(CONCURRENCY / CONNECTIONS_PER_CLIENT))
    per_client = math.ceil(CONCURRENCY / count)
    limits = httpx.Limits(
        max_connections=per_client + 4, max_keepalive_connections=per_client + 4, keepalive_expiry=30.0
    )
    ctx["clients"] = [
        httpx.AsyncClient(
            timeout=httpx.Timeout(TIMEOUT_SECONDS),
            limits=limits,
            follow_redirects=False,
            headers={"User-Agent": "arq-baseline/0.28.0"},
            trust_env=False,
        )
        for _ in range(count)
    ]
    await ctx["redis"].set("bench:started", repr(time.time()))


async def shutdown(ctx: dict[str, Any]) -> None:
    for client in ctx["clients"]:
        await client.aclose()


class WorkerSettings:
    functions = (deliver,)
    on_startup = startup
    on_shutdown = shutdown
    max_jobs = CONCURRENCY
    burst = True
    redis_settings = RedisSettings.from_dsn(os.environ.get("ARQ_REDIS_URL", "redis://127.0.0.1:6379/0"))


if __name__ == "__main__":
    run_worker(WorkerSettings)  # type: ignore[arg-type]
