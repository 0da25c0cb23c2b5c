"""Webhook receivers for the suites: real HTTP servers in the suite's process that misbehave on purpose.

Each receiver is a raw ASGI app under uvicorn in a thread of its own. It records every POST (event id,
school, sequence, when, what it answered), verifies the Standard Webhooks signature with the
`standardwebhooks` package, and answers according to its `Behaviour`: 200, a random 500, or a stall
longer than the bridge's delivery timeout (the bridge gives up; the receiver answers 200 too late).
`heal()` makes it answer 200 from then on, so a suite can let everything settle.
"""

from __future__ import annotations

import asyncio
import random
import threading
import time
from dataclasses import dataclass
from typing import Any

import msgspec
from standardwebhooks.webhooks import Webhook

from tests.servers import ThreadedServer, answer_lifespan, read_body


@dataclass(frozen=True)
class Behaviour:
    fail_rate: float = 0.0
    """This fraction of requests answers 500."""
    stall_rate: float = 0.0
    """This fraction of requests waits `stall_seconds` before answering 200 (too late for the bridge)."""
    stall_seconds: float = 0.0

    def describe(self) -> str:
        parts = []
        if self.fail_rate:
            parts.append(f"{self.fail_rate:.0%} answer 500")
        if self.stall_rate:
            parts.append(f"{self.stall_rate:.0%} stall {self.stall_seconds:g} s")
        return ", ".join(parts) or "always 200"


@dataclass(frozen=True)
class Receipt:
    event_id: str
    event_type: str
    school_id: int
    sequence: int
    at: float
    status: int
    stalled: bool
    verified: bool
    aborted: bool = False
    """The sender went away before the whole body arrived (a replica killed mid-request)."""
    problem: str = ""

    @property
    def ok(self) -> bool:
        """Did the bridge see a success? A stalled answer came after its timeout."""
        return 200 <= self.status < 300 and not self.stalled


class Receiver:
    """Raw ASGI app that records and answers webhooks."""

    def __init__(self, name: str, behaviour: Behaviour, seed: int = 0) -> None:
        self.name = name
        self.behaviour = behaviour
        self.secret: str | None = None
        self.receipts: list[Receipt] = []
        self._rng = random.Random(seed)
        self._lock = threading.Lock()

    def heal(self) -> None:
        self.behaviour = Behaviour()

    def snapshot(self) -> list[Receipt]:
        with self._lock:
            return list(self.receipts)

    def _verify(self, headers: dict[str, str], body: bytes) -> str:
        """Why the signature does not verify ("" when it does)."""
        if self.secret is None:
            return "no secret yet"
        try:
            Webhook(self.secret).verify(body, headers)
        except Exception as error:
            return f"{type(error).__name__}: {error}"
        return ""

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if await answer_lifespan(scope, receive, send):
            return
        body = await read_body(receive)
        if body is None:
            with self._lock:
                self.receipts.append(Receipt("", "aborted", 0, 0, time.time(), 0, False, False, True))
            return
        headers = {k.decode().lower(): v.decode() for k, v in scope["headers"]}
        with self._lock:
            roll = self._rng.random()
        behaviour = self.behaviour
        status, delay = 200, 0.0
        if roll < behaviour.fail_rate:
            status = 500
        elif roll < behaviour.fail_rate + behaviour.stall_rate:
            delay = behaviour.stall_seconds
        problem = self._verify(headers, body)
        try:
            envelope = msgspec.json.decode(body)
            receipt = Receipt(
                event_id=headers.get("webhook-id", ""),
                event_type=str(envelope.get("type")),
                school_id=int(envelope.get("school_id") or 0),
                sequence=int(envelope.get("sequence") or 0),
                at=time.time(),
                status=status,
                stalled=delay > 0,
                verified=not problem,
                problem=problem,
            )
        except (msgspec.DecodeError, AttributeError, TypeError, ValueError) as error:
            receipt = Receipt("", "unreadable", 0, 0, time.time(), 400, False, False, problem=repr(error))
            status = 400
        with self._lock:
            self.receipts.append(receipt)
        if delay:
            await asyncio.sleep(delay)
        await send({"type": "http.response.start", "status": status, "headers": []})
        await send({"type": "http.response.body", "body": b"ok" if status == 200 else b"no"})


class ReceiverServer:
    """A `Receiver` served by uvicorn in a daemon thread on a free loopback port."""

    def __init__(self, receiver: Receiver) -> None:
        self.receiver = receiver
        self._server = ThreadedServer(receiver)
        self.port = self._server.port

    @property
    def url(self) -> str:
        return f"{self._server.url}/hooks/{self.receiver.name}"

    def start(self) -> None:
        self._server.__enter__()

    def stop(self) -> None:
        self._server.__exit__()
