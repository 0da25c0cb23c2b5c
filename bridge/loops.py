"""The loop of a background worker (the hand-off, the delivery worker, the serve process' maintenance).

Each runs one step after another until it stops: a step that cannot reach Redis (or the network) is logged
as a warning and retried, any other failure is logged with its traceback and retried too, so one bad step
never ends the worker; after each step the worker idles as it needs (a fixed pause, or until woken).
saq's `Worker.upkeep` has the same shape (`poll(func, sleep)`).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, Final, TypeVar

import structlog

from bridge.errors import UNREACHABLE

log = structlog.get_logger(__name__)

T = TypeVar("T")

RECANCEL_SECONDS: Final = 1.0


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
        except UNREACHABLE as error:
            log.warning(failed, error=f"{type(error).__name__}: {error}")
            if backoff:
                await asyncio.sleep(backoff)
        except Exception:
            log.exception(crashed)
            if backoff:
                await asyncio.sleep(backoff)
        await idle(result)


async def cancelled(*tasks: asyncio.Task[Any]) -> None:
    """Cancel `tasks` and wait until every one has ended.

    One cancellation is not always the end of a task on Python 3.11. One landing inside a redis-py command
    can come back out as the command's `TimeoutError`, which a loop takes for a failed step and retries.
    And redis-py sends each command under `asyncio.wait_for`, which returns the send's result instead of
    raising when the cancellation comes as the send completes (fixed in 3.12): the store's own connections
    send otherwise (bridge/store/redis.py `_Sending`), but a client made elsewhere loses most
    cancellations of a task busy with it. So a task still running after `RECANCEL_SECONDS` is cancelled
    again."""
    pending = {task for task in tasks if not task.done()}
    while pending:
        for task in pending:
            task.cancel()
        _, pending = await asyncio.wait(pending, timeout=RECANCEL_SECONDS)
    for task in tasks:  # what they raised is theirs to log; retrieving it keeps asyncio from warning
        if not task.cancelled():
            task.exception()


class Background:
    """The one background task of a part (the hand-off, the command runner, the resync loop, the pull feed's
    wake-up listener): started once, woken early when there is work, and stopped for good.

    The task's loop checks `stopping` between steps as well as being cancelled (see `cancelled`)."""

    def __init__(self, name: str, run: Callable[[], Coroutine[Any, Any, None]]) -> None:
        self.name = name
        self._run = run
        self._task: asyncio.Task[None] | None = None
        self._woken = asyncio.Event()
        self.stopping = False

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    def go_on(self) -> bool:
        """Whether the loop should take another step."""
        return not self.stopping

    def start(self) -> None:
        if not self.running:
            self.stopping = False
            self._task = asyncio.create_task(self._run(), name=self.name)

    def wake(self) -> None:
        """There is work: end the current `idle` at once (or the next one, when the loop is mid-step)."""
        self._woken.set()

    async def idle(self, seconds: float) -> None:
        """Until woken or `seconds` have passed."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._woken.wait(), seconds)
        self._woken.clear()

    async def stop(self) -> None:
        self.stopping = True
        self._woken.set()
        if self._task is not None:
            await cancelled(self._task)
            self._task = None
