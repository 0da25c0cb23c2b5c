"""A poller that never stops: commits large diffs of one school in a loop, for the kill test.

    python -m tests.sync.killer REDIS_URL SCHOOL_ID SEED

Each round reads the stored records, mutates them (updates, removals, creations, now and then a mass
removal that the hold-back keeps), diffs, commits every event (created ones too, so the event stream alone
rebuilds the snapshot) and sometimes publishes. The test kills it with SIGKILL at random instants.
"""

from __future__ import annotations

import asyncio
import os
import random
import sys
from typing import Any

import redis.asyncio as aioredis

from bridge.events.outbox import Outbox
from bridge.store.keys import Keys
from bridge.store.scripts import Scripts
from bridge.sync.lease import Lease
from bridge.sync.snapshot import SnapshotStore
from tests.sync.helpers import poll

KEYS = Keys("d6b")
SIZE = 1500


def mutate(current: dict[str, dict[str, Any]], rng: random.Random) -> list[dict[str, Any]]:
    if not current:
        return [{"learner_id": i, "first_name": f"L{i}", "grade": "1"} for i in range(SIZE)]
    records = list(current.values())
    if rng.random() < 0.05:
        return records[: len(records) // 3]  # a mass removal: held back, then confirmed or not
    out = []
    for record in records:
        roll = rng.random()
        if roll < 0.05:
            continue
        if roll < 0.25:
            record = {**record, "grade": str(rng.randint(1, 12))}
            if rng.random() < 0.3:
                record["note"] = rng.choice(["a", "b", None])
            elif "note" in record:
                del record["note"]
        out.append(record)
    top = max(int(k) for k in current) + 1
    out += [{"learner_id": top + i, "first_name": "new", "grade": "1"} for i in range(rng.randint(0, 150))]
    rng.shuffle(out)
    return out


async def main(url: str, school_id: int, seed: int) -> None:
    redis = aioredis.Redis.from_url(url)
    scripts = Scripts(redis)
    store, lease, outbox = (
        SnapshotStore(redis, KEYS, scripts),
        Lease(redis, KEYS, scripts),
        Outbox(redis, KEYS, scripts),
    )
    token = None
    while token is None:
        token = await lease.acquire(school_id, f"killer-{os.getpid()}", 5)
        if token is None:
            await asyncio.sleep(0.01)
    rng = random.Random(seed)
    print("ready", flush=True)
    while True:
        current = await store.all_records(school_id, "learner")
        await poll(store, school_id, mutate(current, rng), token=token)
        if not await lease.renew(school_id, token, 5):
            raise SystemExit("lost the lease")
        if rng.random() < 0.5:
            await outbox.publish(school_id)
        print("round", flush=True)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3])))
