"""When every change happened: the simulator's own record, so a benchmark measures detection lag exactly.

Each change made in d6 (by the churn or by a `/_sim/` control) is one entry: the school, the bridge's
resource name, the record's key, created/updated/removed, and the time it happened (Unix seconds).
Seeding a school is its baseline, not a change. The log keeps the last `LOG_SIZE` entries.
"""

from __future__ import annotations

import time
from collections import deque
from typing import Any, Literal

import msgspec

LOG_SIZE = 200_000

Resource = Literal["debtors", "learners", "balances", "promises", "notes", "transactions"]
Kind = Literal["created", "updated", "removed"]
RESOURCES: tuple[str, ...] = ("debtors", "learners", "balances", "promises", "notes", "transactions")


class Change(msgspec.Struct, kw_only=True, omit_defaults=True):
    t: float
    school_id: int
    resource: str
    key: str
    kind: str
    identity: dict[str, Any] | None = None
    """Transactions only: the fields a client identifies a transaction by (d6 publishes no id)."""


class ChangeLog:
    """A bounded, time-ordered log; `recorded` counts every entry since the last reset, kept or not."""

    def __init__(self, size: int = LOG_SIZE) -> None:
        self.entries: deque[Change] = deque(maxlen=size)
        self.recorded = 0

    def record(
        self,
        school_id: int,
        resource: Resource,
        key: int | str,
        kind: Kind,
        identity: dict[str, Any] | None = None,
    ) -> None:
        self.recorded += 1
        self.entries.append(
            Change(
                t=time.time(),
                school_id=school_id,
                resource=resource,
                key=str(key),
                kind=kind,
                identity=identity,
            )
        )

    def reset(self) -> None:
        self.entries.clear()
        self.recorded = 0

    def since(
        self, since: float | None = None, school_id: int | None = None, resource: str | None = None
    ) -> list[Change]:
        """Entries after `since` (strictly), oldest first; walking back from the newest keeps a recent
        window cheap."""
        found: list[Change] = []
        for entry in reversed(self.entries):
            if since is not None and entry.t <= since:
                break
            if (school_id is None or entry.school_id == school_id) and (
                resource is None or entry.resource == resource
            ):
                found.append(entry)
        found.reverse()
        return found
