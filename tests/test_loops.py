"""The background workers' loop (bridge/loops.py): a failed step is logged and retried, never the end."""

from __future__ import annotations

from redis.exceptions import ConnectionError as RedisConnectionError
from structlog.testing import capture_logs

from bridge.loops import poll


async def test_a_failed_step_is_logged_and_the_loop_goes_on() -> None:
    outcomes: list[int | None] = []
    steps = iter([RedisConnectionError("down"), ValueError("a bug"), 3])

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
            running=lambda: len(outcomes) < 3,
        )
    assert outcomes == [None, None, 3]
    assert [(entry["event"], entry["log_level"]) for entry in logs] == [
        ("step failed", "warning"),
        ("step crashed", "error"),
    ]
    assert logs[0]["error"] == "ConnectionError: down"
    assert logs[1]["exc_info"] is True
