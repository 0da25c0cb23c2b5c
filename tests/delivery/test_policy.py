from __future__ import annotations

import random
from email.utils import formatdate

from bridge.delivery.models import AttemptResult
from bridge.delivery.policy import next_delay, parse_retry_after

SCHEDULE = (5.0, 300.0)


def test_retry_after_seconds_and_dates() -> None:
    now = 1_800_000_000.0
    assert parse_retry_after("120", now=now) == 120.0
    assert parse_retry_after(formatdate(now + 90, usegmt=True), now=now) == 90.0
    assert parse_retry_after(formatdate(now - 90, usegmt=True), now=now) == 0.0
    assert parse_retry_after("soon", now=now) is None
    assert parse_retry_after(None) is None


def test_schedule_with_jitter_and_dead_after_last() -> None:
    rng = random.Random(1)
    failed = AttemptResult(status_code=500, duration_ms=1.0)
    delays = [next_delay(failed, 1, SCHEDULE, rng) for _ in range(200)]
    assert all(d is not None and 4.0 <= d <= 6.0 for d in delays)
    assert len({round(d or 0, 3) for d in delays}) > 50  # actually jittered
    assert next_delay(failed, 3, SCHEDULE, rng) is None


def test_retry_after_only_for_429_and_503_and_capped() -> None:
    rng = random.Random(1)
    limited = AttemptResult(status_code=429, duration_ms=1.0, retry_after=7.0)
    assert next_delay(limited, 1, SCHEDULE, rng) == 7.0
    huge = AttemptResult(status_code=503, duration_ms=1.0, retry_after=86_400.0)
    assert next_delay(huge, 2, SCHEDULE, rng) == 600.0
    other = AttemptResult(status_code=500, duration_ms=1.0, retry_after=7.0)
    delay = next_delay(other, 1, SCHEDULE, rng)
    assert delay is not None and 4.0 <= delay <= 6.0
