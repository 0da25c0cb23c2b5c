"""Outgoing events made up for delivery tests, and the event log's `EventSource` over a list."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

import msgspec

from bridge.delivery.models import OutgoingEvent
from bridge.events.ids import new_event_id


def make_event(
    school_id: int, sequence: int, event_type: str = "learner.updated", at: float | None = None
) -> OutgoingEvent:
    """One event with a real id for `at` (now by default) and a small envelope as its body."""
    moment = time.time() if at is None else at
    event_id = new_event_id(moment)
    envelope = {
        "id": event_id,
        "type": event_type,
        "timestamp": "2026-11-22T11:02:03.123456Z",
        "school_id": school_id,
        "sequence": sequence,
        "resource": event_type.split(".")[0],
        "resource_id": str(sequence),
        "data": {"learner_id": sequence},
    }
    return OutgoingEvent(
        event_id=event_id,
        school_id=school_id,
        event_type=event_type,
        sequence=sequence,
        timestamp=moment,
        body=msgspec.json.encode(envelope),
    )


def make_events(
    school_id: int, count: int, event_type: str = "learner.updated", start: int = 1
) -> list[OutgoingEvent]:
    """`count` events of one school, sequences `start`, `start + 1`, ..."""
    return [make_event(school_id, start + i, event_type) for i in range(count)]


class MemoryEventSource:
    """The `EventSource` protocol over a list, as the event log would answer it."""

    def __init__(self, events: list[OutgoingEvent] | None = None) -> None:
        self.events = list(events or [])

    async def get(self, event_id: str) -> OutgoingEvent | None:
        return next((e for e in self.events if e.event_id == event_id), None)

    async def window(self, since: float, until: float | None) -> AsyncIterator[OutgoingEvent]:
        for event in sorted(self.events, key=lambda e: e.event_id):
            if event.timestamp >= since and (until is None or event.timestamp <= until):
                yield event
