"""The client's debtor-note writes: every outcome against the simulator over real HTTP (success, refused
with d6's words, denied, retryable, unknown), one attempt and one budget token per write, and the branches
a real peer cannot produce on demand with `httpx.MockTransport`."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
from collections.abc import AsyncIterator, Callable
from decimal import Decimal
from typing import Any

import httpx
import pytest
import structlog

from bridge.d6 import D6Client
from bridge.d6.budget import NoBudget
from bridge.d6.note_rules import NoteCreate, PromiseEntry
from bridge.d6.writes import (
    D6WriteError,
    WriteDenied,
    WriteOutcome,
    WriteRefused,
    WriteRetryable,
    WriteUnknown,
)
from bridge.errors import D6Error
from bridge.settings import Settings
from bridge.testing.servers import SimulatorServer, free_port
from tests.d6.helpers import FAST, Control, mock_client, sim_settings

TODAY = "2026-03-14"
NOTES = "/v2/finplus/debtmanagement/debtornotes/notes"
SECRET_TEXT = "Mrs Dlamini lost her job in February"
"""A note's text is personal data: it must never reach a log."""


class CountingBudget:
    """A budget that lets everything through and counts the tokens taken."""

    def __init__(self) -> None:
        self.taken = 0
        self.urgent = 0

    async def acquire(self, *, urgent: bool = False) -> float:
        self.taken += 1
        self.urgent += urgent
        return 0.0


@pytest.fixture
def sim(simulator_factory: Callable[..., SimulatorServer]) -> SimulatorServer:
    return simulator_factory(schools=2, learners=30, debtors=20, seed=6, today=TODAY)


@pytest.fixture
async def control(sim: SimulatorServer) -> AsyncIterator[Control]:
    ctl = Control(sim)
    yield ctl
    await ctl.aclose()


@pytest.fixture
def budget() -> CountingBudget:
    return CountingBudget()


@pytest.fixture
async def d6(sim: SimulatorServer, budget: CountingBudget) -> AsyncIterator[D6Client]:
    async with D6Client(sim_settings(sim), budget=budget, **FAST) as client:
        yield client


@pytest.fixture
async def person(d6: D6Client) -> int:
    debtors = await d6.accountable_persons(1000)
    return int(debtors[0]["accountable_person_id"])


def promise_note(person: int) -> NoteCreate:
    return NoteCreate(
        accountable_person_id=person,
        date=dt.date.fromisoformat(TODAY),
        note_type_id=2,
        communication_type_id=3,
        note=SECRET_TEXT,
        promise_to_pays=[
            PromiseEntry(date_promised=dt.date(2026, 4, 1), amount_promised=Decimal("1500.00")),
            PromiseEntry(date_promised=dt.date(2026, 5, 1), amount_promised=Decimal("750")),
        ],
    )


async def writes_sent(control: Control) -> list[tuple[str, int]]:
    return [(r["method"], r["status"]) for r in await control.requests() if r["method"] != "GET"]


def no_secret_in(logs: list[Any]) -> None:
    assert SECRET_TEXT not in repr(logs)


# success


async def test_the_four_writes_succeed_one_request_and_one_token_each(
    d6: D6Client, control: Control, budget: CountingBudget, person: int
) -> None:
    await control.reset()
    budget.taken = 0
    note_id = await d6.create_note(1000, promise_note(person))
    assert isinstance(note_id, int)
    notes = await d6.notes_of(1000, person)
    mine = next(n for n in notes if n["note_id"] == note_id)
    assert (mine["note"], mine["date"], mine["note_type_id"], mine["status"]) == (
        SECRET_TEXT,
        TODAY,
        2,
        "Created",
    )
    promises = mine["promise_to_pays"]
    assert [(p["date_promised"], p["amount_promised"]) for p in promises] == [
        ("2026-04-01", "1500.00"),
        ("2026-05-01", "750.00"),
    ]
    reads = budget.taken - 1  # notes_of is a read: its pages take tokens too

    await d6.update_note(1000, note_id, {"note": "Paid the first part", "communication_type_id": 1})
    await d6.delete_promise(1000, promises[1]["promise_to_pay_id"])
    await d6.delete_note(1000, note_id)
    await d6.update_note(1000, note_id, b'{"status": "Created"}')  # the stored JSON, sent as it is
    assert budget.taken == reads + 5
    assert await writes_sent(control) == [
        ("POST", 201),
        ("PATCH", 200),
        ("DELETE", 200),
        ("DELETE", 200),
        ("PATCH", 200),
    ]
    requests = [r for r in await control.requests() if r["method"] != "GET"]
    assert {r["school_id"] for r in requests} == {1000}
    after = next(n for n in await d6.notes_of(1000, person) if n["note_id"] == note_id)
    assert (after["note"], after["communication_type_id"], after["status"]) == (
        "Paid the first part",
        1,
        "Created",
    )
    assert [p["promise_to_pay_id"] for p in after["promise_to_pays"]] == [promises[0]["promise_to_pay_id"]]


