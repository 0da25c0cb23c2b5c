"""Cursor pagination over a d6 collection, as an async iterator of checked pages.

Page size: the first request of a scan asks `limit=50`, the documented `max_allowed_limit`, as a guess;
each answer's `meta.max_allowed_limit` is remembered per endpoint (in a dict the client owns) and used
from the next page on. Against d6 as documented, every scan (the very first included) therefore costs
exactly ceil(n / 50) requests. Asking without a limit first and learning the maximum would cost one
small extra page on the first scan; asking the remembered maximum costs the floor in steady state.
If the guess is refused (400 naming `limit`, meaning d6 lowered its maximum), the page is asked again
without `limit` once, the real maximum is learned from its meta, and the scan goes on.

Stop rules: no `meta.next_cursor` (the last page, short or not); never `meta.cursor` (some doc examples
show it: it is where this page started, and following it would loop). A short page (fewer records than
the page size in effect: the limit asked, or the smaller `meta.limit` d6 says it used) that still
carries a `next_cursor` is followed, with a warning: ending the scan there would turn every later
record into a false `removed`, so the contradiction costs one request instead of an event.
A `next_cursor` already used in this scan means d6 is looping and the scan cannot be trusted to be
complete, so it raises `D6MalformedResponse` rather than ending quietly: no snapshot may be diffed from it.

A body of the wrong shape (not an object, `data` not a list, `meta` missing or not an object, a record
not an object, a `next_cursor` that is not text) raises `D6MalformedResponse`, never an empty page.

Raw pages (`raw=True`, what the poller scans with: docs/development.md#the-diff-fast-path): each record is
kept as the bytes d6 sent (`Page.rows`), decoded only when asked (`Page.record`), so the poller can skip
the records whose bytes it has seen before. The page itself is checked as above, at once, and the paging
rules are the same; a record's own checks (an object, a usable id) come when it is decoded, after the last
page, with the same errors; a scan with a bad record still fails whole, before anything is diffed.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any

import msgspec
import structlog

from bridge.d6.endpoints import Endpoint
from bridge.d6.http import D6Http, decode_json, error_for
from bridge.d6.records import Record
from bridge.errors import D6MalformedResponse, D6ValidationError

log = structlog.get_logger(__name__)

GUESS_LIMIT = 50
"""The documented `max_allowed_limit`; the first page of the first scan asks for this many."""


MAX_CURSOR_LENGTH = 2048
"""d6's cursors are short base64 text; a longer one could not even be sent back in a URL."""


class Page(msgspec.Struct, kw_only=True):
    """One page of a scan: its records (normalised), d6's `meta` as sent, its number (from 1)."""

    records: list[Record]
    meta: dict[str, Any]
    number: int
    limit: int | None
    """The page size asked for (None when the page was asked without `limit`)."""
    rows: list[msgspec.Raw] | None = None
    """A raw page's records as d6 sent them, undecoded (then `records` is empty): `record(i)` decodes one."""
    transform: Callable[[Record], Record] | None = None
    endpoint: str = ""
    school_id: int | None = None

    @classmethod
    def of_raw(
        cls,
        body: bytes,
        *,
        number: int,
        limit: int | None,
        transform: Callable[[Record], Record] | None,
        endpoint: str,
        school_id: int | None,
    ) -> Page:
        """A raw page from d6's body: its shape checked (`raw_listing`), its records kept as sent."""
        rows, meta = raw_listing(body, endpoint=endpoint, school_id=school_id)
        return cls(
            records=[],
            meta=meta,
            number=number,
            limit=limit,
            rows=rows,
            transform=transform,
            endpoint=endpoint,
            school_id=school_id,
        )

    def record(self, index: int) -> Record:
        """Row `index` of a raw page, decoded, checked and normalised as `paginate` does it for a page that
        is not raw (same errors, the page named)."""
        assert self.rows is not None
        value = _DECODER.decode(self.rows[index])
        if not isinstance(value, dict):
            raise D6MalformedResponse(
                f"record {index} is not an object (got {type(value).__name__})",
                status_code=200,
                endpoint=self.endpoint,
                school_id=self.school_id,
            )
        if self.transform is None:
            return value
        try:
            return self.transform(value)
        except D6MalformedResponse as error:  # where the record was; its values stay out
            raise D6MalformedResponse(
                f"{error.message} (page {self.number})",
                status_code=200,
                endpoint=self.endpoint,
                school_id=self.school_id,
            ) from None


class _RawListing(msgspec.Struct):
    """A listing whose records stay undecoded (`msgspec.Raw`: the bytes of each, no copy)."""

    data: list[msgspec.Raw]
    meta: dict[str, Any]


_RAW_LISTING = msgspec.json.Decoder(_RawListing)
_DECODER = msgspec.json.Decoder()
_ENCODER = msgspec.json.Encoder()


def raw_listing(
    content: bytes, *, endpoint: str, school_id: int | None
) -> tuple[list[msgspec.Raw], dict[str, Any]]:
    """`check_listing` of a body still in bytes, its records left undecoded. A body this cannot read is
    decoded as a whole and checked by `check_listing`, for the same error (or, should that find nothing
    wrong, its records taken re-encoded)."""
    try:
        listing = _RAW_LISTING.decode(content)
    except (msgspec.DecodeError, msgspec.ValidationError):
        body = decode_json(content, status=200, endpoint=endpoint, school_id=school_id)
        data, meta = check_listing(body, endpoint=endpoint, school_id=school_id)
        return [msgspec.Raw(_ENCODER.encode(record)) for record in data], meta
    meta = listing.meta
    _check_cursor(
        meta,
        lambda problem: D6MalformedResponse(problem, status_code=200, endpoint=endpoint, school_id=school_id),
    )
    return listing.data, meta


