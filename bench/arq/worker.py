"""The arq baseline's worker: one arq job per delivery, the job signs the event and POSTs it with aiohttp.

Run by `bench.delivery` in `.venv-arq` as `python -m bench.arq.worker` with `ARQ_REDIS_URL` and
`BENCH_CONCURRENCY` set. It is what a Python team would write with arq, with arq's defaults (poll delay
0.5 s, results kept an hour, up to 5 tries, `queue_read_limit` 5 x `max_jobs`) except two choices made
for fairness:

- `max_jobs` is the bridge's `BRIDGE_DELIVERY_CONCURRENCY` (arq's default is 10);
- the HTTP client is the bridge's, configured as `bridge/delivery/sender.py` configures it (one aiohttp
  session, a pool of `max_jobs` + 4 keep-alive connections, no redirects, keep-alive 30 s), so the
  comparison measures the queue, not the client. Its virtualenv has everything the client imports,
  `sniffio` included (a missing lazy import made httpx retry the import on every request: +310 µs).

Logging stays at Python's default (warnings), as the bridge's does in the benchmark. The worker runs in
burst mode (it exits once the queue is empty) and writes the time it started into `bench:started`.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import time
from typing import Any

import aiohttp
from arq.connections import RedisSettings
from arq.worker import run_worker

CONCURRENCY = int(os.environ.get("BENCH_CONCURRENCY", "64"))
TIMEOUT_SECONDS = 15.0


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
    session: aiohttp.ClientSession = ctx["session"]
    async with session.post(url, data=body, headers=headers, allow_redirects=False) as response:
        await response.content.read(4096)
        response.raise_for_status()
        return response.status


async def startup(ctx: dict[str, Any]) -> None:
    connector = aiohttp.TCPConnector(limit=CONCURRENCY + 4, keepalive_timeout=30.0)
    ctx["session"] = aiohttp.ClientSession(
        connector=connector,
        timeout=aiohttp.ClientTimeout(total=TIMEOUT_SECONDS),
        headers={"User-Agent": "arq-baseline/0.28.0"},
        trust_env=False,
        auto_decompress=False,
    )
    await ctx["redis"].set("bench:started", repr(time.time()))


async def shutdown(ctx: dict[str, Any]) -> None:
    await ctx["session"].close()


class WorkerSettings:
    functions = (deliver,)
    on_startup = startup
    on_shutdown = shutdown
    max_jobs = CONCURRENCY
    burst = True
    redis_settings = RedisSettings.from_dsn(os.environ.get("ARQ_REDIS_URL", "redis://127.0.0.1:6379/0"))


if __name__ == "__main__":
    run_worker(WorkerSettings)  # type: ignore[arg-type]
