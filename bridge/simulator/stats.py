"""What d6 received: counters and a bounded request log, so tests assert on the requests a client made.

Only requests under `/api` are recorded; the `/_sim/` controls never count.
"""

from __future__ import annotations

from collections import Counter, deque
from typing import Any

import msgspec

LOG_SIZE = 100_000


class RequestEntry(msgspec.Struct, kw_only=True):
    t: float
    method: str
    path: str
    query: dict[str, str]
    school_id: int | None
    status: int


class RequestStats:
    """Totals by endpoint, status and school, plus the last `LOG_SIZE` requests in arrival order."""

    def __init__(self) -> None:
        self.total = 0
        self.by_endpoint: Counter[str] = Counter()
        self.by_status: Counter[str] = Counter()
        self.by_school: Counter[str] = Counter()
        self.log: deque[RequestEntry] = deque(maxlen=LOG_SIZE)

    def record(self, endpoint: str, entry: RequestEntry) -> None:
        self.total += 1
        self.by_endpoint[endpoint] += 1
        self.by_status[str(entry.status)] += 1
        if entry.school_id is not None:
            self.by_school[str(entry.school_id)] += 1
        self.log.append(entry)

    def reset(self) -> None:
        self.total = 0
        self.by_endpoint.clear()
        self.by_status.clear()
        self.by_school.clear()
        self.log.clear()

    def summary(self) -> dict[str, Any]:
        return {
            "total": self.total,
            "by_endpoint": dict(self.by_endpoint),
            "by_status": dict(self.by_status),
            "by_school": dict(self.by_school),
        }

    def requests(self) -> dict[str, Any]:
        return {"requests": list(self.log)}
