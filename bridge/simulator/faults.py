"""Fault injection: the misbehaviour a d6 client must survive, switched on per test through `/_sim/faults`.

One `FaultSpec` is active at a time (posting a new one replaces it). A request in the spec's scope
(school, endpoint) gets a `FaultPlan`: the random draws are made once, up front, so a request is either
faulted or not, and `times` counts the requests on which a fault actually took effect.
"""

from __future__ import annotations

import copy
import random
import time
from collections import deque
from http import HTTPStatus
from typing import Annotated, Any, Literal

import msgspec

Rate = Annotated[float, msgspec.Meta(ge=0.0, le=1.0)]
PageNumber = Annotated[int, msgspec.Meta(ge=1)]


class FaultSpec(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """The body of `POST /_sim/faults`; every field optional, the defaults mean "no fault"."""

    error_rate: Rate = 0.0
    error_status: Annotated[int, msgspec.Meta(ge=400, le=599)] = 500
    error_body: Literal["v2", "v1"] = "v2"
    latency_ms: Annotated[float, msgspec.Meta(ge=0.0, le=60_000.0)] = 0.0
    fail_on_page: PageNumber | None = None
    garble_rate: Rate = 0.0
    garble_on_page: PageNumber | None = None
    wrong_shape_on_page: PageNumber | None = None
    rate_limit_rps: Annotated[float, msgspec.Meta(gt=0.0)] | None = None
    retry_after: str | int | None = None
    repeat_cursor: bool = False
    empty_list: bool = False
    """A listing answers 200 with no records and no next cursor (d6 does this when something is wrong)."""
    repeat_row_on_page: PageNumber | None = None
    """Page n (from 2) starts with the last record of page n-1 again: d6 repeats a row."""
    shift_on_page: PageNumber | None = None
    """Page n (from 2) is served as if the list had moved under the cursor: it starts with the last record of
    page n-1 again, and its own last record is not served in this scan (one missed, one repeated)."""
    extra_record: dict[str, Any] | None = None
    """A record appended, as given, to the data of page `extra_record_on_page` (a malformed row)."""
    extra_record_on_page: PageNumber = 1
    school_id: int | None = None
    endpoint: str | None = None
    times: Annotated[int, msgspec.Meta(ge=0)] | None = None


def error_body(status: int, style: str, description: str = "Simulated fault") -> dict[str, Any]:
    """d6's two error shapes: v2 `{success, message}` and the v1 leftovers `{error, error_description}`."""
    phrase = HTTPStatus(status).phrase if status in HTTPStatus._value2member_map_ else "Error"
    if status == HTTPStatus.TOO_MANY_REQUESTS:
        description = "Rate limits have been reached, please slow down your requests"
    if style == "v1":
        return {"error": phrase, "error_description": description}
    return {"success": False, "message": phrase if status != HTTPStatus.TOO_MANY_REQUESTS else description}


class FaultPlan:
    """What the faults decided for one request. Page faults are resolved once the page number is known."""

    __slots__ = ("error", "garble", "last_rows", "latency", "rate_limited", "repeat_cursor", "scope", "spec")

    def __init__(
        self,
        spec: FaultSpec,
        last_rows: dict[tuple[int | None, str], tuple[int, Any]] | None = None,
        scope: tuple[int | None, str] = (None, ""),
    ) -> None:
        self.spec = spec
        self.last_rows = last_rows if last_rows is not None else {}
        """(school, path) -> (page, the last record it served): what a repeated or shifted page repeats."""
        self.scope = scope
        self.latency = spec.latency_ms / 1000.0
        self.rate_limited = False
        self.error = False
        self.garble = False
        self.repeat_cursor = spec.repeat_cursor

    def page_fault(self, page: int) -> Literal["fail", "garble", "wrong_shape"] | None:
        spec = self.spec
        if spec.fail_on_page == page:
            return "fail"
        if spec.garble_on_page == page:
            return "garble"
        if spec.wrong_shape_on_page == page:
            return "wrong_shape"
        return None

    def reshape(self, page: int, data: list[Any]) -> list[Any] | None:
        """The page's records after the row faults (a repeated row, a shift, an extra record), or None when
        none took effect. Remembers the page's last record for the page after it."""
        spec = self.spec
        before = self.last_rows.get(self.scope)
        if data:
            self.last_rows[self.scope] = (page, copy.deepcopy(data[-1]))
        changed: list[Any] | None = None
        repeat = page in (spec.repeat_row_on_page, spec.shift_on_page)
        if repeat and before is not None and before[0] == page - 1:
            changed = [before[1], *(data[:-1] if page == spec.shift_on_page and data else data)]
        if spec.extra_record is not None and page == spec.extra_record_on_page:
            changed = [*(data if changed is None else changed), copy.deepcopy(spec.extra_record)]
        return changed

    @property
    def headers(self) -> list[tuple[bytes, bytes]]:
        """Retry-After goes with 429s only, and only when the spec names a value."""
        if self.rate_limited and self.spec.retry_after is not None:
            return [(b"retry-after", str(self.spec.retry_after).encode("latin-1"))]
        return []


class Faults:
    """The active fault set, its `times` budget and the sliding window behind `rate_limit_rps`."""

    def __init__(self, seed: int) -> None:
        self.spec = FaultSpec()
        self.remaining: int | None = None
        self.fired = 0
        self._rng = random.Random(seed ^ 0xFA17)
        self._window: deque[float] = deque()
        self._last_rows: dict[tuple[int | None, str], tuple[int, Any]] = {}

    def replace(self, spec: FaultSpec) -> None:
        self.spec = spec
        self.remaining = spec.times
        self.fired = 0
        self._window.clear()
        self._last_rows.clear()

    def clear(self) -> None:
        self.replace(FaultSpec())

    def describe(self) -> dict[str, Any]:
        return {"faults": msgspec.to_builtins(self.spec), "remaining": self.remaining, "fired": self.fired}

    @property
    def active(self) -> bool:
        return self.spec != FaultSpec() and self.remaining != 0

    def plan(self, school_id: int | None, path: str) -> FaultPlan | None:
        """None when no fault can touch this request (the common case, kept cheap)."""
        spec = self.spec
        if not self.active:
            return None
        if spec.school_id is not None and spec.school_id != school_id:
            return None
        if spec.endpoint is not None and spec.endpoint not in path:
            return None
        plan = FaultPlan(spec, self._last_rows, (school_id, path))
        if spec.rate_limit_rps is not None:
            now = time.monotonic()
            window = self._window
            while window and window[0] <= now - 1.0:
                window.popleft()
            if len(window) >= spec.rate_limit_rps:
                plan.rate_limited = True
            else:
                window.append(now)
        plan.error = spec.error_rate > 0 and self._rng.random() < spec.error_rate
        plan.garble = spec.garble_rate > 0 and self._rng.random() < spec.garble_rate
        return plan

    def took_effect(self) -> None:
        """Count one faulted request against `times`; at zero the fault set goes quiet."""
        self.fired += 1
        if self.remaining is not None and self.remaining > 0:
            self.remaining -= 1
