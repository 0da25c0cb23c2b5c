"""d6's debtor-note writes: Create, Update and Delete Note, Delete Promise To Pay, one attempt each.

A create is not idempotent, so a write is never repeated here (the caller decides, knowing what it sent):
one attempt, one token of the shared request budget, the reads' client, credentials and timeout
(`WriteHttp` is the reads' `D6Http` with this one-attempt call added). Every way a write can end is a type,
so a caller acts on it without reading text:

- success: `create_note` returns the new `note_id`; the others return None (any 2xx);
- `WriteRefused`: 400, 404, 409 and every other 4xx but 401/403/429 (and 501): d6 will not do it as asked.
  d6's `message` and `validation_errors` are kept verbatim (`message`, `validation_errors`);
- `WriteDenied`: 401/403; `not_authorised` when d6 says "Client has not authorised access" (the school
  revoked its authorisation) rather than refusing the credentials;
- `WriteRetryable`: 429 and 5xx (`retry_after` from a `Retry-After` header, seconds), and a request that
  certainly never left (no connection: refused, timed out connecting, no free connection in the pool);
- `WriteUnknown`: the request was sent, or may have been, and no answer came (a timeout or a connection lost
  after sending), or a create answered 2xx without a readable `note_id`: the write may have happened.

Whether a failed request left is known from httpx's `trace` extension (did the request's headers start to
go out?) and from the exception (a connect or pool failure never sends). When neither tells (a transport
that does not trace), the outcome is unknown: the safe side for a write that must happen once.

Bodies are never logged: a note's text is personal data. d6's validation messages are kept as sent, so
they are not logged either (they may quote what was sent).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from enum import StrEnum
from typing import Any, ClassVar, Final

import httpx
import msgspec
import structlog

from bridge.d6.endpoints import Endpoint
from bridge.d6.http import NOT_AUTHORISED, NOT_RETRIED_5XX, D6Http, Reply, parse_error, parse_retry_after
from bridge.d6.note_rules import NoteCreate, NoteUpdate
from bridge.d6.records import identifier
from bridge.errors import D6Error

log = structlog.get_logger(__name__)

DEBTOR_NOTES: Final = Endpoint(
    name="debtor_notes",
    version="v2",
    path="/finplus/debtmanagement/debtornotes/notes",
    school_scoped=True,
    id_field="note_id",
)
"""Get Note(s), Create/Update/Delete Note (the catalogue's `notes` resource reads the same collection)."""
PROMISES_TO_PAY: Final = Endpoint(
    name="promises_to_pay",
    version="v2",
    path="/finplus/debtmanagement/debtornotes/promisetopays",
    school_scoped=True,
    id_field="promise_to_pay_id",
)
NOT_SENT: Final = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)
"""Transport failures that happen before a byte of the request is sent."""
_ENCODER: Final = msgspec.json.Encoder()
_DECODER: Final = msgspec.json.Decoder()

NoteBody = NoteCreate | NoteUpdate | Mapping[str, Any] | bytes
"""A write's body: the checked struct, its decoded JSON, or its JSON as stored (sent as it is)."""


class WriteOutcome(StrEnum):
    REFUSED = "refused"
    DENIED = "denied"
    RETRYABLE = "retryable"
    UNKNOWN = "unknown"


class D6WriteError(D6Error):
    """A write that did not succeed; `outcome` says what the caller may do about it."""

    outcome: ClassVar[WriteOutcome]

    @property
    def validation_errors(self) -> dict[str, Any]:
        """d6's `validation_errors` (field -> message), as sent; empty when it sent none."""
        errors: dict[str, Any] = self.details.get("validation_errors", {})
        return errors


class WriteRefused(D6WriteError):
    """d6 will not do it as asked (400, 404, 409 ...): sending it again changes nothing."""

    outcome = WriteOutcome.REFUSED


class WriteDenied(D6WriteError):
    """401/403. `not_authorised`: "Client has not authorised access", the school withdrew its consent."""

    outcome = WriteOutcome.DENIED

    def __init__(self, message: str, *, not_authorised: bool = False, **kwargs: Any) -> None:
        self.not_authorised = not_authorised
        super().__init__(message, **kwargs)


class WriteRetryable(D6WriteError):
    """Nothing was done (429, 5xx, or the request never left): the same write may be sent again,
    not before `retry_after` seconds when d6 named them."""

    outcome = WriteOutcome.RETRYABLE

    def __init__(self, message: str, *, retry_after: float | None = None, **kwargs: Any) -> None:
        self.retry_after = retry_after
        super().__init__(message, **kwargs)


class WriteUnknown(D6WriteError):
    """The request was (or may have been) sent and no usable answer came: the write may have happened.
    Look before sending it again (`D6Client.notes_of` for a create)."""

    outcome = WriteOutcome.UNKNOWN


class _Wire:
    """What the transport told of one request through httpx's `trace` extension."""

    __slots__ = ("sending", "traced")

    def __init__(self) -> None:
        self.traced = False
        self.sending = False

    async def trace(self, name: str, info: dict[str, Any]) -> None:
        self.traced = True
        if "send_request_headers" in name:
            self.sending = True

    @property
    def unsent(self) -> bool:
        """Certainly not sent: the transport traced the request and it never started sending."""
        return self.traced and not self.sending


