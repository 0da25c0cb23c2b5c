"""The `/api` mount: a lean ASGI handler in front of the d6 endpoints.

It is plain ASGI rather than Litestar routes because it must do what a framework would smooth over:
send truncated JSON, wrong shapes and exact d6 error bodies, drop a connection after a write commits,
and serve a 10,000-record scan in well under a second. Every request passes the same steps: route,
credentials, faults, answer, count.
"""

from __future__ import annotations

import asyncio
import hmac
import time
from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qsl, unquote

import msgspec

from bridge.simulator.config import SimulatorConfig
from bridge.simulator.endpoints import Reply, failure
from bridge.simulator.faults import FaultPlan, Faults, error_body
from bridge.simulator.finance_endpoints import FinanceEndpoints
from bridge.simulator.note_writes import NoteWrites
from bridge.simulator.state import School, World
from bridge.simulator.stats import RequestEntry, RequestStats
from bridge.simulator.table import Cursor, encode_cursor
from bridge.simulator.validation import as_int
from bridge.simulator.write_faults import WriteFaults

ENCODER = msgspec.json.Encoder()
PREFIX = "/api"
CLIENT_INTEGRATIONS = "/v2/settings/clientintegrations"
DEBT = "/v2/finplus/debtmanagement/"
NOTES = "debtornotes/"
SCHOOL_RESOURCES = ("accountablepersons", "learners")
FINANCE_RESOURCES = (
    "ageanalysis",
    "financialtransactions",
    "debtornotes/notes",
    "debtornotes/promisetopays",
    "debtornotes/notetypes",
    "debtornotes/communicationtypes",
    "transactiontypes",
    "transactioncategories",
)
REPORTS = ("ageanalysis", "financialtransactions")
"""Reports have no `/{id}` form."""
WRITABLE_NOTES = "debtornotes/notes"
WRITABLE_PROMISES = "debtornotes/promisetopays"
JSON_HEADERS = [(b"content-type", b"application/json")]
DROPPED = 0
"""The status the request log gives a write whose connection was dropped: no answer was sent."""

Scope = Mapping[str, Any]
Receive = Any
Send = Any


def not_allowed(methods: tuple[str, ...]) -> Reply:
    reply = failure(405, "Method Not Allowed")
    reply.headers.append((b"allow", ", ".join(methods).encode()))
    return reply


def v1_error(status: int, error: str, description: str) -> Reply:
    return Reply(status, {"error": error, "error_description": description})


