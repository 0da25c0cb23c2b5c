"""Webhook receivers: real HTTP endpoints on loopback that record what arrives and answer on cue.

A `Receiver` is a raw ASGI app (no framework between the bridge and what is recorded), served by
uvicorn in a thread (`ReceiverServer`). It records every request as a `Received` and answers what its
script says for the n-th complete request: by default 200 at once; a test's own lambda; or a
`Behaviour` that answers 500 or stalls past the sender's timeout for a seeded share of requests, as the
suites' flaky subscribers do. With `verify=True` it checks each Standard Webhooks signature against
`secret` with the `standardwebhooks` package. A request whose sender went away before the end of the
body is kept too, flagged `aborted` (suites count them), but not numbered nor listed in `received`.

For throughput benchmarks, where even this costs too much, see `bridge.testing.receiver_process`.
"""

from __future__ import annotations

import asyncio
import functools
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import msgspec

from bridge.testing.servers import ThreadedServer


@dataclass
class Answer:
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b"ok"
    delay: float = 0.0
    late: bool = False
    """The answer comes after the sender's timeout (a stall): the sender sees no success."""


@dataclass
class Received:
    """One request as the receiver saw it, and what it answered."""

    headers: dict[str, str]
    body: bytes
    at: float
    status: int = 0
    """The status answered (0 until the script has chosen, and for an aborted request)."""
    late: bool = False
    problem: str | None = None
    """Why the signature does not verify: "" when it does, None when it was not checked."""
    aborted: bool = False
    """The sender went away before the whole body arrived (a replica killed mid-request)."""

    @property
    def event_id(self) -> str:
        return self.headers.get("webhook-id", "")

    @property
    def json(self) -> Any:
        return msgspec.json.decode(self.body)

    @property
    def ok(self) -> bool:
        """Did the sender see a success? A late answer came after its timeout."""
        return 200 <= self.status < 300 and not self.late

    @property
    def verified(self) -> bool:
        return self.problem == ""

    @functools.cached_property
    def _envelope(self) -> tuple[str, int, int] | None:
        """(type, school_id, sequence) of the event in the body; None when the body is no envelope."""
        if self.aborted:
            return None
        try:
            envelope = msgspec.json.decode(self.body)
            return (
                str(envelope.get("type")),
                int(envelope.get("school_id") or 0),
                int(envelope.get("sequence") or 0),
            )
        except (msgspec.DecodeError, AttributeError, TypeError, ValueError):
            return None

    @property
    def readable(self) -> bool:
        return self._envelope is not None

    @property
    def event_type(self) -> str:
        if self._envelope is None:
            return "aborted" if self.aborted else "unreadable"
        return self._envelope[0]

    @property
    def school_id(self) -> int:
        return self._envelope[1] if self._envelope else 0

    @property
    def sequence(self) -> int:
        return self._envelope[2] if self._envelope else 0

    def summary(self) -> dict[str, Any]:
        """What a suite writes down about the request (JSON-ready: no headers, no body)."""
        return {
            "event_id": self.event_id,
            "event_type": self.event_type,
            "school_id": self.school_id,
            "sequence": self.sequence,
            "at": self.at,
            "status": self.status,
            "late": self.late,
            "verified": self.verified,
            "aborted": self.aborted,
            "problem": self.problem,
        }


Script = Callable[[Received, int], Answer]


def always_ok(_request: Received, _number: int) -> Answer:
    return Answer()


@dataclass(frozen=True)
class Behaviour:
    """A subscriber that misbehaves at random: `script(seed)` answers for a `Receiver`."""

    fail_rate: float = 0.0
    """This fraction of requests answers 500."""
    stall_rate: float = 0.0
    """This fraction of requests waits `stall_seconds` before answering 200 (too late for the bridge)."""
    stall_seconds: float = 0.0

    def script(self, seed: int = 0) -> Script:
        rng = random.Random(seed)

        def answer(request: Received, _number: int) -> Answer:
            roll = rng.random()
            if not request.readable:
                return Answer(400, body=b"no")
            if roll < self.fail_rate:
                return Answer(500, body=b"no")
            if roll < self.fail_rate + self.stall_rate:
                return Answer(delay=self.stall_seconds, late=True)
            return Answer()

        return answer


def verify_signature(secret: str | None, headers: dict[str, str], body: bytes) -> str:
    """Why the Standard Webhooks signature of `body` does not verify ("" when it does)."""
    from standardwebhooks.webhooks import Webhook

    if secret is None:
        return "no secret yet"
    try:
        Webhook(secret).verify(body, headers)
    except Exception as error:
        return f"{type(error).__name__}: {error}"
    return ""


class Receiver:
    """Raw ASGI app: records every POST and answers what `script(request, n)` says (n counts from 1)."""

    def __init__(self, script: Script | None = None, *, name: str = "hook", verify: bool = False) -> None:
        self.name = name
        self.script: Script = script or always_ok
        self.verify = verify
        self.secret: str | None = None
        self._requests: list[Received] = []
        self._complete = 0
        self._lock = threading.Lock()

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if await answer_lifespan(scope, receive, send):
            return
        body = await read_body(receive)
        if body is None:
            with self._lock:
                self._requests.append(Received(headers={}, body=b"", at=time.time(), aborted=True))
            return
        headers = {k.decode().lower(): v.decode() for k, v in scope["headers"]}
        request = Received(headers=headers, body=body, at=time.time())
        if self.verify:
            request.problem = verify_signature(self.secret, headers, body)
        with self._lock:
            self._requests.append(request)
            self._complete += 1
            number = self._complete
        answer = self.script(request, number)
        request.status, request.late = answer.status, answer.late
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

    @property
    def received(self) -> list[Received]:
        """The complete requests, in arrival order."""
        with self._lock:
            return [r for r in self._requests if not r.aborted]

    def snapshot(self) -> list[Received]:
        """Every request so far, aborted ones too, in arrival order."""
        with self._lock:
            return list(self._requests)

    def ids(self) -> list[str]:
        return [r.event_id for r in self.received]

    def bodies(self) -> list[Any]:
        return [r.json for r in self.received]

    def heal(self) -> None:
        """Answer 200 at once from now on."""
        self.script = always_ok

    def reset(self) -> None:
        with self._lock:
            self._requests = []
            self._complete = 0


class ReceiverServer(ThreadedServer):
    """A `Receiver` on loopback; `hook_url` is the URL a subscription points at."""

    def __init__(self, receiver: Receiver, port: int | None = None) -> None:
        super().__init__(receiver, port)
        self.receiver = receiver

    @property
    def hook_url(self) -> str:
        return f"{self.url}/hooks/{self.receiver.name}"


async def answer_lifespan(scope: dict[str, Any], receive: Any, send: Any) -> bool:
    """For a raw ASGI app: if this is uvicorn's lifespan scope, answer it and say True."""
    if scope["type"] != "lifespan":
        return False
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return True


async def read_body(receive: Any) -> bytes | None:
    """The whole request body of a raw ASGI request; None when the client went away before its end."""
    body: bytes = b""
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        body += message.get("body", b"")
        if not message.get("more_body"):
            return body
