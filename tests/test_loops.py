"""The background workers' loop (bridge/loops.py): a failed step is logged and retried, never the end."""

from __future__ import annotations

import asyncio

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from structlog.testing import capture_logs

from bridge.errors import StoreError
from bridge.loops import Background, poll


async def test_a_failed_step_is_logged_and_the_loop_goes_on() -> None:
    outcomes: list[int | None] = []
    steps = iter(
        [RedisConnectionError("down"), StoreError("d6 request budget unavailable"), ValueError("a bug"), 3]
    )

    async def step() -> int:
        item = next(steps)
        if isinstance(item, Exception):
            raise item
        return item

    async def idle(result: int | None) -> None:
        outcomes.append(result)

    with capture_logs() as logs:
        await poll(
            step,
            idle,
            failed="step failed",
            crashed="step crashed",
            backoff=0,
            running=lambda: len(outcomes) < 4,
        )
    assert outcomes == [None, None, None, 3]
    assert [(entry["event"], entry["log_level"]) for entry in logs] == [
        ("step failed", "warning"),
        ("step failed", "warning"),  # the d6 request budget's wrapped Redis error: no traceback either
        ("step crashed", "error"),
    ]
    assert logs[0]["error"] == "ConnectionError: down"
    assert logs[1]["error"] == "StoreError: d6 request budget unavailable"
    assert logs[2]["exc_info"] is True


async def test_a_loop_that_takes_its_cancellation_for_a_failed_step_is_still_stopped() -> None:
    """On Python 3.11 a cancellation landing in a redis-py command can come out as its TimeoutError; the
    loop retries it like any failed step. `stop` still ends the loop, and `wake` ends an idle early."""
    swallowed: list[str] = []

    async def step() -> None:
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            if not swallowed:  # the first cancellation comes back as the command's error
                swallowed.append("once")
                raise RedisTimeoutError("Timeout reading from redis") from None
            raise

    async def run() -> None:
        await poll(step, lambda _: background.idle(30), failed="f", crashed="c", backoff=0)

    background = Background("a-loop", run)
    background.start()
    await asyncio.sleep(0)
    assert background.running
    async with asyncio.timeout(10):
        await background.stop()
    assert swallowed == ["once"] and not background.running


async def test_wake_ends_an_idle_at_once() -> None:
    steps: list[float] = []
    second = asyncio.Event()

    async def run() -> None:
        await poll(take, lambda _: background.idle(30), failed="f", crashed="c", running=background.go_on)

    async def take() -> None:
        steps.append(asyncio.get_running_loop().time())
        if len(steps) == 2:
            second.set()

    background = Background("a-loop", run)
    background.start()
    await asyncio.sleep(0.05)
    background.wake()
    async with asyncio.timeout(5):
        await second.wait()
    assert steps[1] - steps[0] < 1.0
    await background.stop()
