"""A recording webhook receiver, a memory event log, and small builders for delivery tests."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import msgspec

from bridge.delivery.ids import new_event_id
from bridge.delivery.models import OutgoingEvent
from tests.servers import answer_lifespan, read_body


@dataclass
class Received:
    headers: dict[str, str]
    body: bytes
    at: float

    @property
    def event_id(self) -> str:
        return self.headers["webhook-id"]

    @property
    def json(self) -> Any:
        return msgspec.json.decode(self.body)


@dataclass
class Answer:
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b"ok"
    delay: float = 0.0


Script = Callable[[Received, int], Answer]


class Receiver:
    """Raw ASGI app: records every POST and answers what `script(request, n)` says (n counts from 1)."""

    def __init__(self, script: Script | None = None) -> None:
        self.script: Script = script or (lambda _r, _n: Answer())
        self.received: list[Received] = []
        self._lock = threading.Lock()

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if await answer_lifespan(scope, receive, send):
            return
        body = await read_body(receive)
        if body is None:
            return
        headers = {k.decode().lower(): v.decode() for k, v in scope["headers"]}
        request = Received(headers=headers, body=body, at=time.time())
        with self._lock:
            self.received.append(request)
            number = len(self.received)
        answer = self.script(request, number)
        if answer.delay:
            await asyncio.sleep(answer.delay)
        await send(
            {
                "type": "http.response.start",
                "status": answer.status,
                "headers": [(k.encode(), v.encode()) for k, v in answer.headers.items()],
            }
        )
        await send({"type": "http.response.body", "body": answer.body})

    def ids(self) -> list[str]:
        with self._lock:
            return [r.event_id for r in self.received]

    def bodies(self) -> list[Any]:
        with self._lock:
            return [r.json for r in self.received]


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


def make_event(
    school_id: int, sequence: int, event_type: str = "learner.updated", at: float | None = None
) -> OutgoingEvent:
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
    return [make_event(school_id, start + i, event_type) for i in range(count)]


async def wait_for(
    check: Callable[[], bool | Awaitable[bool]],
    timeout: float = 10.0,  # noqa: ASYNC109 - a deadline for polling, not for one call
    what: str = "condition",
) -> None:
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if not isinstance(result, bool):
            result = await result
        if result:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(0.02)
