"""One HTTP attempt: sign, check the address again, POST, and read at most 4 KB of the answer.

The delivery client is aiohttp, chosen by measurement (bench/clients.py, bench/RESULTS.md): posting the
same signed bodies to the same local receiver it reached about 14,000 requests/s at about 70 µs of CPU
each, against about 900/s and 1,000 µs for httpx as the bridge had built it. (The d6 client stays httpx:
d6's request budget binds there, not CPU.)

What an attempt keeps of the old client: no redirects (a 3xx is the answer), a timeout per attempt,
connection reuse (one session, one keep-alive pool), the private-address check right before the
connection with the connection pinned to the checked address (`UrlGuard.target`: the IP literal, the
original `Host`, and for https the original name for SNI and the certificate check), our `User-Agent`,
TLS verification against the system's CA bundle, and at most 4 KB of the answer read.

Names are resolved by the guard, at most `DNS_TTL_SECONDS` (30 s) apart, never by aiohttp: it only sees
IP literals, so its pool keeps connections per address and a subscriber that moves gets new ones. When a
name has several addresses and no connection can be made to the first, the next is tried.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from typing import Any, Final

import aiohttp

from bridge import __version__
from bridge.delivery.models import AttemptResult, Subscription
from bridge.delivery.policy import parse_retry_after
from bridge.delivery.signing import headers as signature_headers
from bridge.delivery.urls import DNS_TTL_SECONDS, UrlGuard, UrlRefused

RESPONSE_BODY_LIMIT: Final = 4096
USER_AGENT: Final = f"d6-bridge/{__version__}"


class Sender:
    """The subscriber client of one process: one aiohttp session, made on first use (it needs the loop)."""

    def __init__(
        self, guard: UrlGuard, *, timeout: float, concurrency: int, ssl_context: ssl.SSLContext | None = None
    ) -> None:
        """`ssl_context` replaces the system's trust (a test's own CA); default: the system's CA bundle."""
        self.guard = guard
        self.timeout = timeout
        self.concurrency = concurrency
        self._session: aiohttp.ClientSession | None = None
        self._ssl = ssl_context

    def session(self) -> aiohttp.ClientSession:
        """The session every attempt of this process uses (the benchmark's raw ceiling uses it too)."""
        if self._session is None or self._session.closed:
            if self._ssl is None:
                self._ssl = ssl.create_default_context()  # loading the CA bundle takes ~15 ms: once
            connector = aiohttp.TCPConnector(
                limit=self.concurrency + 4,
                ssl=self._ssl,
                keepalive_timeout=30.0,
                ttl_dns_cache=int(DNS_TTL_SECONDS),  # bounded, though the guard hands it IP literals only
            )
            self._session = aiohttp.ClientSession(
                connector=connector,
                timeout=aiohttp.ClientTimeout(total=self.timeout),
                headers={"User-Agent": USER_AGENT},
                trust_env=False,
                auto_decompress=False,
                skip_auto_headers=("Accept-Encoding",),
            )
        return self._session

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def send(
        self, subscription: Subscription, event_id: str, body: bytes, *, lane: str = ""
    ) -> AttemptResult:
        """One attempt. (`lane` is kept for callers: one pool serves every lane and keeps connections.)

        One coroutine from the target to the answer read: every frame between the attempt's task and
        aiohttp's is stepped through again each time the request resumes."""
        started = time.monotonic()
        signed_at = int(time.time())
        try:
            # The session's total timeout bounds the request and the reading of the answer; a name to look
            # up first takes its time out of the same budget.
            options: dict[str, Any] = {}
            target = self.guard.at_hand(subscription.url)
            if target is None:
                async with asyncio.timeout(self.timeout):
                    target = await self.guard.target(subscription.url)
                left = self.timeout - (time.monotonic() - started)
                options["timeout"] = aiohttp.ClientTimeout(total=max(left, 0.001))
            live = subscription.signing_secrets(signed_at)
            request_headers = signature_headers(live, event_id, signed_at, body)
            request_headers["Content-Type"] = "application/json"
            if target.host_header:
                request_headers["Host"] = target.host_header
            urls = (target.url, *target.fallbacks)
            for n, url in enumerate(urls, 1):
                try:
                    async with self.session().post(
                        url,
                        data=body,
                        headers=request_headers,
                        allow_redirects=False,
                        server_hostname=target.sni_hostname,
                        **options,
                    ) as response:
                        chunks: list[bytes] = []
                        size = 0
                        content = response.content
                        # Until the limit or the end: a short answer is read whole by the first read (the
                        # usual case), so the end is seen without another call.
                        while size < RESPONSE_BODY_LIMIT and not content.at_eof():
                            chunk = await content.read(RESPONSE_BODY_LIMIT - size)
                            if not chunk:
                                break
                            chunks.append(chunk)
                            size += len(chunk)
                        status = response.status
                        retry_header = response.headers.get("Retry-After")
                    break
                except aiohttp.ClientConnectorError:
                    if n == len(urls):
                        raise
                    # no connection, so nothing was sent: the name's next address
        except TimeoutError:
            return _failed(f"timed out after {self.timeout:g}s", started, signed_at)
        except UrlRefused as error:
            return _failed(f"refused: {error}", started)  # no request was made
        except aiohttp.ClientError as error:
            return _failed(f"{type(error).__name__}: {error}".rstrip(": "), started, signed_at)
        except OSError as error:
            return _failed(f"{type(error).__name__}: {error}", started, signed_at)
        text = b"".join(chunks).decode("utf-8", errors="replace")
        retry_after = parse_retry_after(retry_header) if status in (429, 503) else None
        return AttemptResult(
            status_code=status,
            duration_ms=_elapsed(started),
            response_body=text,
            retry_after=retry_after,
            signed_at=signed_at,
        )


def _elapsed(started: float) -> float:
    return round((time.monotonic() - started) * 1000, 3)


def _failed(error: str, started: float, signed_at: int | None = None) -> AttemptResult:
    return AttemptResult(error=error, duration_ms=_elapsed(started), signed_at=signed_at)
