"""What every controller shares: how a part is handed in, times, error bodies, score cursors.

- `Injected[T]`: a handler parameter that is one of the bridge's long-lived parts, handed in by `Provide`
  under the parameter's name (see `wiring.py`). Litestar refuses to start an app that mounts a handler
  whose part was not provided, rather than failing on the first request.
- `rfc3339`: Unix seconds as the API shows every time (UTC, microseconds, `Z`).
- `error_response`: the error body of every answer (`{"status_code", "detail", "extra"}`, see
  `contract.ErrorBody`).
- `PageMeta`, `Limit`, `Cursor`: every list answers `{"data": [...], "meta": {"limit", "next_cursor"?}}`
  and takes `?limit=&cursor=`; `next_cursor` is there while there may be more (pass it back as `cursor`).
- `score_cursor` / `next_score_cursor`: the opaque cursor of the lists ordered by a time score (attempts,
  dead letters): the score of the last item shown, passed back to get the older ones.
- `keyset_page`: the same for a list read whole and sorted by a key (subscriptions, schools): the key of
  the last item shown.
- `filtered_page`: a page of the items that pass a filter the store has no index for (events of one
  record, dead letters of one school), read page after page from the store's own cursor.
"""

from __future__ import annotations

import bisect
from collections.abc import Awaitable, Callable, Sequence
from typing import Annotated, Any, Final, TypeAlias, TypeVar

import msgspec
from litestar import MediaType, Response
from litestar.di import NamedDependency
from litestar.params import QueryParameter, SkipValidation

from bridge.errors import InvalidRequest
from bridge.events.envelope import format_timestamp

T = TypeVar("T")

Injected: TypeAlias = NamedDependency[SkipValidation[T]]

K = TypeVar("K", int, str)
Row = TypeVar("Row")

MAX_PAGE: Final = 500
"""The largest `limit` of every list."""
MAX_SCAN_PAGES: Final = 20
"""How many store pages (of up to 500) one filtered page reads at most before it answers what it found."""

Limit: TypeAlias = Annotated[
    int, QueryParameter(ge=1, le=MAX_PAGE, description="items on a page, 1 to 500 (default 50)")
]
Cursor: TypeAlias = Annotated[
    str | None, QueryParameter(description="`meta.next_cursor` of the page before; absent for the first page")
]


class PageMeta(msgspec.Struct, kw_only=True):
    limit: int
    next_cursor: str | msgspec.UnsetType = msgspec.UNSET
    """Pass it back as `cursor` for the next page; absent on the last page."""


def page_meta(limit: int, next_cursor: str | None) -> PageMeta:
    return PageMeta(limit=limit, next_cursor=msgspec.UNSET if next_cursor is None else next_cursor)


def rfc3339(moment: float | None) -> str | None:
    """A Unix time as every time the bridge writes (`format_timestamp`); None stays None."""
    return None if moment is None else format_timestamp(moment)


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
        raise InvalidRequest("cursor", "is not a cursor this API gave out; pass next_cursor back") from None
    if value != value:
        raise InvalidRequest("cursor", "is not a cursor this API gave out; pass next_cursor back")
    return value


def next_score_cursor(scores: Sequence[float], limit: int) -> str | None:
    """The cursor of the page after one that showed `scores`: none when the page was not full."""
    return repr(scores[-1]) if len(scores) == limit else None


def keyset_page(
    ordered: Sequence[T], key: Callable[[T], K], after: K | None, limit: int
) -> tuple[list[T], str | None]:
    """The items of `ordered` (sorted by `key`) after the key `after`, at most `limit`, and the cursor of
    the next page (None when nothing is left). An item removed meanwhile does not shift the pages."""
    start = 0 if after is None else bisect.bisect_right([key(item) for item in ordered], after)
    page = list(ordered[start : start + limit])
    return page, str(key(page[-1])) if page and start + limit < len(ordered) else None


async def filtered_page(
    fetch: Callable[[str | None], Awaitable[tuple[Sequence[Row], str | None]]],
    keep: Callable[[Row], bool],
    position: Callable[[Row], str],
    cursor: str | None,
    limit: int,
) -> tuple[list[Row], str | None]:
    """Up to `limit` rows that `keep`, and the cursor to go on from (None when the store has no more).

    `fetch(cursor)` answers one store page and the store's cursor after it (None on its last page);
    `position(row)` is the cursor just after `row`. After `MAX_SCAN_PAGES` store pages the rows found so
    far are answered with the cursor where reading stopped, so a rare match costs bounded work per call.
    """
    found: list[Row] = []
    for _ in range(MAX_SCAN_PAGES):
        rows, after = await fetch(cursor)
        for n, row in enumerate(rows):
            if keep(row):
                found.append(row)
                if len(found) == limit:
                    more = n + 1 < len(rows) or after is not None
                    return found, position(row) if more else None
        if after is None:
            return found, None
        cursor = after
    return found, cursor


def int_cursor(cursor: str | None) -> int | None:
    """The key a `next_cursor` of a list keyed by a number stands for; None for the first page."""
    if cursor is None or cursor == "":
        return None
    try:
        return int(cursor)
    except ValueError:
        raise InvalidRequest("cursor", "is not a cursor this API gave out; pass next_cursor back") from None
