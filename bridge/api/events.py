"""The event log: `GET /v1/events` (newest first, cursor paginated, filtered) and `GET /v1/events/{id}`.

`resource` and `resource_id` find the events of one record (`learner` `51`); the log has no index for
them, so a page of those reads the log (narrowed by the other filters, a school best of all) page after
page until it has found `limit` of them or read 10,000 events, and answers with a cursor to go on.

Handlers receive `events` (the `EventLog`) and, for an event's delivery states, `deliveries`
(the `DeliveryService`).
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated

import msgspec
from litestar import Controller, get
from litestar.exceptions import NotFoundException, ValidationException
from litestar.params import FromPath, QueryParameter

from bridge.api.auth import admin_guard
from bridge.api.common import MAX_PAGE, Cursor, Injected, Limit, PageMeta, filtered_page, page_meta
from bridge.api.contract import SECURITY, error_responses
from bridge.api.deliveries import EventDeliveryView, event_deliveries
from bridge.delivery.service import DeliveryService
from bridge.events.envelope import EVENT_TYPES, Event
from bridge.events.log import EventLog


class EventPage(msgspec.Struct, kw_only=True):
    data: list[Event]
    meta: PageMeta


class EventDetail(msgspec.Struct, kw_only=True):
    event: Event
    deliveries: list[EventDeliveryView]
    """One entry per subscription the event was queued for: its delivery state."""


class EventsController(Controller):
    path = "/v1/events"
    tags = ["events"]
    guards = [admin_guard]
    security = SECURITY

    @get("/", summary="The event log, newest first", responses=error_responses())
    async def list_events(
        self,
        events: Injected[EventLog],
        type: Annotated[str | None, QueryParameter(description="an exact event type")] = None,
        school_id: Annotated[int | None, QueryParameter(ge=1)] = None,
        since: Annotated[dt.datetime | None, QueryParameter(description="RFC 3339, inclusive")] = None,
        until: Annotated[dt.datetime | None, QueryParameter(description="RFC 3339, inclusive")] = None,
        resource: Annotated[str | None, QueryParameter(description="e.g. learner; with resource_id")] = None,
        resource_id: Annotated[str | None, QueryParameter(description="one record's events, e.g. 51")] = None,
        limit: Limit = 50,
        cursor: Cursor = None,
    ) -> EventPage:
        if type is not None and type not in EVENT_TYPES:
            raise ValidationException(
                detail=f"type: unknown event type {type!r}; one of {', '.join(sorted(EVENT_TYPES))}"
            )
        for name, moment in (("since", since), ("until", until)):
            if moment is not None and moment.tzinfo is None:
                raise ValidationException(detail=f"{name}: give a time zone, e.g. 2026-11-22T10:00:00Z")
        filtered = resource is not None or resource_id is not None

        async def fetch(after: str | None) -> tuple[list[Event], str | None]:
            return await events.list(
                type=type,
                school_id=school_id,
                since=since,
                until=until,
                limit=MAX_PAGE if filtered else limit,
                cursor=after,
            )

        def of_record(event: Event) -> bool:
            return resource in (None, event.resource) and resource_id in (None, event.resource_id)

        try:
            page, next_cursor = await filtered_page(fetch, of_record, lambda e: e.id, cursor, limit)
        except ValueError as error:
            raise ValidationException(detail=f"cursor: {error}") from None
        return EventPage(data=page, meta=page_meta(limit, next_cursor))

    @get(
        "/{event_id:str}",
        summary="One event, with its delivery state per subscription",
        responses=error_responses(404),
    )
    async def get_event(
        self, events: Injected[EventLog], deliveries: Injected[DeliveryService], event_id: FromPath[str]
    ) -> EventDetail:
        event = await events.get(event_id)
        if event is None:
            raise NotFoundException(
                detail=f"no event with id {event_id!r} (unknown, or older than retention)"
            )
        return EventDetail(event=event, deliveries=await event_deliveries(deliveries, event_id))
