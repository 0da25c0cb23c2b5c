"""HTTP to d6: one `httpx.AsyncClient`, the request budget, retries with backoff, and error mapping.

Every attempt (retries included) first takes a token from the budget. Retried: 5xx other than 501,
timeouts and connection errors (exponential backoff with full jitter), and 429 (its `Retry-After`,
seconds or an HTTP date, capped; else the same backoff). After `max_attempts` the last failure surfaces
as `D6ServerError`, `D6TransportError` or `D6RateLimited`. Everything else is answered at once.

A body that is not JSON is *not* retried: a truncated transfer is caught by httpx as a transport
error (and retried); JSON that arrives whole but broken is d6's doing and will not improve, so it
surfaces as `D6MalformedResponse` and the scan that asked fails.

Retrying the change-state POST is safe: setting a state twice ends in "already activated", which the
client counts as success.

Credential headers are set on the client once and never logged.
"""

from __future__ import annotations

import asyncio
import email.utils
import random
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

import httpx
import msgspec
import structlog

from bridge.d6.budget import Budget
from bridge.errors import (
    D6AuthError,
    D6Error,
    D6MalformedResponse,
    D6NotAuthorised,
    D6NotFound,
    D6RateLimited,
    D6ServerError,
    D6TransportError,
    D6ValidationError,
)

log = structlog.get_logger(__name__)

ResponseHook = Callable[[str, "int | str", float], None]
"""`on_response(endpoint, status, seconds)`: status is the HTTP code, or `timeout` / `connect_error` /
`transport_error` when no answer came. Called once per attempt."""

NOT_AUTHORISED = "client has not authorised access"
NOT_RETRIED_5XX = frozenset({501})
_DECODER = msgspec.json.Decoder()


class Reply(msgspec.Struct, kw_only=True):
    """A decoded d6 answer that the retry loop did not swallow."""

    status: int
    body: Any
    """The decoded JSON; for error statuses whose body is not JSON, the text (first 500 characters)."""
    endpoint: str


class RetryPolicy(msgspec.Struct, kw_only=True, frozen=True):
    max_attempts: int = 4
    backoff_base: float = 0.5
    backoff_cap: float = 30.0
    retry_after_cap: float = 60.0
    """A `Retry-After` longer than this is cut to it (a misconfigured server must not park a poller)."""

    def backoff(self, retry: int) -> float:
        """Full jitter: uniform in [0, min(cap, base * 2**retry)] for the `retry`-th retry (from 0)."""
        return random.uniform(0.0, min(self.backoff_cap, self.backoff_base * (2**retry)))


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """Seconds to wait from a `Retry-After` header (delta seconds or an HTTP date); None when unusable."""
    if value is None:
        return None
    text = value.strip()
    if not text:
        return None
    try:
        seconds = float(text)
    except ValueError:
        pass
    else:
        return max(0.0, seconds) if seconds == seconds and seconds != float("inf") else None
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


