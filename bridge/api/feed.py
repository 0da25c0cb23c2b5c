"""A pull subscription's feed: read it (long-poll), commit a position, or follow it as Server-Sent Events
(docs/pull.md).

Each handler receives `feed` (delivery/feed.py) and `subscriptions`. A webhook subscription has no feed:
409 saying so. Cursors are checked against the subscription they name (400 naming `cursor`, or
`Last-Event-ID` for a stream).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Annotated, Any, Final

import msgspec
from litestar import Controller, Request, get, post
from litestar.params import FromPath, HeaderParameter, JSONBody, QueryParameter
from litestar.response import ServerSentEvent, ServerSentEventMessage
from litestar.status_codes import HTTP_200_OK

from bridge.api.auth import admin_guard, still_allowed, subscription_guard
from bridge.api.common import Injected
from bridge.api.contract import BODY_ERRORS, SECURITY, error_responses, json_body
from bridge.delivery.feed import (
    DEFAULT_LIMIT,
    MAX_LIMIT,
    MAX_WAIT_SECONDS,
    Allowed,
    EntryId,
    Feed,
    FeedPage,
    encode_cursor,
)
from bridge.delivery.models import Subscription, UnknownSubscription
from bridge.delivery.store import SubscriptionStore

KEEPALIVE_SECONDS: Final = 15.0
"""A stream with nothing to send writes a comment line this often, so proxies keep it open."""
STREAM_BATCH: Final = 100

FeedLimit = Annotated[
    int, QueryParameter(ge=1, le=MAX_LIMIT, description=f"events on a page, 1 to {MAX_LIMIT} (default 100)")
]
Wait = Annotated[
    float,
    QueryParameter(
        ge=0,
        le=MAX_WAIT_SECONDS,
        description="seconds to wait for an event when none is there yet, 0 to 30 (default 0: at once)",
    ),
]


class FeedMeta(msgspec.Struct, kw_only=True):
    limit: int
    next_cursor: str
    """The position after this page: pass it back as `cursor` to read on, or commit it."""
    has_more: bool
    """True when more events were already waiting after this page."""


class FeedPageView(msgspec.Struct, kw_only=True):
    data: list[msgspec.Raw]
    """The events, oldest first (each school's in `sequence` order), as the subscription receives them:
    the envelopes of docs/events.md, cut by its fields, redact and payload."""
    meta: FeedMeta


class FeedCommit(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    cursor: str
    """A `meta.next_cursor` (or SSE event id) of this feed: every event up to it is done."""


class FeedCommitted(msgspec.Struct, kw_only=True):
    committed_cursor: str
    """The committed position now (reading without a cursor starts after it)."""
    waiting: int
    """Entries after it (events waiting to be read and committed)."""


def page_view(subscription: Subscription, page: FeedPage, limit: int) -> FeedPageView:
    return FeedPageView(
        data=[msgspec.Raw(event.body) for event in page.events],
        meta=FeedMeta(limit=limit, next_cursor=encode_cursor(subscription.id, page.next), has_more=page.more),
    )


class FeedController(Controller):
    path = "/v1/subscriptions/{subscription_id:str}"
    tags = ["feed"]
    guards = [admin_guard, subscription_guard]  # its own token reaches them (docs/api.md#subscription-tokens)
    security = SECURITY
    before_request = staticmethod(json_body)

    @get(
        "/feed",
        summary="Read a pull subscription's events after a cursor, waiting up to `wait` seconds for one",
        responses=error_responses(403, 404, 409),
    )
    async def read_feed(
        self,
        request: Request[Any, Any, Any],
        subscriptions: Injected[SubscriptionStore],
        feed: Injected[Feed],
        subscription_id: FromPath[str],
        cursor: Annotated[
            str | None,
            QueryParameter(
                description="`meta.next_cursor` of the page before; absent: the committed position"
            ),
        ] = None,
        limit: FeedLimit = DEFAULT_LIMIT,
        wait: Wait = 0.0,
    ) -> FeedPageView:
        subscription = feed.pulled(await subscriptions.get(subscription_id))
        after = await feed.start_of(subscription, cursor)
        allowed = await still_allowed(request) if wait else None
        page = await feed.read(subscription, after, limit=limit, wait=wait, allowed=allowed)
        return page_view(subscription, page, limit)

    @post(
        "/feed/commit",
        summary="Mark every event up to a cursor as done: reading without a cursor starts after it",
        status_code=HTTP_200_OK,
        responses=error_responses(403, 404, 409, *BODY_ERRORS),
    )
    async def commit_feed(
        self,
        subscriptions: Injected[SubscriptionStore],
        feed: Injected[Feed],
        subscription_id: FromPath[str],
        data: JSONBody[FeedCommit],
    ) -> FeedCommitted:
        subscription = feed.pulled(await subscriptions.get(subscription_id))
        committed = await feed.commit(subscription, data.cursor)
        (waiting,) = await feed.waiting([subscription.id])
        return FeedCommitted(committed_cursor=encode_cursor(subscription.id, committed), waiting=waiting)

    @get(
        "/stream",
        summary="Follow a pull subscription's events as Server-Sent Events (resume with Last-Event-ID)",
        description="`id:` is the event's cursor, `event:` its type, `data:` its envelope; a comment line "
        f"every {KEEPALIVE_SECONDS:.0f} s while nothing happens. Without `Last-Event-ID` (or `cursor`) it "
        "starts at the committed position. It never commits: commit an id with `POST .../feed/commit`.",
        responses=error_responses(403, 404, 409),
    )
    async def stream_feed(
        self,
        request: Request[Any, Any, Any],
        subscriptions: Injected[SubscriptionStore],
        feed: Injected[Feed],
        subscription_id: FromPath[str],
        cursor: Annotated[
            str | None, QueryParameter(description="start after this cursor (Last-Event-ID wins when sent)")
        ] = None,
        last_event_id: Annotated[
            str | None, HeaderParameter(name="Last-Event-ID", description="resume after this event id")
        ] = None,
    ) -> ServerSentEvent:
        subscription = feed.pulled(await subscriptions.get(subscription_id))
        if last_event_id:
            after = await feed.start_of(subscription, last_event_id, field="Last-Event-ID")
        else:
            after = await feed.start_of(subscription, cursor)
        return ServerSentEvent(_follow(feed, subscription, after, await still_allowed(request)))


async def _follow(
    feed: Feed, subscription: Subscription, after: EntryId, allowed: Allowed | None
) -> AsyncIterator[ServerSentEventMessage]:
    """The stream's messages: each event as it comes, a comment every `KEEPALIVE_SECONDS` while there is
    none (`Feed.follow`: read only when something comes); it ends when the subscription is deleted or the
    subscription token it was opened with is revoked."""
    pages = feed.follow(subscription, after, limit=STREAM_BATCH, keepalive=KEEPALIVE_SECONDS, allowed=allowed)
    async with contextlib.aclosing(pages):
        try:
            async for page in pages:
                if page is None:
                    yield ServerSentEventMessage(comment="keep-alive", data=None)  # no empty event
                    continue
                for event in page.events:
                    yield ServerSentEventMessage(
                        data=event.body.decode(),
                        event=event.event_type,
                        id=encode_cursor(subscription.id, event.position),
                    )
        except UnknownSubscription:
            return
