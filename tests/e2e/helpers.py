"""A bridge (`Services`) wired to a real Redis and the simulator over HTTP, as `serve` wires it; or
`d6-bridge serve` itself in a process of its own."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import redis.asyncio as aioredis

from bridge.app import Services, create_app
from bridge.events.envelope import Event, decode_event
from bridge.events.log import school_log
from bridge.settings import Settings
from bridge.store.keys import Keys
from bridge.testing.servers import free_port
from bridge.testing.settings import TOKEN, serve_env

ROOT = Path(__file__).resolve().parents[2]


@asynccontextmanager
async def running_bridge(settings: Settings) -> AsyncIterator[Services]:
    services = Services.build(settings)
    await services.start()
    try:
        yield services
    finally:
        await services.stop(grace=2)


def api(services: Services) -> httpx.AsyncClient:
    """The bridge's HTTP API in this event loop (no lifespan: the services already run)."""
    app = create_app(services.settings, services)
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app),
        base_url="http://bridge.test",
        headers={"Authorization": f"Bearer {TOKEN}"},
    )


async def school_events(redis: aioredis.Redis, school_id: int, prefix: str = "d6b") -> list[Event]:
    """Every event the school's log holds, in sequence order."""
    return [decode_event(body) for body in await school_log(redis, Keys(prefix), school_id)]


def start_replica(
    redis_url: str, d6_base_url: str, logs: Path, **overrides: str
) -> tuple[subprocess.Popen[bytes], int]:
    """`d6-bridge serve` in a process of its own, its stderr in `logs/replica-<port>.log`."""
    port = free_port()
    env = serve_env(redis_url, d6_base_url, BRIDGE_PORT=str(port), **overrides)
    with (logs / f"replica-{port}.log").open("wb") as log_file:
        process = subprocess.Popen(
            [sys.executable, "-m", "bridge", "serve"], cwd=ROOT, env=env, stderr=log_file
        )
    return process, port


async def stop_replicas(processes: Iterable[subprocess.Popen[bytes]], grace: float = 30) -> None:
    """SIGTERM every serve process still running, then wait for each (SIGKILL after `grace` seconds)."""
    processes = list(processes)
    for process in processes:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
    for process in processes:
        try:
            await asyncio.to_thread(process.wait, grace)
        except subprocess.TimeoutExpired:
            process.kill()
            await asyncio.to_thread(process.wait, 10)


async def ready(port: int) -> bool:
    try:
        async with httpx.AsyncClient() as client:
            return (await client.get(f"http://127.0.0.1:{port}/health/ready")).status_code == 200
    except httpx.HTTPError:
        return False
