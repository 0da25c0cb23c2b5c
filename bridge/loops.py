"""The loop of a background worker (the hand-off, the delivery worker, the serve process' maintenance).

Each runs one step after another until it stops: a step that cannot reach Redis (or the network) is logged
as a warning and retried, any other failure is logged with its traceback and retried too, so one bad step
never ends the worker; after each step the worker idles as it needs (a fixed pause, or until woken).
saq's `Worker.upkeep` has the same shape (`poll(func, sleep)`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

import structlog
from redis.exceptions import RedisError

log = structlog.get_logger(__name__)

T = TypeVar("T")


def _always() -> bool:
    return True


async def poll(
    step: Callable[[], Awaitable[T]],
    idle: Callable[[T | None], Awaitable[None]],
    *,
    failed: str,
    crashed: str,
    backoff: float = 1.0,
    running: Callable[[], bool] = _always,
) -> None:
    """Run `step` while `running()`, then `idle` with its result (None when it failed).

    A failed step logs `failed` (a warning naming the error) for Redis and network errors, `crashed`
    (with the traceback) for anything else, then waits `backoff` seconds (none when 0) before idling."""
    while running():
        result: T | None = None
        try:
            result = await step()
        except (RedisError, OSError) as error:
            log.warning(failed, error=f"{type(error).__name__}: {error}")
            if backoff:
                await asyncio.sleep(backoff)
        except Exception:
            log.exception(crashed)
            if backoff:
                await asyncio.sleep(backoff)
        await idle(result)
