"""The arq baseline's producer: one arq job per delivery, queued before the worker starts (not timed).

`python -m bench.arq.enqueue REDIS_URL EVENTS_FILE RECEIVER_URL SECRET` in `.venv-arq`. EVENTS_FILE has
one JSON object per line: `{"id": ..., "school_id": ..., "body": <the envelope as text>}`, the very
envelopes the bridge delivered. The job id is the event id, as a team would do to queue each event
once. Jobs are queued 200 at a time side by side; prints how many and how long it took.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from typing import Any

from arq import create_pool
from arq.connections import RedisSettings

BATCH = 200


def load(path: str) -> list[dict[str, Any]]:
    with open(path, encoding="utf-8") as lines:
        return [json.loads(line) for line in lines]


async def main(redis_url: str, events: list[dict[str, Any]], url: str, secret: str) -> None:
    pool = await create_pool(RedisSettings.from_dsn(redis_url))
    started = time.perf_counter()
    for start in range(0, len(events), BATCH):
        await asyncio.gather(
            *(
                pool.enqueue_job(
                    "deliver", e["id"], e["school_id"], e["body"].encode(), url, secret, _job_id=e["id"]
                )
                for e in events[start : start + BATCH]
            )
        )
    print(f"queued {len(events)} arq jobs in {time.perf_counter() - started:.1f} s")
    await pool.aclose()


if __name__ == "__main__":
    redis_url, path, url, secret = sys.argv[1:5]
    asyncio.run(main(redis_url, load(path), url, secret))
