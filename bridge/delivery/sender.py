"""One HTTP attempt: sign, check the address again, POST, and read at most 4 KB of the answer."""

from __future__ import annotations

import asyncio
import math
import time
import zlib

import httpx

from bridge import __version__
from bridge.delivery.models import AttemptResult, Subscription
from bridge.delivery.policy import parse_retry_after
from bridge.delivery.signing import headers as signature_headers
from bridge.delivery.urls import UrlGuard, UrlRefused

RESPONSE_BODY_LIMIT = 4096


CONNECTIONS_PER_CLIENT = 1


def build_clients(timeout: float, concurrency: int) -> list[httpx.AsyncClient]:
    """The shared subscriber clients: keep-alive pools, no redirects, our User-Agent.

    Conceptually one client; in practice one per slot of `concurrency`, because httpcore 1.0's pool
    costs grow with its connections: on loopback one pool of 64 busy connections delivered ~330
    webhooks/s. Every request checks each idle connection of its pool (two system calls each), and
    requests started together are handed the same idle connection and retry. With eight pools of 8 a
    delivery cost ~820 µs of CPU, with pools of one ~620 µs (bench/delivery.py). An ordered lane
    always uses the same client, so its connection is kept alive and reused; unordered deliveries go
    to the least busy client.
    """
    count = max(1, math.ceil(concurrency / CONNECTIONS_PER_CLIENT))
    per_client = math.ceil(concurrency / count)
    limits = httpx.Limits(
        max_connections=per_client + 4,
        max_keepalive_connections=per_client + 4,
        keepalive_expiry=30.0,
    )
    ssl_context = httpx.create_ssl_context(trust_env=False)  # loading the CA bundle takes ~15 ms: once
    return [
        httpx.AsyncClient(
            timeout=httpx.Timeout(timeout),
            limits=limits,
            follow_redirects=False,
            headers={"User-Agent": f"d6-bridge/{__version__}"},
            verify=ssl_context,
            trust_env=False,
        )
        for _ in range(count)
    ]


class Sender:
    def __init__(self, clients: list[httpx.AsyncClient], guard: UrlGuard, *, timeout: float) -> None:
        self.clients = clients
        self.guard = guard
        self.timeout = timeout
        self._busy: dict[httpx.AsyncClient, int] = {}

    def _client(self, lane: str) -> httpx.AsyncClient:
        """The lane's own client; without a lane, the one with the fewest attempts in flight.

        Unordered deliveries must not follow a lane: claimed together, they mostly belong to one
        school, and hashing them onto one client queued 64 attempts behind its 12 connections.
        """
        if lane:
            return self.clients[zlib.crc32(lane.encode()) % len(self.clients)]
        return min(self.clients, key=lambda client: self._busy.get(client, 0))

    async def send(
        self, subscription: Subscription, event_id: str, body: bytes, *, lane: str = ""
    ) -> AttemptResult:
        """One attempt; `lane` picks the client, so one lane keeps reusing its connection."""
        started = time.monotonic()
        client = self._client(lane)
        self._busy[client] = self._busy.get(client, 0) + 1
        try:
            async with asyncio.timeout(self.timeout):
                return await self._send(client, subscription, event_id, body, started)
        except TimeoutError:
            return _failed(f"timed out after {self.timeout:g}s", started)
        except UrlRefused as error:
            return _failed(f"refused: {error}", started)
        except httpx.HTTPError as error:
            return _failed(f"{type(error).__name__}: {error}".rstrip(": "), started)
        except OSError as error:
            return _failed(f"{type(error).__name__}: {error}", started)
        finally:
            busy = self._busy.pop(client) - 1
            if busy:
                self._busy[client] = busy

    async def _send(
        self,
        client: httpx.AsyncClient,
        subscription: Subscription,
        event_id: str,
        body: bytes,
        started: float,
    ) -> AttemptResult:
        target = await self.guard.target(subscription.url)
        now = time.time()
        request_headers = signature_headers(subscription.signing_secrets(now), event_id, int(now), body)
        request_headers["content-type"] = "application/json"
        if target.host_header:
            request_headers["host"] = target.host_header
        extensions = {"sni_hostname": target.sni_hostname} if target.sni_hostname else None
        request = client.build_request(
            "POST", target.url, content=body, headers=request_headers, extensions=extensions
        )
        response = await client.send(request, stream=True)
        try:
            chunks: list[bytes] = []
            size = 0
            async for chunk in response.aiter_bytes():
                chunks.append(chunk)
                size += len(chunk)
                if size >= RESPONSE_BODY_LIMIT:
                    break
        finally:
            await response.aclose()
        text = b"".join(chunks)[:RESPONSE_BODY_LIMIT].decode("utf-8", errors="replace")
        retry_after = None
        if response.status_code in (429, 503):
            retry_after = parse_retry_after(response.headers.get("retry-after"))
        return AttemptResult(
            status_code=response.status_code,
            duration_ms=_elapsed(started),
            response_body=text,
            retry_after=retry_after,
        )


def _elapsed(started: float) -> float:
    return round((time.monotonic() - started) * 1000, 3)


def _failed(error: str, started: float) -> AttemptResult:
    return AttemptResult(error=error, duration_ms=_elapsed(started))