async def test_notes_of_finds_deleted_notes_unless_told_not_to(d6: D6Client, person: int) -> None:
    note_id = await d6.create_note(1000, promise_note(person))
    await d6.delete_note(1000, note_id)
    assert note_id in [n["note_id"] for n in await d6.notes_of(1000, person)]
    assert note_id not in [n["note_id"] for n in await d6.notes_of(1000, person, include_deleted=False)]
    other = await d6.notes_of(1000, person + 1)
    assert all(n["accountable_person_id"] == person + 1 for n in other)


# refused, denied


async def test_refused_keeps_d6s_message_and_validation_errors_verbatim(
    d6: D6Client, control: Control, person: int
) -> None:
    await control.reset()
    body = {"accountable_person_id": 999_999, "date": "14/03/2026", "note_type_id": 1, "note": SECRET_TEXT}
    with structlog.testing.capture_logs() as logs, pytest.raises(WriteRefused) as refused:
        await d6.create_note(1000, body)
    error = refused.value
    assert (error.outcome, error.status_code, error.message) == (
        WriteOutcome.REFUSED,
        400,
        "Validation Failed",
    )
    assert error.validation_errors == {
        "accountable_person_id": "The accountable_person_id is invalid",
        "date": "The Date is not valid date format. Expected format is 'Y-m-d'.",
        "communication_type_id": "The Communication type id field is required unless it is an internal note",
    }
    assert isinstance(error, D6WriteError) and isinstance(error, D6Error)
    assert SECRET_TEXT not in str(error)
    no_secret_in(logs)

    note_id = await d6.create_note(1000, promise_note(person))
    await d6.delete_note(1000, note_id)
    with pytest.raises(WriteRefused) as twice:
        await d6.delete_note(1000, note_id)
    assert (twice.value.status_code, twice.value.message) == (
        404,
        "The note does not exist or has already been deleted.",
    )
    with pytest.raises(WriteRefused) as no_promise:
        await d6.delete_promise(1000, 999_999)
    assert (no_promise.value.status_code, no_promise.value.message) == (
        404,
        "The Promise To Pay does not exist",
    )
    with pytest.raises(WriteRefused) as no_note:
        await d6.update_note(1000, 999_999, {"note": "x"})
    assert no_note.value.status_code == 404
    assert await writes_sent(control) == [
        ("POST", 400),
        ("POST", 201),
        ("DELETE", 200),
        ("DELETE", 404),
        ("DELETE", 404),
        ("PATCH", 404),
    ]


async def test_denied(d6: D6Client, sim: SimulatorServer, control: Control, person: int) -> None:
    await control.call("POST", "/schools/1000/access", {"denied": True})
    with pytest.raises(WriteDenied) as revoked:
        await d6.create_note(1000, promise_note(person))
    assert (revoked.value.outcome, revoked.value.status_code, revoked.value.not_authorised) == (
        WriteOutcome.DENIED,
        401,
        True,
    )
    await control.call("POST", "/schools/1000/access", {"denied": False})
    await control.call("POST", "/writes/fail", {"status": 403})
    with pytest.raises(WriteDenied) as forbidden:
        await d6.create_note(1000, promise_note(person))
    assert (forbidden.value.status_code, forbidden.value.not_authorised, forbidden.value.message) == (
        403,
        False,
        "Forbidden",
    )
    async with D6Client(sim_settings(sim, d6_password="wrong"), **FAST) as stranger:
        with pytest.raises(WriteDenied) as credentials:
            await stranger.delete_note(1000, 1)
    assert (credentials.value.status_code, credentials.value.not_authorised) == (401, False)


