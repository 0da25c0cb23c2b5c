"""The webhook receiver of throughput benchmarks: a process of its own that answers 200 at once.

`python -m bridge.testing.receiver_process PORT [CERT KEY]` serves HTTP/1.1 with keep-alive on
127.0.0.1:PORT (over TLS with that certificate and key when given); `receiver_process()` starts it on a
free port and hands back a `ReceiverProcess`, a client for its counters. It is a bare asyncio protocol
(no framework, no ASGI) so that it costs a few microseconds a request and never is what limits a
measurement: it finds the end of the headers, reads `Content-Length` bytes of body, notes the
`webhook-id` and the time (`time.time()`, the same clock as every process on the host), and answers `200
ok`. It is not a general HTTP server: no chunked bodies, no pipelining beyond what the buffer holds.
(`bridge.testing.receivers` has the scriptable receiver the tests and suites use.)

Two control paths: `GET /_stats` answers JSON with the request count, the first and last receive times,
the first few requests in full (headers and body, so a benchmark can verify their Standard Webhooks
signature) and, with `?ids=1`, every (webhook-id, time) pair; `GET /_reset` forgets everything.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import ssl
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx

from bridge.testing.servers import free_port

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


class ReceiverProcess:
    """A client for the receiver process's counters; `url` is where a subscription points."""

    def __init__(self, port: int, *, certificate: Path | None = None) -> None:
        self.port = port
        scheme = "http" if certificate is None else "https"
        self.url = f"{scheme}://127.0.0.1:{port}/hook"
        self._control = httpx.AsyncClient(
            base_url=f"{scheme}://127.0.0.1:{port}",
            timeout=30.0,
            trust_env=False,
            verify=True if certificate is None else ssl.create_default_context(cafile=certificate),
        )

    async def reset(self) -> None:
        (await self._control.get("/_reset")).raise_for_status()

    async def stats(self, *, ids: bool = False) -> dict[str, Any]:
        response = await self._control.get("/_stats", params={"ids": "1"} if ids else None)
        response.raise_for_status()
        stats: dict[str, Any] = response.json()
        return stats

    async def aclose(self) -> None:
        await self._control.aclose()


@contextlib.asynccontextmanager
async def receiver_process(tls: tuple[Path, Path] | None = None) -> AsyncIterator[ReceiverProcess]:
    """Start `python -m bridge.testing.receiver_process PORT` on a free port (with `tls`, a certificate and
    its key: over HTTPS; the certificate must name 127.0.0.1); stop it afterwards."""
    port = free_port()
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bridge.testing.receiver_process", str(port), *map(str, tls or ())
    )
    receiver = ReceiverProcess(port, certificate=tls[0] if tls else None)
    try:
        for _ in range(500):
            with contextlib.suppress(httpx.TransportError):
                await receiver.reset()
                break
            await asyncio.sleep(0.02)
        else:
            raise RuntimeError("the receiver did not start")
        yield receiver
    finally:
        await receiver.aclose()
        process.terminate()
        await process.wait()


async def serve(port: int, tls: tuple[str, str] | None = None) -> None:
    tally = Tally()
    context = None
    if tls is not None:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(*tls)
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: Connection(tally), "127.0.0.1", port, backlog=1024, ssl=context)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(serve(int(sys.argv[1]), (sys.argv[2], sys.argv[3]) if len(sys.argv) > 3 else None))
