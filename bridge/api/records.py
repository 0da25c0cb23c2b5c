"""The state API: `GET /v1/schools/{school_id}/records/{resource}`, a feed's records, from its snapshot.

A consumer that starts late reads the current records here, page by page, instead of asking d6 (and
spending the budget the bridge keeps): docs/consumers.md says how it then follows the events. Each row is
`{"resource_id", "sequence", "data"}`, `sequence` being that of the last event that told the record's
current state (0 for a record of a silent baseline); `meta.as_of_sequence` is the school's sequence when
the page was read. Pages go by record id (keyset: a record removed meanwhile does not shift them); the
cursor is the last id shown, base64url-encoded so that any id survives a query string and a made-up cursor
is a 400. `ids=` fetches given records instead (no paging). Only Redis is read, never d6.

An erased record (docs/personal-data.md#erase-a-record) shows `"data": {"erased": true}`, as its erased
events do. The admin and read-only tokens see every school, feed and field. A subscription token
(docs/api.md#subscription-tokens) sees only the schools of its subscription's `school_ids` and the resources
whose event types its `event_types` take (`records_guard`: 403 naming what is outside), each record cut by
its subscription's `fields`, `redact` and `payload` (`project_record`,
docs/personal-data.md#send-each-subscriber-only-what-it-needs). `shape` is the hook a test uses to cut the
admin's rows the same way (None in a serve process: every field).

Handlers receive `records`: the settings (which resources are watched), the snapshots and the watcher.
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass
from typing import Annotated, Any, Final

import msgspec
from litestar import Controller, Request, get
from litestar.connection import ASGIConnection
from litestar.exceptions import PermissionDeniedException
from litestar.handlers.base import BaseRouteHandler
from litestar.params import FromPath, QueryParameter

from bridge.api.auth import admin_guard, caller_of
from bridge.api.common import Cursor, Injected, Limit
from bridge.api.contract import SECURITY, error_responses
from bridge.catalogue import BY_NAME
from bridge.delivery.models import Subscription, type_matches
from bridge.delivery.projection import Shape, project_record
from bridge.errors import InvalidRequest, NotFound
from bridge.events.log import ERASED
from bridge.settings import Settings
from bridge.sync.snapshot import RecordRow, SnapshotStore
from bridge.sync.watcher import IntegrationsWatcher

MAX_IDS: Final = 1000
"""The most record ids one `ids=` may name."""
_CURSOR: Final = re.compile(r"[A-Za-z0-9_-]+")
_BAD_CURSOR: Final = "is not a cursor this API gave out; pass meta.next_cursor back"


@dataclass(frozen=True, kw_only=True)
class Records:
    """What the state API reads: which resources are watched, the snapshots, which schools are active."""

    settings: Settings
    snapshots: SnapshotStore
    watcher: IntegrationsWatcher


class RecordView(msgspec.Struct, kw_only=True):
    """One record as the snapshot holds it."""

    resource_id: str
    sequence: int
    """The school sequence of the last event that told this state of the record; 0 for a record taken in a
    silent baseline. Apply an event or snapshot to your copy only if its sequence is higher."""
    data: dict[str, Any]
    """The record (d6's fields, as its events carry them); `{"erased": true}` once it was erased."""


class RecordsMeta(msgspec.Struct, kw_only=True):
    limit: int
    next_cursor: str | msgspec.UnsetType = msgspec.UNSET
    """Pass it back as `cursor` for the next page; absent on the last page (and with `ids`)."""
    as_of_sequence: int
    """The school's sequence when this page was read: every event up to it is told in the page's rows."""


class RecordsPage(msgspec.Struct, kw_only=True):
    data: list[RecordView]
    meta: RecordsMeta


def encode_cursor(record_id: str) -> str:
    return base64.urlsafe_b64encode(record_id.encode()).rstrip(b"=").decode()


def decode_cursor(cursor: str | None) -> str | None:
    """The record id a `next_cursor` stands for; None for the first page; anything else is a 400."""
    if cursor is None or cursor == "":
        return None
    if not _CURSOR.fullmatch(cursor):
        raise InvalidRequest("cursor", _BAD_CURSOR)
    try:
        record_id = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise InvalidRequest("cursor", _BAD_CURSOR) from None
    if encode_cursor(record_id) != cursor:
        raise InvalidRequest("cursor", _BAD_CURSOR)
    return record_id


def parse_ids(ids: str) -> list[str]:
    """The record ids of `ids=` (comma-separated), each once, in the order given."""
    wanted = list(dict.fromkeys(part.strip() for part in ids.split(",") if part.strip()))
    if not wanted:
        raise InvalidRequest("ids", "give at least one record id (comma-separated), or leave ids out")
    if len(wanted) > MAX_IDS:
        raise InvalidRequest(
            "ids", f"names {len(wanted)} records; at most {MAX_IDS} at once (page through instead)"
        )
    return wanted


def watched_prefix(settings: Settings, resource: str) -> str:
    """The snapshot (event prefix) of a watched resource name; 404 naming it for any other."""
    entry = BY_NAME.get(resource)
    if entry is None or resource not in settings.resources:
        watched = ", ".join(settings.resources)
        if entry is None:  # not repeated: a path may hold anything (a token pasted in the wrong place)
            raise NotFound(f"the path names no resource; watched: {watched}", watched=watched)
        raise NotFound(
            f"resource {entry.name!r} is not watched by this bridge (BRIDGE_RESOURCES); watched: {watched}",
            resource=entry.name,
            watched=watched,
        )
    return entry.prefix


def row_view(prefix: str, row: RecordRow, shape: Shape | None) -> RecordView:
    if row.data is None:
        data: dict[str, Any] = dict(ERASED)
    elif shape is None:
        data = row.data
    else:
        data = project_record(prefix, row.data, shape)
    return RecordView(resource_id=row.resource_id, sequence=row.sequence, data=data)


def outside_scope(subscription: Subscription, school_id: int, resource: str) -> str | None:
    """Why this feed is outside the subscription's scope, or None when it is within (a resource that is not
    one is left to the handler's 404)."""
    if subscription.school_ids is not None and school_id not in subscription.school_ids:
        return (
            f"school {school_id} is outside this subscription token's scope (its subscription's school_ids)"
        )
    entry = BY_NAME.get(resource)
    if entry is not None and not any(type_matches(subscription.event_types, t) for t in entry.event_types):
        return (
            f"resource {resource} is outside this subscription token's scope (its subscription's event_types "
            f"take none of {entry.prefix}.*)"
        )
    return None


async def records_guard(connection: ASGIConnection[Any, Any, Any, Any], handler: BaseRouteHandler) -> None:
    """`admin_guard` for the admin and read-only tokens; a subscription token reaches only the feeds within
    its subscription's scope (403 naming the school or resource outside it)."""
    caller = await caller_of(connection)
    if caller.subscription is None:
        await admin_guard(connection, handler)
        return
    school_id, resource = connection.path_params["school_id"], connection.path_params["resource"]
    why = outside_scope(caller.subscription, school_id, resource)
    if why is not None:
        raise PermissionDeniedException(detail=why)


async def known_school(records: Records, school_id: int) -> bool:
    if school_id in await records.watcher.active_schools():
        return True
    return school_id in await records.snapshots.known_schools()


class RecordsController(Controller):
    path = "/v1/schools"
    tags = ["schools"]
    guards = [records_guard]
    security = SECURITY

    @get(
        "/{school_id:int}/records/{resource:str}",
        summary="The current records of one feed, from the snapshot, with each record's sequence",
        description="Keyset pages by record id; `ids` fetches given records instead. Reads the bridge's "
        "store only (never d6). `meta.as_of_sequence`: the school's sequence when the page was read.",
        responses=error_responses(403, 404),
    )
    async def list_records(
        self,
        request: Request[Any, Any, Any],
        records: Injected[Records],
        school_id: FromPath[int],
        resource: FromPath[str],
        ids: Annotated[
            str | None,
            QueryParameter(
                description=f"comma-separated record ids (at most {MAX_IDS}): those records, no paging; "
                "an id the snapshot does not hold is left out"
            ),
        ] = None,
        limit: Limit = 50,
        cursor: Cursor = None,
        shape: Injected[Shape | None] = None,
    ) -> RecordsPage:
        prefix = watched_prefix(records.settings, resource)
        caller = await caller_of(request)
        if caller.subscription is not None:
            shape = caller.shape
        after = decode_cursor(cursor)
        wanted = None if ids is None else parse_ids(ids)
        if wanted is not None and after is not None:
            raise InvalidRequest("cursor", "goes with paging, not with ids; give one or the other")
        snapshots = records.snapshots
        if wanted is None:
            page = await snapshots.read_records(school_id, prefix, after=after, limit=limit)
        else:
            page = await snapshots.read_records(school_id, prefix, ids=wanted, limit=len(wanted))
        if not page.rows and not page.as_of_sequence and not await known_school(records, school_id):
            raise NotFound(
                f"school {school_id} is not known to this bridge (see GET /v1/schools)", school_id=school_id
            )
        next_cursor = page.next_after if wanted is None else None
        return RecordsPage(
            data=[row_view(prefix, row, shape) for row in page.rows],
            meta=RecordsMeta(
                limit=limit if wanted is None else len(wanted),
                next_cursor=msgspec.UNSET if next_cursor is None else encode_cursor(next_cursor),
                as_of_sequence=page.as_of_sequence,
            ),
        )
