"""Branches of the client that a real peer can't produce on demand, with `httpx.MockTransport`."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

import httpx
import pytest
import structlog

from bridge.d6.http import parse_error, parse_retry_after
from bridge.errors import (
    D6AuthError,
    D6MalformedResponse,
    D6NotAuthorised,
    D6NotFound,
    D6RateLimited,
    D6ServerError,
    D6TransportError,
    D6ValidationError,
)
from tests.d6.helpers import listing, mock_client

LEARNERS = "/api/v2/finplus/debtmanagement/learners"


def learner(i: int) -> dict[str, Any]:
    return {"learner_id": str(i), "first_name": f"L{i}"}


async def test_headers_versioned_path_and_query() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return listing([learner(1)])

    async with mock_client(handler) as d6:
        records = await d6.learners(1000, include_parents=True, debtor_code="1001")
    request = seen[0]
    assert request.url.host == "d6.test"
    assert request.url.path == LEARNERS
    assert request.headers["HTTP-X-USERNAME"] == "user"
    assert request.headers["HTTP-X-PASSWORD"] == "pw-secret-1"
    assert request.headers["HTTP-X-SCHOOLID"] == "1000"
    assert dict(request.url.params) == {
        "all_accounts": "1",
        "include_parents": "1",
        "debtor_code": "1001",
        "limit": "50",
    }
    assert records == [{"learner_id": 1, "first_name": "L1"}]


async def test_calls_without_a_school_send_no_school_header() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return listing([{"school_id": 1000, "api_type_id": 8}])

    async with mock_client(handler) as d6:
        await d6.client_integrations(school_id=1000, api_type_id=8)
    assert "HTTP-X-SCHOOLID" not in seen[0].headers
    assert seen[0].url.params["school_id"] == "1000"
    assert seen[0].url.params["api_type_id"] == "8"


async def test_meta_cursor_is_never_followed() -> None:
    calls = 0

    def handler(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        # d6's doc examples: a full page with `meta.cursor` (where it started), no next_cursor
        return listing([learner(i) for i in range(50)], cursor="eyJpZCI6MjU0NiwiX2JhY2t3YXJkIjpmYWxzZX0")

    async with mock_client(handler) as d6:
        pages = [page async for page in d6.scan_learners(1000)]
    assert calls == 1
    assert len(pages) == 1 and len(pages[0].records) == 50 and pages[0].number == 1


async def test_short_page_with_a_next_cursor_is_followed_so_later_records_are_not_lost() -> None:
    """A short page that says "more" is followed: ending there would make later records look removed."""
    pages = {None: ("a", [1, 2]), "a": ("b", [3, 4, 5]), "b": (None, [6])}

    def handler(request: httpx.Request) -> httpx.Response:
        nxt, ids = pages[request.url.params.get("cursor")]
        return listing([learner(i) for i in ids], next_cursor=nxt)

    async with mock_client(handler) as d6:
        records = await d6.learners(1000)
    assert [r["learner_id"] for r in records] == [1, 2, 3, 4, 5, 6]


async def test_short_pages_that_keep_repeating_a_cursor_fail_the_scan() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return listing([learner(1), learner(2)], next_cursor="again")

    async with mock_client(handler) as d6:
        with pytest.raises(D6MalformedResponse, match="repeated a cursor"):
            await d6.learners(1000)


async def test_short_page_is_measured_against_the_limit_d6_says_it_used() -> None:
    """d6 clamping `limit=50` to 20 (and saying so in meta.limit) must not end the scan after 20."""
    pages = {None: ("a", 20), "a": ("b", 20), "b": (None, 5)}

    def handler(request: httpx.Request) -> httpx.Response:
        cursor = request.url.params.get("cursor")
        nxt, count = pages[cursor]
        meta: dict[str, Any] = {"limit": 20, "max_allowed_limit": 20}
        if nxt:
            meta["next_cursor"] = nxt
        return httpx.Response(200, json={"data": [learner(i) for i in range(count)], "meta": meta})

    async with mock_client(handler) as d6:
        assert len(await d6.learners(1000)) == 45
        assert d6.page_limits["learners"] == 20


async def test_page_limit_is_learned_and_remembered_per_endpoint() -> None:
    asked: list[str | None] = []

    def handler(request: httpx.Request) -> httpx.Response:
        asked.append(request.url.params.get("limit"))
        cursor = request.url.params.get("cursor")
        limit = int(request.url.params["limit"])
        if cursor is None:
            return listing(
                [learner(i) for i in range(limit)], limit=limit, max_allowed_limit=100, next_cursor="x"
            )
        return listing([learner(i) for i in range(3)], limit=limit, max_allowed_limit=100)

    async with mock_client(handler) as d6:
        await d6.learners(1000)
        await d6.learners(1000)
    assert asked == ["50", "100", "100", "100"]


async def test_a_refused_limit_guess_is_asked_again_without_limit_once() -> None:
    asked: list[str | None] = []

    def handler(request: httpx.Request) -> httpx.Response:
        limit = request.url.params.get("limit")
        asked.append(limit)
        if limit is not None and int(limit) > 25:
            body = {
                "success": False,
                "message": "Validation Failed",
                "validation_errors": {"limit": "The Limit maximum is 25"},
            }
            return httpx.Response(400, json=body)
        return listing([learner(1)], limit=int(limit or 10), max_allowed_limit=25)

    async with mock_client(handler) as d6:
        await d6.learners(1000)
        await d6.learners(1000)
    assert asked == ["50", None, "25"]


async def test_repeated_cursor_raises() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return listing([learner(i) for i in range(50)], next_cursor="same")

    async with mock_client(handler) as d6:
        with pytest.raises(D6MalformedResponse, match="repeated"):
            await d6.learners(1000)


@pytest.mark.parametrize(
    "body",
    [
        b"[1, 2]",
        b'{"data": {"learner_id": 1}, "meta": {}}',
        b'{"data": []}',
        b'{"data": [], "meta": []}',
        b'{"data": [1, 2], "meta": {}}',
        b'{"data": [{"learner_id": 1}], "meta": {"next_cursor": 5}}',
        b'{"data": [{"first_name": "no id"}], "meta": {}}',
        b'{"data": [',
        b"",
    ],
)
async def test_wrong_shapes_are_malformed_never_an_empty_page(body: bytes) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=body, headers={"content-type": "application/json"})

    async with mock_client(handler) as d6:
        with pytest.raises(D6MalformedResponse):
            await d6.learners(1000)


async def test_wrong_content_type_is_malformed() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, text="<html>maintenance</html>", headers={"content-type": "text/html"})

    async with mock_client(handler) as d6:
        with pytest.raises(D6MalformedResponse, match="content type"):
            await d6.school(1000)


async def test_single_record_must_be_an_object() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json=[{"school_id": 1000}])

    async with mock_client(handler) as d6:
        with pytest.raises(D6MalformedResponse):
            await d6.school(1000)


def test_parse_error_both_shapes() -> None:
    v2 = parse_error(
        {"success": False, "message": "Validation Failed", "validation_errors": {"limit": "max 50"}}, 400
    )
    assert v2.message == "Validation Failed" and v2.validation_errors == {"limit": "max 50"}
    v1_text = parse_error({"error": "Not Found", "error_description": "The note does not exist."}, 404)
    assert v1_text.message == "Not Found: The note does not exist." and v1_text.validation_errors == {}
    v1_object = parse_error(
        {"error": "Validation failed", "error_description": {"note_id": "The note_id is invalid"}}, 400
    )
    assert v1_object.message == "Validation failed"
    assert v1_object.validation_errors == {"note_id": "The note_id is invalid"}
    assert parse_error("<html>Bad gateway</html>", 502).message == "<html>Bad gateway</html>"
    assert parse_error(None, 500).message == "HTTP 500"


@pytest.mark.parametrize(
    ("status", "body", "error"),
    [
        (401, {"success": False, "message": "Client has not authorised access"}, D6NotAuthorised),
        (
            401,
            {"error": "Unauthorized", "error_description": "Client has not authorised access"},
            D6NotAuthorised,
        ),
        (401, {"error": "Unauthorized", "error_description": "Invalid username or password"}, D6AuthError),
        (403, {"success": False, "message": "Forbidden"}, D6AuthError),
        (404, {"error": "Not Found", "error_description": "The learner does not exist"}, D6NotFound),
        (400, {"error": "Validation failed", "error_description": {"x": "bad"}}, D6ValidationError),
        (422, {"success": False, "message": "Unprocessable"}, D6ValidationError),
        (501, {"success": False, "message": "Not Implemented"}, D6ServerError),
    ],
)
async def test_error_mapping(status: int, body: dict[str, Any], error: type[Exception]) -> None:
    calls = 0

    def handler(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        return httpx.Response(status, json=body)

    async with mock_client(handler) as d6:
        with pytest.raises(error) as raised:
            await d6.learner(1000, 5)
    assert type(raised.value) is error
    assert raised.value.status_code == status
    assert raised.value.school_id == 1000
    assert calls == 1  # none of these is retried
    if error is D6ValidationError and status == 400:
        assert raised.value.details["validation_errors"] == {"x": "bad"}


def test_retry_after_parsing() -> None:
    now = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)
    assert parse_retry_after("3", now=now) == 3.0
    assert parse_retry_after(" 1.5 ", now=now) == 1.5
    assert parse_retry_after(format_datetime(now + timedelta(seconds=7), usegmt=True), now=now) == 7.0
    assert parse_retry_after("Thu, 01 Jan 2026 11:00:00 GMT", now=now) == 0.0  # in the past
    assert parse_retry_after("-4", now=now) == 0.0
    assert parse_retry_after("soon", now=now) is None
    assert parse_retry_after("", now=now) is None
    assert parse_retry_after(None, now=now) is None


async def test_429_with_retry_after_http_date_is_honoured_and_capped() -> None:
    times: list[float] = []

    def handler(request: httpx.Request) -> httpx.Response:
        times.append(time.monotonic())
        if len(times) == 1:
            when = datetime.now(UTC) + timedelta(hours=1)
            return httpx.Response(
                429,
                json={"success": False, "message": "Rate limits have been reached"},
                headers={"Retry-After": format_datetime(when, usegmt=True)},
            )
        return httpx.Response(200, json={"school_id": 1000})

    async with mock_client(handler, retry_after_cap=0.3) as d6:
        assert await d6.school(1000) == {"school_id": 1000}
    assert len(times) == 2
    assert 0.3 <= times[1] - times[0] < 1.0  # an hour asked, capped at 0.3 s


async def test_429_with_retry_after_seconds_waits_that_long() -> None:
    times: list[float] = []

    def handler(request: httpx.Request) -> httpx.Response:
        times.append(time.monotonic())
        if len(times) == 1:
            return httpx.Response(
                429, json={"success": False, "message": "slow down"}, headers={"Retry-After": "1"}
            )
        return httpx.Response(200, json={"school_id": 1000})

    async with mock_client(handler) as d6:
        await d6.school(1000)
    assert 1.0 <= times[1] - times[0] < 1.5


async def test_429_without_retry_after_backs_off_then_raises_rate_limited() -> None:
    calls = 0

    def handler(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        return httpx.Response(429, json={"success": False, "message": "Rate limits have been reached"})

    async with mock_client(handler, max_attempts=3) as d6:
        with pytest.raises(D6RateLimited):
            await d6.school(1000)
    assert calls == 3


async def test_connection_errors_are_retried_then_surface() -> None:
    calls = 0

    def handler(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        raise httpx.ConnectError("refused", request=request)

    statuses: list[int | str] = []
    async with mock_client(handler, on_response=lambda e, s, t: statuses.append(s)) as d6:
        with pytest.raises(D6TransportError):
            await d6.school(1000)
    assert calls == 4
    assert statuses == ["connect_error"] * 4


async def test_on_response_hook_sees_every_attempt_with_endpoint_labels() -> None:
    calls = 0

    def handler(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        if calls == 1:
            return httpx.Response(503, json={"success": False, "message": "Service Unavailable"})
        return httpx.Response(200, json={"learner_id": "5"})

    seen: list[tuple[str, int | str]] = []
    async with mock_client(handler, on_response=lambda e, s, t: seen.append((e, s))) as d6:
        assert await d6.learner(1000, 5) == {"learner_id": 5}
    label = "GET /v2/finplus/debtmanagement/learners/{id}"
    assert seen == [(label, 503), (label, 200)]


async def test_change_state_body_and_405_fallback_is_remembered() -> None:
    seen: list[tuple[str, Any]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append((request.method, json.loads(request.content)))
        if request.method == "POST":
            return httpx.Response(405, json={"success": False, "message": "Method Not Allowed"})
        data = {"school_id": 1000, "api_type_id": 8, "activated_by_integrator": "Yes"}
        return httpx.Response(200, json={"success": True, "message": "ok", "data": data})

    async with mock_client(handler) as d6:
        first = await d6.change_integration_state(1000, 8, True)
        await d6.change_integration_state(1000, 8, True)
    assert first["activated_by_integrator"] == "Yes"
    body = {"school_id": 1000, "api_type_id": 8, "state": True}
    assert seen == [("POST", body), ("PATCH", body), ("PATCH", body)]


async def test_change_state_already_in_the_other_state_is_an_error() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(400, json={"success": False, "message": "Integration already activated"})

    async with mock_client(handler) as d6:
        # asked to activate: the goal is reached (no data in the answer: the known fields come back)
        record = await d6.change_integration_state(1000, 8, True)
        assert record == {"school_id": 1000, "api_type_id": 8, "activated_by_integrator": "Yes"}
        with pytest.raises(D6ValidationError):
            await d6.change_integration_state(1000, 8, False)


async def test_credentials_never_reach_the_logs() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(500, json={"success": False, "message": "Internal Server Error"})

    with structlog.testing.capture_logs() as logs:
        async with mock_client(handler, max_attempts=2) as d6:
            with pytest.raises(D6ServerError):
                await d6.learner(1000, 5)
    assert logs, "retries are logged"
    assert "pw-secret-1" not in repr(logs)
    assert any(entry["event"] == "d6_retry" for entry in logs)


async def test_a_cursor_too_long_to_send_back_fails_the_scan_as_malformed() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return listing([learner(i) for i in range(50)], next_cursor="z" * 70_000)

    async with mock_client(handler) as d6:
        with pytest.raises(D6MalformedResponse, match="next_cursor` is 70000 characters"):
            await d6.learners(1000)
