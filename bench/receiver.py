"""The webhook receiver of the delivery benchmark: a process of its own that answers 200 at once.

`python -m bench.receiver PORT` serves HTTP/1.1 with keep-alive on 127.0.0.1:PORT. It is a bare asyncio
protocol (no framework, no ASGI) so that it costs a few microseconds a request and never is what limits a
measurement: it finds the end of the headers, reads `Content-Length` bytes of body, notes the
`webhook-id` and the time (`time.time()`, the same clock as every process on the host), and answers
`200 ok`. It is not a general HTTP server: no chunked bodies, no pipelining beyond what the buffer holds.

Two control paths, for the benchmark only: `GET /_stats` answers JSON with the request count, the first
and last receive times, the first few requests in full (headers and body, so the benchmark can verify
their Standard Webhooks signature) and, with `?ids=1`, every (webhook-id, time) pair; `GET /_reset`
forgets everything.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from typing import Any

SAMPLES = 3
_OK = b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ncontent-length: 2\r\n\r\nok"
_END = b"\r\n\r\n"


class Tally:
    """What the receiver saw since the last reset."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.count = 0
        self.first = 0.0
        self.last = 0.0
        self.ids: list[tuple[str, float]] = []
        self.samples: list[dict[str, Any]] = []

    def note(self, head: bytes, body: bytes) -> None:
        now = time.time()
        self.count += 1
        if self.count == 1:
            self.first = now
        self.last = now
        lower = head.lower()
        start = lower.find(b"\r\nwebhook-id:")
        if start >= 0:
            start += len(b"\r\nwebhook-id:")
            self.ids.append((head[start : head.index(b"\r\n", start)].strip().decode(), now))
        if len(self.samples) < SAMPLES:
            self.samples.append({"headers": _headers(head), "body": body.decode()})

    def report(self, with_ids: bool) -> bytes:
        stats: dict[str, Any] = {
            "count": self.count,
            "first": self.first,
            "last": self.last,
            "samples": self.samples,
        }
        if with_ids:
            stats["ids"] = self.ids
        return json.dumps(stats).encode()


class Connection(asyncio.Protocol):
    def __init__(self, tally: Tally) -> None:
        self.tally = tally
        self.buffer = b""
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while True:
            end = self.buffer.find(_END)
            if end < 0:
                return
            head = self.buffer[:end]
            length = _content_length(head)
            total = end + len(_END) + length
            if len(self.buffer) < total:
                return
            body = self.buffer[end + len(_END) : total]
            self.buffer = self.buffer[total:]
            self._answer(head, body)

    def _answer(self, head: bytes, body: bytes) -> None:
        assert self.transport is not None
        if head.startswith(b"GET /_"):
            target = head.split(b" ", 2)[1]
            if target.startswith(b"/_reset"):
                self.tally.reset()
                content = b"{}"
            else:
                content = self.tally.report(with_ids=b"ids=1" in target)
            self.transport.write(
                b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n%s"
                % (len(content), content)
            )
            return
        self.tally.note(head, body)
        self.transport.write(_OK)


def _content_length(head: bytes) -> int:
    lower = head.lower()
    start = lower.find(b"\r\ncontent-length:")
    if start < 0:
        return 0
    start += len(b"\r\ncontent-length:")
    stop = lower.find(b"\r\n", start)
    return int(lower[start : stop if stop >= 0 else len(lower)])


def _headers(head: bytes) -> dict[str, str]:
    lines = head.decode("latin-1").split("\r\n")[1:]
    return {name.strip().lower(): value.strip() for name, _, value in (line.partition(":") for line in lines)}


async def serve(port: int) -> None:
    tally = Tally()
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: Connection(tally), "127.0.0.1", port, backlog=1024)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(serve(int(sys.argv[1])))
