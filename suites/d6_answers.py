"""Fake d6 answers for `suites.d6_faults`: a d6 over `httpx.MockTransport`, and hypothesis strategies
of faults, one family each (see `suites.d6_faults` for what each family must do to the poller).

The fake pages a school's records with cursors `p1`, `p2` ...; a fault replaces what one page of one
resource answers. A fault may send the scan on a detour (`p<n>x`), which the fake answers with the true
page n, so a scan that follows it still sees every record.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import msgspec
from hypothesis import strategies as st

PAGE = 50
TIMEOUT = 0.5
RESOURCE_PATHS = {"debtor": "accountablepersons", "learner": "learners"}
ID_FIELDS = ("learner_id", "accountable_person_id")
JSON_TYPE = {"content-type": "application/json"}
Record = dict[str, Any]


@dataclass
class Fault:
    """What d6 says instead of page `page` of `resource` (1-based), and what the poller must do."""

    family: str
    resource: str
    page: int
    answer: Callable[[list[Record], int, str | None], Any]
    """(page records, page number, next cursor) -> an `httpx.Response` (or a coroutine making one)."""
    must_fail: bool
    malformed: bool = False
    times: int | None = None
    """Answer the fault this many times, then the truth (a transient fault); None: every time."""
    label: str = ""
    extra_field: str | None = None
    """extra_fields only: the field every record of the page gained."""
    fired: int = field(default=0)
    chunk: list[Record] = field(default_factory=list)
    """The true records of the faulted page, as d6 holds them."""


class FakeD6:
    """The d6 listing endpoints over a dict of schools; one `Fault` at a time."""

    def __init__(self) -> None:
        self.schools: dict[int, dict[str, list[Record]]] = {}
        self.fault: Fault | None = None

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path
        resource = next((r for r, p in RESOURCE_PATHS.items() if path.endswith(f"/{p}")), None)
        school_id = int(request.headers.get("HTTP-X-SCHOOLID", "0"))
        if resource is None or school_id not in self.schools:
            return httpx.Response(404, json={"error": "Not Found", "error_description": path})
        records = self.schools[school_id][resource]
        cursor = request.url.params.get("cursor")
        size = min(int(request.url.params.get("limit", "10")), PAGE)
        if cursor is not None and not cursor.startswith("p"):
            return _invalid_cursor()
        # "p<n>" is page n; "p<n>x" is what a fault sent as a detour to the same page n.
        number = int(cursor.strip("px") or 0) if cursor else 1
        if number < 1 or (number - 1) * size > max(len(records), 0) + size:
            return _invalid_cursor()
        chunk = records[(number - 1) * size : number * size]
        next_cursor = f"p{number + 1}" if number * size < len(records) else None
        fault = self.fault
        detour = cursor is not None and cursor.endswith("x")
        if (
            fault is not None
            and not detour
            and fault.resource == resource
            and fault.page == number
            and (fault.times is None or fault.fired < fault.times)
        ):
            fault.fired += 1
            fault.chunk = chunk
            answer = fault.answer(chunk, number, next_cursor)
            return await answer if asyncio.iscoroutine(answer) else answer
        meta: dict[str, Any] = {"limit": size, "max_allowed_limit": PAGE}
        if next_cursor:
            meta["next_cursor"] = next_cursor
        return httpx.Response(200, json={"data": chunk, "meta": meta})


def _invalid_cursor() -> httpx.Response:
    body = {"success": False, "message": "Validation Failed", "validation_errors": {"cursor": "invalid"}}
    return httpx.Response(400, json=body)


def page_body(chunk: list[Record], next_cursor: str | None, **meta: Any) -> dict[str, Any]:
    return {"data": chunk, "meta": {"limit": PAGE, "max_allowed_limit": PAGE, **meta, **_cursor(next_cursor)}}


def _cursor(next_cursor: str | None) -> dict[str, str]:
    return {"next_cursor": next_cursor} if next_cursor else {}


def json_response(body: Any, status: int = 200, content_type: str = "application/json") -> httpx.Response:
    return httpx.Response(status, content=msgspec.json.encode(body), headers={"content-type": content_type})


# -- the families ------------------------------------------------------------------------------------

resources = st.sampled_from(["debtor", "learner"])
json_leaf = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(max_size=20)
)
json_values = st.recursive(
    json_leaf,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
)
ERROR_BODIES = st.sampled_from(
    [
        b'{"success": false, "message": "Internal Server Error"}',
        b'{"error": "Server Error", "error_description": "something broke"}',
        b"<html><body><h1>502 Bad Gateway</h1></body></html>",
        b"",
        b'{"success": false, "message": "Validation Failed", "validation_errors": {"x": "bad"}}',
    ]
)


def family(name: str, must_fail: bool, malformed: bool = False) -> Callable[..., Any]:
    """A strategy of `Fault`s from a strategy of answers."""

    def build(answers: st.SearchStrategy[Any], times: int | None = None) -> st.SearchStrategy[Fault]:
        return st.builds(
            lambda resource, page, answer: Fault(
                name, resource, page, answer[1], must_fail, malformed, times, label=answer[0]
            ),
            resources,
            st.integers(1, 3),
            answers,
        )

    return build


def not_json() -> st.SearchStrategy[Fault]:
    def truncated(cut: float) -> Any:
        def answer(chunk: list[Record], _n: int, nxt: str | None) -> httpx.Response:
            raw = msgspec.json.encode(page_body(chunk, nxt))
            return httpx.Response(200, content=raw[: int(len(raw) * cut)], headers=_json())

        return (f"truncated at {cut:.0%}", answer)

    def raw(data: bytes) -> Any:
        return (f"bytes {data[:20]!r}", lambda *_: httpx.Response(200, content=data, headers=_json()))

    junk = st.binary(max_size=200).filter(_not_json)
    answers = st.one_of(
        st.floats(0.0, 0.98).map(truncated),
        junk.map(raw),
        st.just(raw(b"")),
        st.just(raw(b"<html><body>Service temporarily unavailable</body></html>")),
    )
    return family("not_json", must_fail=True, malformed=True)(answers)


def _json() -> dict[str, str]:
    return {"content-type": "application/json"}


def _not_json(data: bytes) -> bool:
    try:
        msgspec.json.decode(data)
    except msgspec.DecodeError:
        return True
    return False


def content_type() -> st.SearchStrategy[Fault]:
    def answer(kind: str) -> Any:
        def make(chunk: list[Record], _n: int, nxt: str | None) -> httpx.Response:
            headers = {"content-type": kind} if kind else {}
            return httpx.Response(200, content=msgspec.json.encode(page_body(chunk, nxt)), headers=headers)

        return (f"content type {kind!r}", make)

    kinds = st.sampled_from(["text/html", "text/plain", "application/xml", "", "application/octet-stream"])
    return family("content_type", must_fail=True, malformed=True)(kinds.map(answer))


def wrong_shape() -> st.SearchStrategy[Fault]:
    def top(value: Any) -> Any:
        return (f"top level {value!r:.40}", lambda *_: json_response(value))

    def data(value: Any) -> Any:
        return (
            f"data = {value!r:.40}",
            lambda _c, _n, nxt: json_response({"data": value, "meta": _cursor(nxt)}),
        )

    def meta(value: Any) -> Any:
        def make(chunk: list[Record], _n: int, _nxt: str | None) -> httpx.Response:
            body: dict[str, Any] = {"data": chunk}
            if value != "absent":
                body["meta"] = value
            return json_response(body)

        return (f"meta = {value!r:.40}", make)

    def record(value: Any) -> Any:
        return (
            f"a record = {value!r:.40}",
            lambda chunk, _n, nxt: json_response(page_body([*chunk, value], nxt)),
        )

    def cursor(value: Any) -> Any:
        return (
            f"next_cursor = {value!r:.40}",
            lambda chunk, _n, _nxt: json_response(
                {"data": chunk, "meta": {"limit": PAGE, "next_cursor": value}}
            ),
        )

    not_object = json_values.filter(lambda v: not isinstance(v, dict))
    answers = st.one_of(
        not_object.map(top),
        json_values.filter(lambda v: not isinstance(v, list)).map(data),
        st.one_of(st.just("absent"), not_object.filter(lambda v: v is not None)).map(meta),
        not_object.map(record),
        st.one_of(st.integers(), st.booleans(), st.lists(st.text(max_size=3), min_size=1), st.floats()).map(
            cursor
        ),
        st.just(("success false", lambda *_: json_response({"success": False, "message": "Server busy"}))),
    )
    return family("wrong_shape", must_fail=True, malformed=True)(answers)


def bad_ids() -> st.SearchStrategy[Fault]:
    def answer(how: tuple[str, Any]) -> Any:
        kind, value = how

        def make(chunk: list[Record], _n: int, nxt: str | None) -> httpx.Response:
            spoiled = [dict(r) for r in chunk] or [{"first_name": "Nobody", "learner_id": 1}]
            for id_field in ID_FIELDS:
                if id_field in spoiled[0]:
                    if kind == "missing":
                        del spoiled[0][id_field]
                    else:
                        spoiled[0][id_field] = value
            return json_response(page_body(spoiled, nxt))

        return (f"id {kind} {value!r:.30}", make)

    odd = st.sampled_from([None, "", "abc", "12a", True, False, 1.5, [], {}, [3], {"id": 3}])
    text = st.text(min_size=1, max_size=8).filter(lambda t: not t.strip().lstrip("+-").isdigit())
    values = st.one_of(st.just(("missing", None)), st.one_of(odd, text).map(lambda v: ("=", v)))
    return family("bad_ids", must_fail=True, malformed=True)(values.map(answer))


def bad_cursor() -> st.SearchStrategy[Fault]:
    def repeat(chunk: list[Record], number: int, _nxt: str | None) -> httpx.Response:
        # the page, then the same page again under a new cursor: its records twice
        return json_response(page_body(chunk, f"p{number}x"))

    def refused(token: str) -> Any:
        return (
            f"cursor {token!r:.30} then refused",
            lambda chunk, _n, _nxt: json_response(page_body(chunk, token)),
        )

    def looping(chunk: list[Record], number: int, _nxt: str | None) -> httpx.Response:
        return json_response(page_body(chunk, "p1"))

    answers = st.one_of(
        st.just(("the same page twice", repeat)),
        st.just(("cursor back to page 1", looping)),
        st.text(alphabet="abcdef=/+", min_size=1, max_size=30).map(refused),
        st.integers(10_000, 200_000).map(lambda n: refused("z" * n)),
    )
    return family("bad_cursor", must_fail=False)(answers)


def bad_status() -> st.SearchStrategy[Fault]:
    def answer(pair: tuple[int, bytes]) -> Any:
        status, body = pair
        headers = {"location": "https://elsewhere.example/"} if 300 <= status < 400 else {}
        if status in (429, 503):
            headers["retry-after"] = "0"
        return (f"{status} {body[:30]!r}", lambda *_: httpx.Response(status, content=body, headers=headers))

    statuses = st.sampled_from(
        [301, 302, 304, 307, 400, 403, 404, 405, 409, 418, 422, 429, 500, 501, 502, 503, 504]
    )
    v1_auth = st.just(
        (401, b'{"error": "Unauthorized", "error_description": "Invalid username or password"}')
    )
    return family("bad_status", must_fail=True)(
        st.one_of(st.tuples(statuses, ERROR_BODIES), v1_auth).map(answer)
    )


def slow_timeout() -> st.SearchStrategy[Fault]:
    def answer(extra: float) -> Any:
        async def make(chunk: list[Record], _n: int, nxt: str | None) -> httpx.Response:
            raw = msgspec.json.encode(page_body(chunk, nxt))
            return httpx.Response(200, content=_slow(raw, TIMEOUT + extra), headers=JSON_TYPE)

        return (f"body over {TIMEOUT + extra:.2f} s", make)

    return family("slow_timeout", must_fail=True)(st.floats(0.1, 0.3).map(answer))


async def _slow(raw: bytes, seconds: float) -> AsyncIterator[bytes]:
    parts = 5
    step = max(1, len(raw) // parts)
    for start in range(0, len(raw), step):
        await asyncio.sleep(seconds / parts)
        yield raw[start : start + step]


def benign() -> st.SearchStrategy[Fault]:
    def said_differently(options: tuple[bool, bool, bool, str]) -> Any:
        stringify, shuffle, extra, kind = options

        def make(chunk: list[Record], number: int, nxt: str | None) -> httpx.Response:
            rng = random.Random(number)
            records = []
            for record in chunk:
                items = list(record.items())
                if shuffle:
                    rng.shuffle(items)
                copy = dict(items)
                if stringify:
                    copy = {
                        k: str(v) if k.endswith("_id") and isinstance(v, int) else v for k, v in copy.items()
                    }
                records.append(copy)
            body = page_body(records, nxt, **({"total": 999, "cursor": "p1"} if extra else {}))
            if extra:
                body = {"success": True, "links": {"self": "/x"}, **body}
            return httpx.Response(200, content=msgspec.json.encode(body), headers={"content-type": kind})

        return (f"ids as text {stringify}, shuffled {shuffle}, extra {extra}, {kind}", make)

    def slow(seconds: float) -> Any:
        async def make(chunk: list[Record], _n: int, nxt: str | None) -> httpx.Response:
            raw = msgspec.json.encode(page_body(chunk, nxt))
            return httpx.Response(200, content=_slow(raw, seconds), headers=JSON_TYPE)

        return (f"slow body {seconds:.2f} s", make)

    kinds = st.sampled_from(
        ["application/json", "application/json; charset=utf-8", "application/vnd.d6+json"]
    )
    answers = st.one_of(
        st.tuples(st.booleans(), st.booleans(), st.booleans(), kinds).map(said_differently),
        st.floats(0.0, TIMEOUT * 0.5).map(slow),
    )
    transient = st.sampled_from([429, 500, 502, 503, 504]).map(
        lambda status: (f"one {status}", lambda *_: httpx.Response(status, headers={"retry-after": "0"}))
    )
    build = family("benign", must_fail=False)
    return st.one_of(build(answers), build(transient, times=1))


def truncation() -> st.SearchStrategy[Fault]:
    def empty(chunk: list[Record], number: int, _nxt: str | None) -> httpx.Response:
        return json_response(page_body([], f"p{number}x"))

    def short(chunk: list[Record], number: int, nxt: str | None) -> httpx.Response:
        # half of this page, then d6 says "more": the rest of the page comes with the next cursor
        return json_response(page_body(chunk[: len(chunk) // 2], f"p{number}x" if chunk else nxt))

    answers = st.sampled_from(
        [("empty page with next_cursor", empty), ("short page with next_cursor", short)]
    )
    return family("truncation", must_fail=False)(answers)


def extra_fields() -> st.SearchStrategy[Fault]:
    """Every record of a page gains a field; the first one a long value (up to 200 kB)."""

    def build(resource: str, page: int, name: str, size: int) -> Fault:
        def make(chunk: list[Record], _n: int, nxt: str | None) -> httpx.Response:
            records = [{**r, name: "x" * (size if i == 0 else 8)} for i, r in enumerate(chunk)]
            return json_response(page_body(records, nxt))

        label = f"new field {name!r}, first value {size} characters"
        return Fault("extra_fields", resource, page, make, must_fail=False, label=label, extra_field=name)

    # d6 may add fields any day; "new_" keeps the name clear of today's fields, "_id" of id rules.
    names = st.text(alphabet="abcdefghijklmnopqrstuvwxyz_", min_size=1, max_size=12).map(
        lambda n: f"new_{n}x"
    )
    sizes = st.one_of(st.integers(0, 100), st.integers(100_000, 200_000))
    return st.builds(build, resources, st.integers(1, 3), names, sizes)


FAMILIES: dict[str, Callable[[], st.SearchStrategy[Fault]]] = {
    "not_json": not_json,
    "content_type": content_type,
    "wrong_shape": wrong_shape,
    "bad_ids": bad_ids,
    "bad_cursor": bad_cursor,
    "bad_status": bad_status,
    "slow_timeout": slow_timeout,
    "benign": benign,
    "truncation": truncation,
    "extra_fields": extra_fields,
}
SLOW_FAMILIES = {"slow_timeout": 0.25}
"""Families whose examples take seconds each run this fraction of `--examples`."""
