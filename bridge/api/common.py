"""What every controller shares: how a part is handed in, times, error bodies, score cursors.

- `Injected[T]`: a handler parameter that is one of the bridge's long-lived parts, handed in by `Provide`
  under the parameter's name (see `wiring.py`). Litestar refuses to start an app that mounts a handler
  whose part was not provided, rather than failing on the first request.
- `rfc3339`: Unix seconds as the API shows every time (UTC, microseconds, `Z`).
- `error_response`: the error body of every answer (`{"status_code", "detail", "extra"}`, see
  `contract.ErrorBody`).
- `score_cursor` / `next_score_cursor`: the opaque cursor of the lists ordered by a time score (attempts,
  dead letters): the score of the last item shown, passed back to get the older ones.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any, Final, TypeAlias, TypeVar

from litestar import MediaType, Response
from litestar.di import NamedDependency
from litestar.params import SkipValidation

from bridge.delivery.store import InvalidSubscription

T = TypeVar("T")

Injected: TypeAlias = NamedDependency[SkipValidation[T]]

MAX_PAGE: Final = 500
"""The largest `limit` of a list ordered by a time score."""


def rfc3339(moment: float | None) -> str | None:
    if moment is None:
        return None
    seconds = int(moment)
    micros = min(round((moment - seconds) * 1_000_000), 999_999)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{micros:06d}Z"


def error_response(status: int, detail: str, extra: dict[str, Any] | None = None) -> Response[Any]:
    return Response(
        {"status_code": status, "detail": detail, "extra": extra or {}},
        status_code=status,
        media_type=MediaType.JSON,
    )


def score_cursor(cursor: str | None) -> float | None:
    """The score a `next_cursor` stands for; None for the first page. Anything else is a 400."""
    if cursor is None or cursor == "":
        return None
    try:
        value = float(cursor)
    except ValueError:
        raise InvalidSubscription(
            "cursor", "is not a cursor this API gave out; pass next_cursor back"
        ) from None
    if value != value:
        raise InvalidSubscription("cursor", "is not a cursor this API gave out; pass next_cursor back")
    return value


def next_score_cursor(scores: Sequence[float], limit: int) -> str | None:
    """The cursor of the page after one that showed `scores`: none when the page was not full."""
    return repr(scores[-1]) if len(scores) == limit else None
