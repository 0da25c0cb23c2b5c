"""What an answer means: when to try again (the retry schedule with jitter, `Retry-After` on 429 and 503),
and when the endpoint is gone for good (410)."""

from __future__ import annotations

import random
import time
from email.utils import parsedate_to_datetime

from bridge.delivery.models import AttemptResult

JITTER = 0.2
GONE_REASON = "the endpoint answered 410 Gone"


def gone(result: AttemptResult) -> bool:
    """410 Gone disables the subscription at once, for a queued delivery and a test send alike
    (docs/delivery.md, docs/api.md); a queued delivery stays queued (its outcome is `hold`)."""
    return result.status_code == 410


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds to wait from a `Retry-After` header (delta seconds or an HTTP date); None if unusable."""
    if value is None:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def next_delay(
    result: AttemptResult, attempt: int, schedule: tuple[float, ...], rng: random.Random
) -> float | None:
    """Seconds until the next attempt after failed attempt number `attempt` (1-based); None = dead."""
    if attempt > len(schedule):
        return None
    scheduled = schedule[attempt - 1]
    if result.status_code in (429, 503) and result.retry_after is not None:
        return min(result.retry_after, scheduled * 2)
    return scheduled * rng.uniform(1 - JITTER, 1 + JITTER)
