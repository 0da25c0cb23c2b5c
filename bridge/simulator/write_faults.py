"""Faults of the write calls, for a client's outcome handling: a write that fails without committing, and
one that commits and then loses its answer.

`POST /_sim/writes/fail` makes the next N writes answer a status (429, 500, 401 ...) and change nothing;
`POST /_sim/writes/drop` makes the next N writes that succeed commit and then drop the connection without a
byte of answer (the client cannot tell whether the write happened). Both may be limited to one school. They
are apart from `/_sim/faults`, which touches reads and writes alike.
"""

from __future__ import annotations

from http import HTTPStatus
from typing import Annotated, Any, Literal

import msgspec

from bridge.simulator.endpoints import NOT_AUTHORISED_MESSAGE, Reply
from bridge.simulator.faults import error_body

Times = Annotated[int, msgspec.Meta(ge=0)]


class DropSpec(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """The body of `POST /_sim/writes/drop`."""

    times: Times = 1
    school_id: int | None = None


class FailSpec(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """The body of `POST /_sim/writes/fail`."""

    status: Annotated[int, msgspec.Meta(ge=400, le=599)]
    times: Times = 1
    school_id: int | None = None
    message: str | None = None
    """The error's text; by default d6's for the status (401: "Client has not authorised access")."""
    error_body: Literal["v2", "v1"] = "v2"
    retry_after: str | int | None = None
    """The `Retry-After` header sent with the answer (none when null)."""


def failure_body(spec: FailSpec) -> dict[str, Any]:
    status = spec.status
    message = spec.message
    if message is None and status == HTTPStatus.UNAUTHORIZED:
        message = NOT_AUTHORISED_MESSAGE
    if message is None:
        return error_body(status, spec.error_body)
    if spec.error_body == "v1":
        phrase = HTTPStatus(status).phrase if status in HTTPStatus._value2member_map_ else "Error"
        return {"error": phrase, "error_description": message}
    return {"success": False, "message": message}


class WriteFaults:
    """The armed write faults and how often each took effect."""

    def __init__(self) -> None:
        self.drop: DropSpec | None = None
        self.drop_left = 0
        self.fail: FailSpec | None = None
        self.fail_left = 0
        self.dropped = 0
        self.failed = 0

    def arm_drop(self, spec: DropSpec) -> None:
        self.drop, self.drop_left = spec, spec.times

    def arm_fail(self, spec: FailSpec) -> None:
        self.fail, self.fail_left = spec, spec.times

    def clear(self) -> None:
        self.drop, self.drop_left, self.fail, self.fail_left = None, 0, None, 0
        self.dropped = self.failed = 0

    def describe(self) -> dict[str, Any]:
        return {
            "drop": {**msgspec.to_builtins(self.drop), "remaining": self.drop_left} if self.drop else None,
            "fail": {**msgspec.to_builtins(self.fail), "remaining": self.fail_left} if self.fail else None,
            "dropped": self.dropped,
            "failed": self.failed,
        }

    def failure(self, school_id: int | None) -> Reply | None:
        """The answer for a write that must fail now (counted), or None to let it through."""
        spec = self.fail
        if spec is None or self.fail_left <= 0 or spec.school_id not in (None, school_id):
            return None
        self.fail_left -= 1
        self.failed += 1
        headers = []
        if spec.retry_after is not None:
            headers.append((b"retry-after", str(spec.retry_after).encode("latin-1")))
        return Reply(spec.status, failure_body(spec), headers=headers)

    def take_drop(self, school_id: int | None) -> bool:
        """Whether this committed write loses its answer (counted)."""
        spec = self.drop
        if spec is None or self.drop_left <= 0 or spec.school_id not in (None, school_id):
            return False
        self.drop_left -= 1
        self.dropped += 1
        return True
