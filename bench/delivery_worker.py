"""One delivering process for bench/delivery_load.py: the delivery worker `serve` runs, and nothing else.

    python -m bench.delivery_worker REDIS_URL

It builds the bridge's services as `serve` does, says it is ready (`bench:ready`, a counter), starts its
delivery worker when it pops an item of `bench:go` and stops when it pops one of `bench:stop`, then adds the
CPU seconds it spent delivering to `bench:cpu`. (Bench-only keys on the benchmark's own redis-server.)
"""

from __future__ import annotations

import asyncio
import sys
import time

import redis.asyncio as aioredis

from bench.common import quiet_logs
from bench.delivery_setup import bench_settings, settled
from bridge.app import Services
from bridge.store.redis import connect

READY, GO, STOP, CPU = "bench:ready", "bench:go", "bench:stop", "bench:cpu"


async def main(url: str) -> None:
    quiet_logs()
    settings = bench_settings(url)
    redis = connect(settings)
    services = Services.build(settings, redis=redis)
    settled()
    signals = aioredis.Redis.from_url(url, socket_timeout=None)  # it waits for the signals
    await signals.incr(READY)
    await signals.blpop([GO], timeout=0)
    cpu = time.process_time()
    await services.worker.start()
    await signals.blpop([STOP], timeout=0)
    cpu = time.process_time() - cpu
    await services.worker.stop()
    await services.d6.aclose()
    await signals.incrbyfloat(CPU, cpu)
    await signals.aclose()
    await redis.aclose()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1]))