class D6Http:
    """The transport to d6 for one set of credentials: budget, retries, decoding, error mapping."""

    def __init__(
        self,
        *,
        base_url: str,
        username: str | None,
        password: str | None,
        timeout_seconds: float,
        budget: Budget,
        policy: RetryPolicy,
        transport: httpx.AsyncBaseTransport | None = None,
        max_connections: int = 20,
        on_response: ResponseHook | None = None,
    ) -> None:
        headers = {"Accept": "application/json", "User-Agent": "d6-bridge"}
        if username is not None:
            headers["HTTP-X-USERNAME"] = username
        if password is not None:
            headers["HTTP-X-PASSWORD"] = password
        limits = httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections)
        self._timeout = timeout_seconds
        self._client = httpx.AsyncClient(
            base_url=base_url.rstrip("/") + "/",
            headers=headers,
            timeout=httpx.Timeout(timeout_seconds),
            limits=limits,
            transport=transport,
            follow_redirects=False,
        )
        self._budget = budget
        self.policy = policy
        self.on_response = on_response

    async def aclose(self) -> None:
        await self._client.aclose()

    async def send(
        self,
        method: str,
        path: str,
        *,
        endpoint: str,
        school_id: int | None = None,
        params: Mapping[str, str] | None = None,
        json: Any = None,
        raw: bool = False,
    ) -> Reply:
        """One logical request with retries; `endpoint` is the metrics label (`GET /v2/.../{id}`).

        Returns any answer that is not retried (2xx, 4xx); raises after the bounded attempts. With `raw`, a
        2xx answer's body is its JSON bytes, undecoded (the caller decodes it: `decode_json`); its content
        type is checked all the same.
        """
        headers = {"HTTP-X-SCHOOLID": str(school_id)} if school_id is not None else None
        policy = self.policy
        bound = log.bind(endpoint=endpoint, school_id=school_id)
        last: D6Error | None = None
        for attempt in range(1, policy.max_attempts + 1):
            await self._budget.acquire()
            started = time.monotonic()
            try:
                async with asyncio.timeout(self._timeout):
                    response = await self._client.request(
                        method, path.lstrip("/"), params=params, json=json, headers=headers
                    )
            except (TimeoutError, httpx.TimeoutException) as error:
                self._count(endpoint, "timeout", started)
                last = D6TransportError(
                    f"timed out after {self._timeout:g}s ({type(error).__name__})",
                    endpoint=endpoint,
                    school_id=school_id,
                )
                delay = policy.backoff(attempt - 1)
            except httpx.InvalidURL as error:
                # Only d6's own values go into our URLs (a cursor, an id): it gave one we cannot send.
                raise D6MalformedResponse(
                    f"cannot send the request: {error}", status_code=0, endpoint=endpoint, school_id=school_id
                ) from error
            except httpx.TransportError as error:
                kind = "connect_error" if isinstance(error, httpx.ConnectError) else "transport_error"
                self._count(endpoint, kind, started)
                last = D6TransportError(
                    f"{kind}: {type(error).__name__}: {error}", endpoint=endpoint, school_id=school_id
                )
                delay = policy.backoff(attempt - 1)
            else:
                self._count(endpoint, response.status_code, started)
                status = response.status_code
                if status == 429:
                    last = self._error(status, _error_body(response), endpoint, school_id)
                    after = parse_retry_after(response.headers.get("retry-after"))
                    delay = (
                        min(after, policy.retry_after_cap)
                        if after is not None
                        else policy.backoff(attempt - 1)
                    )
                elif status >= 500 and status not in NOT_RETRIED_5XX:
                    last = self._error(status, _error_body(response), endpoint, school_id)
                    after = parse_retry_after(response.headers.get("retry-after")) if status == 503 else None
                    delay = (
                        min(after, policy.retry_after_cap)
                        if after is not None
                        else policy.backoff(attempt - 1)
                    )
                else:
                    return self._reply(response, endpoint, school_id, raw)
            if attempt < policy.max_attempts:
                bound.warning(
                    "d6_retry",
                    attempt=attempt,
                    error=last.message,
                    status=last.status_code,
                    delay=round(delay, 3),
                )
                await asyncio.sleep(delay)
        assert last is not None
        bound.warning("d6_gave_up", attempts=policy.max_attempts, error=last.message, status=last.status_code)
        raise last

    def _count(self, endpoint: str, status: int | str, started: float) -> None:
        seconds = time.monotonic() - started
        log.debug("d6_response", endpoint=endpoint, status=status, seconds=round(seconds, 4))
        if self.on_response is not None:
            try:
                self.on_response(endpoint, status, seconds)
            except Exception:
                log.exception("d6_on_response_hook_failed", endpoint=endpoint)

    def _reply(self, response: httpx.Response, endpoint: str, school_id: int | None, raw: bool) -> Reply:
        status = response.status_code
        if 200 <= status < 300:
            content_type = response.headers.get("content-type", "")
            if not _is_json(content_type):
                raise D6MalformedResponse(
                    f"expected JSON, got content type {content_type or 'none'!r}",
                    status_code=status,
                    endpoint=endpoint,
                    school_id=school_id,
                )
            if raw:
                return Reply(status=status, body=response.content, endpoint=endpoint)
            body = decode_json(response.content, status=status, endpoint=endpoint, school_id=school_id)
            return Reply(status=status, body=body, endpoint=endpoint)
        return Reply(status=status, body=_error_body(response), endpoint=endpoint)

    @staticmethod
    def _error(status: int, body: Any, endpoint: str, school_id: int | None) -> D6Error:
        return error_for(status, body, endpoint=endpoint, school_id=school_id)


