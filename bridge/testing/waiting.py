"""Poll until a check holds: `wait_for` in an event loop, `wait_until` in a thread that may block."""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable
from typing import Any

Check = Callable[[], Any | Awaitable[Any]]


async def wait_for(
    check: Check,
    timeout: float = 20.0,  # noqa: ASYNC109 - a deadline for polling, not for one call
    *,
    interval: float = 0.02,
    what: str = "",
) -> Any:
    """Call `check` (plain or async) every `interval` until it returns something truthy; return that.

    Raises AssertionError after `timeout` seconds, so a test fails with what it was waiting for.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if inspect.isawaitable(value):
            value = await value
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what or check}")
        await asyncio.sleep(interval)


def wait_until(
    check: Callable[[], Any], timeout: float = 20.0, *, interval: float = 0.1, what: str = ""
) -> Any:
    """`wait_for` for code outside an event loop (a browser driver, a process supervisor)."""
    deadline = time.monotonic() + timeout
    while not (value := check()):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what or check}")
        time.sleep(interval)
    return value
