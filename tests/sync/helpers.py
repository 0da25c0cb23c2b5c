"""One poll's storage side, as the poller does it: load -> diff -> events -> commit."""

from __future__ import annotations

from typing import Any

from bridge.sync.diff import finish_diff, plan_diff
from bridge.sync.events import record_events
from bridge.sync.snapshot import CommitResult, SnapshotStore


async def poll(
    store: SnapshotStore,
    school_id: int,
    records: list[dict[str, Any]],
    *,
    token: int | None,
    resource: str = "learner",
    emit_created: bool = True,
) -> CommitResult:
    previous = await store.load(school_id, resource)
    plan = plan_diff(
        previous, records, f"{resource}_id" if resource == "learner" else "accountable_person_id"
    )
    result = finish_diff(plan, await store.records(school_id, resource, plan.need_old))
    events = record_events(result, school_id=school_id, resource=resource, emit_created=emit_created)
    return await store.commit(school_id, resource, result, events, token=token)