# retryable


async def test_429_and_5xx_are_retryable_and_never_retried_here(
    d6: D6Client, control: Control, budget: CountingBudget, person: int
) -> None:
    await control.reset()
    budget.taken = 0
    await control.call("POST", "/writes/fail", {"status": 429, "retry_after": "2", "times": 1})
    with pytest.raises(WriteRetryable) as limited:
        await d6.create_note(1000, promise_note(person))
    assert (limited.value.outcome, limited.value.status_code, limited.value.retry_after) == (
        WriteOutcome.RETRYABLE,
        429,
        2.0,
    )
    assert limited.value.message == "Rate limits have been reached, please slow down your requests"
    await control.call("POST", "/writes/fail", {"status": 500, "times": 1})
    with pytest.raises(WriteRetryable) as broken:
        await d6.delete_note(1000, 1)
    assert (broken.value.status_code, broken.value.retry_after, broken.value.message) == (
        500,
        None,
        "Internal Server Error",
    )
    await control.call("POST", "/writes/fail", {"status": 503, "retry_after": 7, "times": 1})
    with pytest.raises(WriteRetryable) as unavailable:
        await d6.delete_promise(1000, 1)
    assert (unavailable.value.status_code, unavailable.value.retry_after) == (503, 7.0)
    assert await writes_sent(control) == [("POST", 429), ("DELETE", 500), ("DELETE", 503)]
    assert budget.taken == 3
    assert (await control.call("GET", "/writes"))["failed"] == 3


async def test_a_write_that_could_not_connect_is_retryable() -> None:
    settings = Settings(d6_base_url=f"http://127.0.0.1:{free_port()}/api", d6_timeout_seconds=2.0)
    async with D6Client(settings, budget=NoBudget(), **FAST) as d6:
        with pytest.raises(WriteRetryable) as refused_connection:
            await d6.delete_note(1000, 1)
    assert refused_connection.value.message.startswith("not sent")
    assert refused_connection.value.status_code is None


# unknown


async def test_a_dropped_answer_is_unknown_and_the_note_was_made(
    d6: D6Client, control: Control, budget: CountingBudget, person: int
) -> None:
    before = {n["note_id"] for n in await d6.notes_of(1000, person)}
    await control.reset()
    budget.taken = 0
    await control.call("POST", "/writes/drop", {"times": 1})
    with structlog.testing.capture_logs() as logs, pytest.raises(WriteUnknown) as unknown:
        await d6.create_note(1000, promise_note(person))
    assert (unknown.value.outcome, unknown.value.status_code) == (WriteOutcome.UNKNOWN, None)
    assert [entry["event"] for entry in logs if entry["log_level"] == "warning"] == [
        "d6_write_outcome_unknown"
    ]
    no_secret_in(logs)
    assert budget.taken == 1
    assert await writes_sent(control) == [("POST", 0)]  # one attempt: never sent again by the client
    made = [n for n in await d6.notes_of(1000, person) if n["note_id"] not in before]
    assert [(n["note"], len(n["promise_to_pays"])) for n in made] == [(SECRET_TEXT, 2)]


async def test_a_timeout_after_sending_is_unknown(
    sim: SimulatorServer, control: Control, person: int
) -> None:
    async with D6Client(sim_settings(sim, d6_timeout_seconds=0.2), **FAST) as slow:
        before = {n["note_id"] for n in await slow.notes_of(1000, person)}
        await control.faults(latency_ms=600, endpoint="debtornotes/notes", times=1)
        with pytest.raises(WriteUnknown) as unknown:
            await slow.create_note(1000, promise_note(person))
        assert "timed out" in unknown.value.message
        await asyncio.sleep(0.8)  # d6 finishes the write after the client gave up
        made = [n for n in await slow.notes_of(1000, person) if n["note_id"] not in before]
    assert len(made) == 1


# branches a real peer cannot produce on demand


def mock(handler: Callable[[httpx.Request], httpx.Response]) -> D6Client:
    return mock_client(handler)