class D6Api:
    """Everything d6 serves, with the simulator's faults and counters wrapped around it."""

    def __init__(
        self,
        world: World,
        config: SimulatorConfig,
        faults: Faults,
        stats: RequestStats,
        writes: WriteFaults | None = None,
    ) -> None:
        self.config = config
        self.faults = faults
        self.stats = stats
        self.writes = writes if writes is not None else WriteFaults()
        self.endpoints = FinanceEndpoints(world, config)
        self._username = config.username.encode()
        self._password = config.password.encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = time.time()
        method: str = scope["method"]
        raw_path: bytes = scope.get("raw_path") or (scope.get("root_path", "") + scope["path"]).encode()
        path = unquote(raw_path.decode("latin-1"))
        path = path[len(PREFIX) :] if path.startswith(PREFIX) else path
        path = path.rstrip("/") or "/"
        query = dict(parse_qsl(scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True))
        headers: dict[bytes, bytes] = {}
        for name, value in scope["headers"]:
            if name.startswith(b"http-x-"):
                headers[name] = value
        school_header = (
            headers[b"http-x-schoolid"].decode("latin-1") if b"http-x-schoolid" in headers else None
        )
        school_id = as_int(school_header.strip()) if school_header is not None else None
        body = await read_body(receive) if method in ("POST", "PATCH", "PUT") else b""

        endpoint, reply = await self._answer(method, path, query, headers, school_id, body)
        self.stats.record(
            f"{method} {endpoint}",
            RequestEntry(
                t=started,
                method=method,
                path=PREFIX + path,
                query=query,
                school_id=school_id,
                status=DROPPED if reply.drop else reply.status,
            ),
        )
        if reply.drop:
            await drop_connection(receive, send)
            return
        encoded = reply.body if isinstance(reply.body, bytes) else ENCODER.encode(reply.body)
        response_headers = [*JSON_HEADERS, (b"content-length", str(len(encoded)).encode()), *reply.headers]
        await send({"type": "http.response.start", "status": reply.status, "headers": response_headers})
        await send({"type": "http.response.body", "body": encoded})

    async def _answer(
        self,
        method: str,
        path: str,
        query: dict[str, str],
        headers: dict[bytes, bytes],
        school_id: int | None,
        body: bytes,
    ) -> tuple[str, Reply]:
        """(endpoint template for the counters, the reply); a faulted request counts once against `times`."""
        endpoint, resource, record_id = route(path)
        plan = self.faults.plan(school_id, PREFIX + path)
        if plan is None:
            return endpoint, self._dispatch(method, resource, record_id, query, headers, body)
        fired = False
        if plan.latency > 0:
            fired = True
            await asyncio.sleep(plan.latency)
        if plan.rate_limited or plan.error:
            status = 429 if plan.rate_limited else plan.spec.error_status
            reply = Reply(status, error_body(status, plan.spec.error_body), headers=plan.headers)
            fired = True
        else:
            reply = self._dispatch(method, resource, record_id, query, headers, body)
            reply, hit = self._fault_reply(plan, reply)
            fired = fired or hit
        if fired:
            self.faults.took_effect()
        return endpoint, reply

    def _dispatch(
        self,
        method: str,
        resource: str | None,
        record_id: int | None,
        query: dict[str, str],
        headers: dict[bytes, bytes],
        body: bytes,
    ) -> Reply:
        if resource is None:
            return v1_error(404, "Not Found", "The requested resource does not exist")
        allowed = allowed_methods(resource, record_id)
        if method not in allowed:
            return not_allowed(allowed)
        credentials = self._check_credentials(headers)
        if credentials is not None:
            return credentials
        endpoints = self.endpoints
        if resource == "clientintegrations":
            if method == "GET":
                return endpoints.client_integrations(query)
            if method == "POST" and self.config.patch_only:
                return not_allowed(("GET", "PATCH"))
            return endpoints.change_state(decode_json(body))
        if resource == "schools":
            return endpoints.schools(query, record_id)
        school = endpoints.school_for(
            headers[b"http-x-schoolid"].decode("latin-1") if b"http-x-schoolid" in headers else None
        )
        if not isinstance(school, School):
            return school
        if resource == "learners":
            return endpoints.learners(school, query, record_id)
        if resource == "accountablepersons":
            return endpoints.accountable_persons(school, query, record_id)
        if method != "GET":
            return self._write(method, resource, record_id, school, body)
        return endpoints.finance(resource, school, query, record_id)

    def _write(self, method: str, resource: str, record_id: int | None, school: School, body: bytes) -> Reply:
        """A debtor-note write: the armed write faults first (fail without committing), then the write; a
        write that succeeded may lose its answer (`drop`)."""
        failed = self.writes.failure(school.school_id)
        if failed is not None:
            return failed
        notes = NoteWrites(school.finance.ensure())
        if resource == WRITABLE_PROMISES:
            reply = notes.delete_promise(record_id)
        elif method == "POST":
            reply = notes.create(decode_json(body))
        elif method == "PATCH":
            reply = notes.update(record_id, decode_json(body))
        else:
            reply = notes.delete(record_id)
        if 200 <= reply.status < 300 and self.writes.take_drop(school.school_id):
            reply.drop = True
        return reply

    def _check_credentials(self, headers: dict[bytes, bytes]) -> Reply | None:
        """d6 answers credential problems in the v1 shape; compared in constant time."""
        username = headers.get(b"http-x-username")
        password = headers.get(b"http-x-password")
        if not username or not password:
            return v1_error(
                401, "Unauthorized", "The HTTP-X-USERNAME and HTTP-X-PASSWORD headers are required"
            )
        good_user = hmac.compare_digest(username, self._username)
        good_password = hmac.compare_digest(password, self._password)
        if not (good_user and good_password):
            return v1_error(401, "Unauthorized", "Invalid username or password")
        return None

    def _fault_reply(self, plan: FaultPlan, reply: Reply) -> tuple[Reply, bool]:
        """Faults that need the real answer first: a page that fails, garbles, has the wrong shape, loops."""
        spec = plan.spec
        garble = plan.garble
        repeated = False
        if reply.status == 200 and reply.page is not None:
            if spec.empty_list:
                meta = {k: v for k, v in reply.body["meta"].items() if k not in ("next_cursor", "cursor")}
                return Reply(200, {"data": [], "meta": meta}), True
            kind = plan.page_fault(reply.page)
            if kind == "fail":
                return Reply(spec.error_status, error_body(spec.error_status, spec.error_body)), True
            if kind == "wrong_shape":
                return Reply(200, {"data": {"unexpected": "shape"}, "meta": reply.body["meta"]}), True
            garble = garble or kind == "garble"
            data = plan.reshape(reply.page, reply.body["data"])
            if data is not None:
                reply.body["data"] = data
                repeated = True
            if plan.repeat_cursor:
                meta = reply.body["meta"]
                meta["next_cursor"] = reply.cursor or meta.get("next_cursor") or encode_cursor(Cursor(id=0))
                repeated = True
        if garble:
            encoded = ENCODER.encode(reply.body)
            return Reply(reply.status, encoded[: max(1, len(encoded) // 2)]), True
        return reply, repeated


def allowed_methods(resource: str, record_id: int | None) -> tuple[str, ...]:
    """The methods a path takes. The debtor notes' PATCH and DELETE without an id are answered (400 "The
    Note ID is required", as the fact sheets show), so they count as allowed."""
    if resource == "clientintegrations":
        return ("GET", "POST", "PATCH")
    if resource == WRITABLE_NOTES:
        return ("GET", "PATCH", "DELETE") if record_id is not None else ("GET", "POST", "PATCH", "DELETE")
    if resource == WRITABLE_PROMISES:
        return ("GET", "DELETE")
    return ("GET",)


def route(path: str) -> tuple[str, str | None, int | None]:
    """(template for counters, resource name or None when unknown, record id or None)."""
    if path == CLIENT_INTEGRATIONS:
        return path, "clientintegrations", None
    if not path.startswith(DEBT):
        return path, None, None
    rest = path[len(DEBT) :]
    if rest.startswith(NOTES):
        head, _, tail = rest[len(NOTES) :].partition("/")
        resource = NOTES + head
    else:
        resource, _, tail = rest.partition("/")
    if resource not in (*SCHOOL_RESOURCES, *FINANCE_RESOURCES, "schools"):
        return path, None, None
    if not tail:
        return path, resource, None
    if "/" in tail or resource in REPORTS:
        return path, None, None
    # A non-numeric id names no record: d6 answers "does not exist", so -1 (never an id) does the same.
    record_id = as_int(tail)
    return f"{DEBT}{resource}/{{id}}", resource, record_id if record_id is not None else -1


async def drop_connection(receive: Receive, send: Send) -> None:
    """Close the connection without a byte of answer, as a d6 that died after committing would.

    Under uvicorn the transport is reachable from `receive` (a method of its request cycle) and is aborted;
    the loop then turns once or twice so the server sees the loss and does not answer 500 itself. Any other
    server gets an answer started and never finished, which a client cannot read either.
    """
    transport = getattr(getattr(receive, "__self__", None), "transport", None)
    abort = getattr(transport, "abort", None)
    if callable(abort):
        abort()
        for _ in range(3):
            await asyncio.sleep(0)
        return
    await send({"type": "http.response.start", "status": 500, "headers": [(b"content-length", b"64")]})


async def read_body(receive: Receive) -> bytes:
    chunks: list[bytes] = []
    while True:
        message = await receive()
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks)


def decode_json(body: bytes) -> Any:
    """The change-state body; anything that is not JSON is validated as if every field were missing."""
    try:
        return msgspec.json.decode(body) if body else None
    except msgspec.DecodeError:
        return None
