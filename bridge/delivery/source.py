"""The event log as the worker and the delivery service read it (`EventSource`): bodies cut again,
replays, redeliveries.

A replay leaves out erased events (their envelope carries `{"erased": true}` and nothing to send); a
redelivery of one is refused by `DeliveryService.redeliver`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Final

from bridge.delivery.models import OutgoingEvent
from bridge.events.envelope import decode_event
from bridge.events.log import EventLog, is_erased

PAGE: Final = 500
"""Events of a window read at once: a window is never held whole, however long."""


def to_outgoing(body: bytes) -> OutgoingEvent:
    event = decode_event(body)
    return OutgoingEvent.of(event.id, event.school_id, event.type, event.sequence, body)


class LogEventSource:
    def __init__(self, log: EventLog) -> None:
        self.log = log

    async def get(self, event_id: str) -> OutgoingEvent | None:
        bodies = await self.log.raw([event_id])
        return to_outgoing(bodies[0]) if bodies else None

    async def window(self, since: float, until: float | None) -> AsyncIterator[OutgoingEvent]:
        """Every event of the window, oldest first (so each school's events come in sequence order), read
        `PAGE` at a time."""
        after: str | None = None
        while True:
            ids = await self.log.ids(since, until, after=after, limit=PAGE)
            for body in await self.log.raw(ids):
                event = decode_event(body)
                if not is_erased(event):
                    yield OutgoingEvent.of(event.id, event.school_id, event.type, event.sequence, body)
            if len(ids) < PAGE:
                return
            after = ids[-1]
