"""From a diff to the events the catalogue names (docs/events.md#catalogue).

Learners and debtors map one to one: created / updated / removed. Client integrations speak their own
language: a new pair is `integration.authorised`, a change of `activated_by_integrator` is
`integration.activated` or `.deactivated`, a pair that disappeared is `integration.revoked`; other field
changes of an integration update the snapshot silently.
"""

from __future__ import annotations

import time
from typing import Any, Final

from bridge.catalogue import BY_PREFIX, INTEGRATION
from bridge.d6.records import integration_key
from bridge.events.envelope import Event, new_event
from bridge.sync.diff import DiffResult

ACTIVATED_FIELD: Final = "activated_by_integrator"


def record_events(
    result: DiffResult,
    *,
    school_id: int,
    resource: str,
    emit_created: bool = True,
    now: float | None = None,
) -> list[Event]:
    """Events for a learner or debtor diff, in the order created, updated, removed.

    `emit_created=False` is the silent baseline of a school's first poll (BRIDGE_EMIT_INITIAL_SNAPSHOT).
    """
    if resource not in BY_PREFIX:
        raise ValueError(f"record events are for {', '.join(BY_PREFIX)}, not {resource!r}")
    at = time.time() if now is None else now
    common: dict[str, Any] = {"school_id": school_id, "resource": resource, "now": at}
    events = []
    if emit_created:
        events += [
            new_event(f"{resource}.created", resource_id=c.id, data=c.record, **common)
            for c in result.created
        ]
    if "updated" in BY_PREFIX[resource].kinds:  # else a change of data only updates the snapshot
        events += [
            new_event(f"{resource}.updated", resource_id=c.id, data=c.record, changes=c.changes, **common)
            for c in result.updated
        ]
    events += [
        new_event(f"{resource}.removed", resource_id=c.id, data=c.record, **common) for c in result.removed
    ]
    return events


def integration_events(
    result: DiffResult, *, school_id: int, emit_created: bool = True, now: float | None = None
) -> list[Event]:
    """Events for one school's client-integration pairs (resource ids "school:api_type")."""
    at = time.time() if now is None else now
    common: dict[str, Any] = {"school_id": school_id, "resource": INTEGRATION, "now": at}
    events = []
    if emit_created:
        events += [
            new_event("integration.authorised", resource_id=c.id, data=c.record, **common)
            for c in result.created
        ]
    for change in result.updated:
        activation = (change.changes or {}).get(ACTIVATED_FIELD)
        if activation is None:
            continue
        was, now_on = is_yes(activation.old), is_yes(activation.new)
        if now_on and not was:
            events.append(
                new_event("integration.activated", resource_id=change.id, data=change.record, **common)
            )
        elif was and not now_on:
            events.append(
                new_event("integration.deactivated", resource_id=change.id, data=change.record, **common)
            )
    events += [
        new_event("integration.revoked", resource_id=c.id, data=c.record, **common) for c in result.removed
    ]
    return events


def integration_id(record: dict[str, Any]) -> str:
    """The resource id of a client integration: "school_id:api_type_id" (a key function for diffs)."""
    school, api_type = integration_key(record)  # raises D6MalformedResponse on a pair without ids
    return f"{school}:{api_type}"


def is_yes(value: Any) -> bool:
    """d6's "Yes"/"No" flags (`activated_by_integrator`), read leniently."""
    return isinstance(value, str) and value.strip().lower() == "yes"


def is_active(record: dict[str, Any]) -> bool:
    """Whether a client integration is activated by the integrator."""
    return is_yes(record.get(ACTIVATED_FIELD))
