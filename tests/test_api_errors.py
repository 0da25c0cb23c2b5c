"""A bug in a handler is a 500 with a plain detail for the caller and a logged traceback for the operator."""

from __future__ import annotations

from typing import Literal

import msgspec
from litestar import Litestar, get, post
from litestar.exceptions import NotFoundException
from litestar.params import JSONBody
from litestar.testing import TestClient
from structlog.testing import capture_logs

from bridge.api.errors import EXCEPTION_HANDLERS


@get("/crash", sync_to_thread=False)
def crash() -> None:
    raise RuntimeError("a bug")


@get("/missing", sync_to_thread=False)
def missing() -> None:
    raise NotFoundException("no such thing")


class Status(msgspec.Struct):
    status: Literal["Created", "Deleted"]


@post("/statuses", sync_to_thread=False)
def statuses(data: JSONBody[Status]) -> None:
    return None


def test_a_value_sent_is_not_repeated_in_the_error_that_refuses_it() -> None:
    app = Litestar([statuses], exception_handlers=EXCEPTION_HANDLERS)
    with TestClient(app) as client:
        answer = client.post("/statuses", json={"status": "Secret-Value-123"})
    assert answer.status_code == 400
    assert "status" in answer.json()["detail"] and "enum" in answer.json()["detail"]
    assert "Secret-Value-123" not in answer.text


def test_an_unexpected_error_is_logged_with_its_traceback_and_answered_without_it() -> None:
    app = Litestar([crash, missing], exception_handlers=EXCEPTION_HANDLERS)
    with TestClient(app) as client, capture_logs() as logs:
        answer = client.get("/crash")
        not_found = client.get("/missing")
    assert answer.status_code == 500
    assert answer.json()["detail"] == "internal error; the bridge logged it as 'request crashed'"
    assert "a bug" not in answer.text
    crashed = [entry for entry in logs if entry["event"] == "request crashed"]
    assert len(crashed) == 1 and crashed[0]["path"] == "/crash"
    assert isinstance(crashed[0]["exc_info"], RuntimeError)
    assert not_found.status_code == 404 and not_found.json()["detail"] == "no such thing"