class WriteHttp(D6Http):
    """The reads' HTTP layer, plus `write`: one attempt, every ending classified."""

    async def write(
        self, method: str, path: str, *, endpoint: str, school_id: int, body: NoteBody | None = None
    ) -> Reply:
        """Send once (one budget token); return a 2xx answer, raise a `D6WriteError` for anything else."""
        headers = {"HTTP-X-SCHOOLID": str(school_id)}
        content: bytes | None = None
        if body is not None:
            content = body if isinstance(body, bytes) else _ENCODER.encode(body)
            headers["Content-Type"] = "application/json"
        where: dict[str, Any] = {"endpoint": endpoint, "school_id": school_id}
        wire = _Wire()
        extensions = {"trace": wire.trace}
        await self._budget.acquire(urgent=True)  # a write goes before this process' waiting polls
        started = time.monotonic()
        try:
            async with asyncio.timeout(self._timeout):
                response = await self._client.request(
                    method, path.lstrip("/"), content=content, headers=headers, extensions=extensions
                )
        except NOT_SENT as error:
            kind = "timeout" if isinstance(error, httpx.TimeoutException) else "connect_error"
            self._count(endpoint, kind, started)
            raise WriteRetryable(f"not sent: {type(error).__name__}", **where) from None
        except (TimeoutError, httpx.TransportError) as error:
            timed_out = isinstance(error, TimeoutError | httpx.TimeoutException)
            self._count(endpoint, "timeout" if timed_out else "transport_error", started)
            what = f"timed out after {self._timeout:g}s" if timed_out else "connection lost"
            if wire.unsent:
                raise WriteRetryable(f"not sent: {what} ({type(error).__name__})", **where) from None
            log.warning("d6_write_outcome_unknown", error=type(error).__name__, **where)
            raise WriteUnknown(f"no answer: {what} ({type(error).__name__})", **where) from None
        self._count(endpoint, response.status_code, started)
        return _answered(response, where)


def _answered(response: httpx.Response, where: dict[str, Any]) -> Reply:
    status = response.status_code
    try:
        body: Any = _DECODER.decode(response.content) if response.content else None
    except msgspec.DecodeError:
        body = response.text[:500]
    if 200 <= status < 300:
        return Reply(status=status, body=body, endpoint=where["endpoint"])
    info = parse_error(body, status)
    kwargs: dict[str, Any] = {"status_code": status, **where}
    if info.validation_errors:
        kwargs["details"] = {"validation_errors": info.validation_errors}
    if status in (401, 403):
        not_authorised = any(NOT_AUTHORISED in text.lower() for text in info.texts)
        log.warning("d6_write_denied", status=status, not_authorised=not_authorised, **where)
        raise WriteDenied(info.message, not_authorised=not_authorised, **kwargs)
    if status == 429 or (status >= 500 and status not in NOT_RETRIED_5XX):
        after = parse_retry_after(response.headers.get("retry-after"))
        raise WriteRetryable(info.message, retry_after=after, **kwargs)
    raise WriteRefused(info.message, **kwargs)


# the calls


def _label(method: str, endpoint: Endpoint, with_id: bool) -> str:
    return f"{method} {endpoint.resource_template if with_id else endpoint.collection}"


async def create_note(http: WriteHttp, school_id: int, body: NoteBody) -> int:
    """Create Note (201 with the new `note_id`); returns that id."""
    label = _label("POST", DEBTOR_NOTES, with_id=False)
    reply = await http.write("POST", DEBTOR_NOTES.collection, endpoint=label, school_id=school_id, body=body)
    data = reply.body.get("data") if isinstance(reply.body, dict) else None
    note_id = identifier(data.get("note_id")) if isinstance(data, dict) else None
    if not isinstance(note_id, int) or isinstance(note_id, bool):
        # The note was made (2xx), but which one it is must be found by reading.
        raise WriteUnknown(
            "d6 accepted the note but its answer carries no usable note_id",
            status_code=reply.status,
            endpoint=label,
            school_id=school_id,
        )
    return note_id


async def update_note(http: WriteHttp, school_id: int, note_id: int, body: NoteBody) -> None:
    """Update Note; `{"status": "Created"}` restores a deleted note."""
    label = _label("PATCH", DEBTOR_NOTES, with_id=True)
    await http.write("PATCH", DEBTOR_NOTES.resource(note_id), endpoint=label, school_id=school_id, body=body)


async def delete_note(http: WriteHttp, school_id: int, note_id: int) -> None:
    """Delete Note (soft: Update Note restores it). A note already deleted is `WriteRefused` with status
    404 and d6's "The note does not exist or has already been deleted." """
    label = _label("DELETE", DEBTOR_NOTES, with_id=True)
    await http.write("DELETE", DEBTOR_NOTES.resource(note_id), endpoint=label, school_id=school_id)


async def delete_promise(http: WriteHttp, school_id: int, promise_id: int) -> None:
    """Delete Promise To Pay: one promise of a note (the note stays)."""
    label = _label("DELETE", PROMISES_TO_PAY, with_id=True)
    await http.write("DELETE", PROMISES_TO_PAY.resource(promise_id), endpoint=label, school_id=school_id)