def check_listing(body: Any, *, endpoint: str, school_id: int | None) -> tuple[list[Record], dict[str, Any]]:
    """`{"data": [objects], "meta": {...}}` or `D6MalformedResponse`."""

    def malformed(problem: str) -> D6MalformedResponse:
        return D6MalformedResponse(problem, status_code=200, endpoint=endpoint, school_id=school_id)

    if not isinstance(body, dict):
        raise malformed(f"expected a JSON object with data and meta, got {type(body).__name__}")
    data = body.get("data")
    if not isinstance(data, list):
        raise malformed(f"`data` is not a list (got {type(data).__name__})")
    meta = body.get("meta")
    if not isinstance(meta, dict):
        raise malformed(f"`meta` is missing or not an object (got {type(meta).__name__})")
    for index, record in enumerate(data):
        if not isinstance(record, dict):
            raise malformed(f"record {index} is not an object (got {type(record).__name__})")
    _check_cursor(meta, malformed)
    return data, meta


def _check_cursor(meta: dict[str, Any], malformed: Callable[[str], D6MalformedResponse]) -> None:
    next_cursor = meta.get("next_cursor")
    if next_cursor is not None and not isinstance(next_cursor, str):
        raise malformed(f"`meta.next_cursor` is not text (got {type(next_cursor).__name__})")
    if isinstance(next_cursor, str) and len(next_cursor) > MAX_CURSOR_LENGTH:
        raise malformed(f"`meta.next_cursor` is {len(next_cursor)} characters (at most {MAX_CURSOR_LENGTH})")


def _positive_int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int) and value > 0:
        return value
    if isinstance(value, str) and value.isdigit() and int(value) > 0:
        return int(value)
    return None


async def paginate(
    http: D6Http,
    endpoint: Endpoint,
    *,
    school_id: int | None,
    params: Mapping[str, str],
    limits: dict[str, int],
    transform: Callable[[Record], Record],
    raw: bool = False,
) -> AsyncIterator[Page]:
    """Every page of `endpoint` (filtered by `params`), in order; see the module docstring for the rules.
    With `raw`, pages keep their records undecoded (`Page.rows`)."""
    label = f"GET {endpoint.collection}"
    bound = log.bind(endpoint=endpoint.collection, school_id=school_id)
    used: set[str] = set()  # every cursor this scan has sent
    cursor: str | None = None
    number = 0
    while True:
        number += 1
        limit: int | None = limits.get(endpoint.name, GUESS_LIMIT)
        query = dict(params)
        if cursor is not None:
            query["cursor"] = cursor
        query["limit"] = str(limit)
        reply = await http.send(
            "GET", endpoint.collection, endpoint=label, school_id=school_id, params=query, raw=raw
        )
        if reply.status == 400 and _refuses_limit(reply.body):
            bound.warning("d6_limit_refused", limit=limit)
            limits.pop(endpoint.name, None)
            limit = None
            del query["limit"]
            reply = await http.send(
                "GET", endpoint.collection, endpoint=label, school_id=school_id, params=query, raw=raw
            )
        if reply.status != 200:
            raise error_for(reply.status, reply.body, endpoint=label, school_id=school_id)
        raw_page = None
        if raw:
            raw_page = Page.of_raw(
                reply.body,
                number=number,
                limit=limit,
                transform=transform,
                endpoint=label,
                school_id=school_id,
            )
            data: list[Any] = raw_page.rows or []
            meta = raw_page.meta
        else:
            data, meta = check_listing(reply.body, endpoint=label, school_id=school_id)
        maximum = _positive_int(meta.get("max_allowed_limit"))
        if maximum is not None:
            limits[endpoint.name] = maximum
        if raw_page is not None:
            yield raw_page
        else:
            try:
                records = [transform(record) for record in data]
            except (
                D6MalformedResponse
            ) as error:  # where the record was; its values stay out (docs/personal-data.md)
                raise D6MalformedResponse(
                    f"{error.message} (page {number})", status_code=200, endpoint=label, school_id=school_id
                ) from None
            yield Page(records=records, meta=meta, number=number, limit=limit)

        next_cursor = meta.get("next_cursor")
        if not next_cursor:
            return
        in_effect = _page_size(limit, meta)
        if in_effect is not None and len(data) < in_effect:
            # d6 says both "that was all" (a short page) and "there is more". Stopping here would make
            # every record after this page look removed; following costs one request and the loop
            # guard below still ends a cursor that comes back.
            bound.warning("d6_short_page_with_next_cursor", page=number, records=len(data), limit=in_effect)
        if next_cursor in used:
            bound.warning("d6_cursor_repeated", page=number)
            raise D6MalformedResponse(
                f"d6 repeated a cursor on page {number}: the scan cannot be complete",
                status_code=200,
                endpoint=label,
                school_id=school_id,
            )
        used.add(next_cursor)
        cursor = next_cursor


def _page_size(asked: int | None, meta: dict[str, Any]) -> int | None:
    """The page size d6 applied: what was asked, or the smaller `meta.limit` (d6 clamped it)."""
    said = _positive_int(meta.get("limit"))
    if asked is None:
        return said
    return min(asked, said) if said is not None else asked


def _refuses_limit(body: Any) -> bool:
    """A 400 whose validation errors name `limit` (e.g. "The Limit maximum is 50")."""
    error = error_for(400, body, endpoint="")
    return isinstance(error, D6ValidationError) and "limit" in error.details.get("validation_errors", {})