def decode_json(content: bytes, *, status: int, endpoint: str, school_id: int | None) -> Any:
    """A 2xx answer's JSON, or `D6MalformedResponse` (not retried: see the module docstring)."""
    try:
        return _DECODER.decode(content)
    except msgspec.DecodeError as error:
        raise D6MalformedResponse(
            f"body is not valid JSON: {error}", status_code=status, endpoint=endpoint, school_id=school_id
        ) from None


def _is_json(content_type: str) -> bool:
    media = content_type.split(";", 1)[0].strip().lower()
    return media == "application/json" or media.endswith("+json")


def _error_body(response: httpx.Response) -> Any:
    """An error answer's body: the JSON when it is JSON, else the start of the text (proxies send HTML)."""
    try:
        return _DECODER.decode(response.content)
    except msgspec.DecodeError:
        return response.text[:500]


class ErrorInfo(msgspec.Struct, kw_only=True):
    """What both of d6's error shapes say, in one form."""

    message: str
    validation_errors: dict[str, Any]
    texts: tuple[str, ...]
    """Every piece of text the body carries (to recognise "Client has not authorised access")."""


def parse_error(body: Any, status: int) -> ErrorInfo:
    """v2 `{"success": false, "message", "validation_errors"?}` or v1 `{"error", "error_description"}`.

    v1's `error_description` is a text, or an object of field errors (the v1 validation answer).
    """
    fallback = f"HTTP {status}"
    if not isinstance(body, dict):
        text = body.strip() if isinstance(body, str) else ""
        return ErrorInfo(message=text[:200] or fallback, validation_errors={}, texts=(text,))
    texts: list[str] = []
    errors: dict[str, Any] = {}
    message = body.get("message")
    if isinstance(message, str):
        texts.append(message)
    found = body.get("validation_errors")
    if isinstance(found, dict):
        errors.update(found)
    error = body.get("error")
    description = body.get("error_description")
    if isinstance(error, str):
        texts.append(error)
    if isinstance(description, str):
        texts.append(description)
    elif isinstance(description, dict):
        errors.update(description)
    if isinstance(message, str) and message:
        text = message
    elif isinstance(error, str) and isinstance(description, str):
        text = f"{error}: {description}"
    elif isinstance(error, str) or isinstance(description, str):
        text = error if isinstance(error, str) else str(description)
    else:
        text = fallback
    return ErrorInfo(message=text, validation_errors=errors, texts=tuple(texts))


def error_for(status: int, body: Any, *, endpoint: str, school_id: int | None = None) -> D6Error:
    """The exception for a d6 error answer, with the message and validation errors it carried."""
    info = parse_error(body, status)
    details: dict[str, Any] = {}
    if info.validation_errors:
        details["validation_errors"] = info.validation_errors
    kwargs: dict[str, Any] = {
        "status_code": status,
        "endpoint": endpoint,
        "school_id": school_id,
        "details": details,
    }
    if status in (401, 403):
        if any(NOT_AUTHORISED in text.lower() for text in info.texts):
            return D6NotAuthorised(info.message, **kwargs)
        return D6AuthError(info.message, **kwargs)
    if status == 404:
        return D6NotFound(info.message, **kwargs)
    if status == 429:
        return D6RateLimited(info.message, **kwargs)
    if status >= 500:
        return D6ServerError(info.message, **kwargs)
    if 400 <= status < 500:
        return D6ValidationError(info.message, **kwargs)
    return D6MalformedResponse(f"unexpected status: {info.message}", **kwargs)