async def test_bodies_are_sent_as_json_with_the_school_header() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(
            201, json={"success": True, "message": "Note created successfully", "data": {"note_id": "2543"}}
        )

    body = promise_note(40)
    async with mock(handler) as d6:
        ids = [
            await d6.create_note(1000, body),
            await d6.create_note(
                1000, json.loads(json.dumps({"accountable_person_id": 40, "date": TODAY, "note_type_id": 3}))
            ),
            await d6.create_note(1000, b'{"accountable_person_id": 40}'),
        ]
    assert ids == [2543, 2543, 2543]
    first = seen[0]
    assert (first.method, first.url.path) == ("POST", "/api/v2/finplus/debtmanagement/debtornotes/notes")
    assert first.headers["HTTP-X-SCHOOLID"] == "1000"
    assert first.headers["HTTP-X-USERNAME"] == "user"
    assert first.headers["content-type"] == "application/json"
    assert json.loads(first.content) == {
        "accountable_person_id": 40,
        "date": TODAY,
        "note_type_id": 2,
        "communication_type_id": 3,
        "note": SECRET_TEXT,
        "promise_to_pays": [
            {"date_promised": "2026-04-01", "amount_promised": "1500.00"},
            {"date_promised": "2026-05-01", "amount_promised": "750"},
        ],
    }
    assert seen[2].content == b'{"accountable_person_id": 40}'


@pytest.mark.parametrize(
    ("answer", "kind"),
    [
        (httpx.Response(201, json={"success": True, "data": {}}), WriteUnknown),
        (httpx.Response(201, text="<html>ok</html>"), WriteUnknown),
        (httpx.Response(200, json=[1, 2]), WriteUnknown),
        (httpx.Response(501, json={"success": False, "message": "Not Implemented"}), WriteRefused),
        (httpx.Response(409, json={"success": False, "message": "Conflict"}), WriteRefused),
        (httpx.Response(502, text="<html>Bad gateway</html>"), WriteRetryable),
        (
            httpx.Response(
                401,
                json={"error": "Integration not activated", "error_description": "Please activate the API"},
            ),
            WriteDenied,
        ),
    ],
)
async def test_answers_a_real_peer_rarely_gives(answer: httpx.Response, kind: type[D6WriteError]) -> None:
    async with mock(lambda _request: answer) as d6:
        with pytest.raises(kind) as raised:
            await d6.create_note(1000, {"accountable_person_id": 40})
    assert raised.value.endpoint == "POST /v2/finplus/debtmanagement/debtornotes/notes"
    assert raised.value.school_id == 1000


@pytest.mark.parametrize(
    ("failure", "kind"),
    [
        (httpx.ConnectError("refused"), WriteRetryable),
        (httpx.ConnectTimeout("slow to connect"), WriteRetryable),
        (httpx.PoolTimeout("no connection free"), WriteRetryable),
        (httpx.ReadTimeout("no answer"), WriteUnknown),
        (httpx.RemoteProtocolError("Server disconnected without sending a response."), WriteUnknown),
        (httpx.ReadError("connection reset"), WriteUnknown),
    ],
)
async def test_transport_failures_split_by_whether_the_request_left(
    failure: httpx.TransportError, kind: type[D6WriteError]
) -> None:
    calls = 0

    def handler(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        raise failure

    async with mock(handler) as d6:
        with pytest.raises(kind):
            await d6.update_note(1000, 5, {"note": SECRET_TEXT})
    assert calls == 1  # never repeated by the client


@pytest.mark.parametrize(
    ("events", "kind"),
    [
        (["connection.connect_tcp.started", "connection.connect_tcp.complete"], WriteRetryable),
        (["connection.connect_tcp.complete", "http11.send_request_headers.started"], WriteUnknown),
        ([], WriteUnknown),  # a transport that does not trace: it may have been sent
    ],
)
async def test_what_the_transport_traced_decides_whether_a_lost_request_left(
    events: list[str], kind: type[D6WriteError]
) -> None:
    async def handler(request: httpx.Request) -> httpx.Response:
        trace = request.extensions["trace"]
        for name in events:
            await trace(name, {})
        raise httpx.ReadError("connection lost")

    async with mock_client(handler) as d6:  # type: ignore[arg-type]
        with pytest.raises(kind):
            await d6.delete_note(1000, 5)
