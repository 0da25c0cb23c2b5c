"""Delivery history and repair: attempt logs, replays, redeliveries and dead letters.

`DeliveriesController` is mounted at `/v1` next to `SubscriptionController`; it serves
`/v1/subscriptions/{id}/deliveries`, `/v1/subscriptions/{id}/replay`, `/v1/events/{id}/redeliver`,
`/v1/dead-letters` and `/v1/dead-letters/retry`. Lists are newest first, in the one list envelope
(`{"data", "meta": {"limit", "next_cursor"?}}`, see `common.py`): pass `next_cursor` back as `cursor`.
Handlers receive `subscriptions` (the `SubscriptionStore`) and `deliveries` (the `DeliveryService`,
delivery/service.py), and call their methods.

`event_deliveries` gives the per-subscription delivery state that `GET /v1/events/{id}` shows.

Each attempt shows the request's headers as the attempt log lets them be told again: `webhook-id` (the
event id), `content-type`, `user-agent`, `webhook-timestamp` (the one the request was signed with; for
entries logged before it was kept, the attempt's start to the second) and `webhook-signature` masked
(it is not kept). The body is
the event: `GET /v1/events/{id}` (a test send's body is not kept).
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Final

import msgspec
from litestar import Controller, get, post
from litestar.params import FromPath, FromQuery, JSONBody, QueryParameter
from litestar.status_codes import HTTP_202_ACCEPTED

from bridge.api.auth import admin_guard
from bridge.api.common import (
    MAX_PAGE,
    Cursor,
    Injected,
    Limit,
    PageMeta,
    filtered_page,
    next_score_cursor,
    page_meta,
    rfc3339,
    score_cursor,
)
from bridge.api.contract import BODY_ERRORS, SECURITY, error_responses, json_body
from bridge.delivery.models import Attempt, Delivery
from bridge.delivery.sender import USER_AGENT
from bridge.delivery.service import DeliveryService, EventDeliveryStatus
from bridge.delivery.store import SubscriptionStore
from bridge.errors import InvalidRequest
from bridge.events.envelope import Timestamp


class AttemptView(msgspec.Struct, kw_only=True):
    time: Timestamp
    delivery_id: str
    event_id: str
    event_type: str
    school_id: int
    attempt: int
    outcome: str
    status_code: int | None
    error: str | None
    duration_ms: float
    response_body: str
    request_headers: dict[str, str]
    """The headers sent, told again from the log: the signature masked, the timestamp to the second."""


class AttemptPage(msgspec.Struct, kw_only=True):
    data: list[AttemptView]
    meta: PageMeta


class DeadLetterView(msgspec.Struct, kw_only=True):
    id: str
    subscription_id: str
    subscription_url: str | None
    """Where the subscription sends (null if it was removed meanwhile)."""
    event_id: str
    event_type: str
    school_id: int
    sequence: int
    attempts: int
    last_status: int | None
    last_error: str | None
    last_attempt_at: Timestamp | None
    dead_at: Timestamp | None


class DeadLetterPage(msgspec.Struct, kw_only=True):
    data: list[DeadLetterView]
    meta: PageMeta


class ReplayRequest(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    since: dt.datetime
    until: dt.datetime | None = None
    only_failed: bool = False


class ReplayResult(msgspec.Struct, kw_only=True):
    subscription_id: str
    queued: int


class RedeliverRequest(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    subscription_id: str | None = None


class RedeliverResult(msgspec.Struct, kw_only=True):
    event_id: str
    subscription_ids: list[str]


class RetryRequest(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    ids: list[str] | None = None
    subscription_id: str | None = None


class RetryResult(msgspec.Struct, kw_only=True):
    requeued: list[str]


class EventDeliveryView(msgspec.Struct, kw_only=True):
    """An event's latest delivery to one subscription (`bridge.delivery.service` says what each
    state means); times are RFC 3339, `next_attempt_at` null when none is scheduled."""

    subscription_id: str
    subscription_enabled: bool
    delivery_id: str
    state: EventDeliveryStatus
    attempts: int
    last_status: int | None
    last_error: str | None
    last_attempt_at: Timestamp | None
    next_attempt_at: Timestamp | None


async def event_deliveries(deliveries: DeliveryService, event_id: str) -> list[EventDeliveryView]:
    """For `GET /v1/events/{id}`: one entry per subscription that has or had a delivery of the event."""
    return [
        EventDeliveryView(
            subscription_id=d.subscription_id,
            subscription_enabled=d.subscription_enabled,
            delivery_id=d.delivery_id,
            state=d.state,
            attempts=d.attempts,
            last_status=d.last_status,
            last_error=d.last_error,
            last_attempt_at=rfc3339(d.last_attempt_at),
            next_attempt_at=rfc3339(d.next_attempt_at),
        )
        for d in await deliveries.states(event_id)
    ]


MASKED_SIGNATURE: Final = "v1,[masked]"


def request_headers(attempt: Attempt) -> dict[str, str]:
    """The headers of an attempt's request, as far as the attempt log tells them."""
    signed_at = attempt.signed_at
    if signed_at is None:  # logged before the timestamp was kept: the attempt's start
        signed_at = int(attempt.at - attempt.duration_ms / 1000)
    return {
        "content-type": "application/json",
        "user-agent": USER_AGENT,
        "webhook-id": attempt.event_id,
        "webhook-timestamp": str(signed_at),
        "webhook-signature": MASKED_SIGNATURE,
    }


def dead_letter_view(score: float, dead: Delivery, urls: dict[str, str]) -> DeadLetterView:
    return DeadLetterView(
        id=dead.id,
        subscription_id=dead.subscription_id,
        subscription_url=urls.get(dead.subscription_id),
        event_id=dead.event_id,
        event_type=dead.event_type,
        school_id=dead.school_id,
        sequence=dead.sequence,
        attempts=dead.attempts,
        last_status=dead.last_status,
        last_error=dead.last_error,
        last_attempt_at=rfc3339(dead.last_attempt_at),
        dead_at=rfc3339(score),
    )


def _timestamp(moment: dt.datetime) -> float:
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.UTC)
    return moment.timestamp()


class DeliveriesController(Controller):
    path = "/v1"
    tags = ["deliveries"]
    guards = [admin_guard]
    security = SECURITY
    before_request = staticmethod(json_body)

    @get(
        "/subscriptions/{subscription_id:str}/deliveries",
        summary="Delivery attempts, newest first",
        responses=error_responses(404),
    )
    async def list_deliveries(
        self,
        subscriptions: Injected[SubscriptionStore],
        deliveries: Injected[DeliveryService],
        subscription_id: FromPath[str],
        limit: Limit = 50,
        cursor: Cursor = None,
    ) -> AttemptPage:
        await subscriptions.get(subscription_id)
        rows = await deliveries.attempts(subscription_id, before=score_cursor(cursor), limit=limit)
        items = [
            AttemptView(
                time=rfc3339(a.at) or "",
                delivery_id=a.delivery_id,
                event_id=a.event_id,
                event_type=a.event_type,
                school_id=a.school_id,
                attempt=a.attempt,
                outcome=a.outcome,
                status_code=a.status_code,
                error=a.error,
                duration_ms=a.duration_ms,
                response_body=a.response_body,
                request_headers=request_headers(a),
            )
            for a in rows
        ]
        return AttemptPage(data=items, meta=page_meta(limit, next_score_cursor([a.at for a in rows], limit)))

    @post(
        "/subscriptions/{subscription_id:str}/replay",
        summary="Send every matching event of a time window again",
        status_code=HTTP_202_ACCEPTED,
        responses=error_responses(404, *BODY_ERRORS),
    )
    async def replay_subscription(
        self,
        subscriptions: Injected[SubscriptionStore],
        deliveries: Injected[DeliveryService],
        subscription_id: FromPath[str],
        data: JSONBody[ReplayRequest],
    ) -> ReplayResult:
        subscription = await subscriptions.get(subscription_id)
        since = _timestamp(data.since)
        until = None if data.until is None else _timestamp(data.until)
        if until is not None and until < since:
            raise InvalidRequest("until", "must not be before since")
        queued = await deliveries.replay(subscription, since=since, until=until, only_failed=data.only_failed)
        return ReplayResult(subscription_id=subscription_id, queued=queued)

    @post(
        "/events/{event_id:str}/redeliver",
        summary="Send one event again to every subscription it matches, or to one",
        status_code=HTTP_202_ACCEPTED,
        responses=error_responses(404, *BODY_ERRORS),
    )
    async def redeliver_event(
        self,
        deliveries: Injected[DeliveryService],
        event_id: FromPath[str],
        data: JSONBody[RedeliverRequest | None] = None,
    ) -> RedeliverResult:
        subscription_id = None if data is None else data.subscription_id
        targets = await deliveries.redeliver(event_id, subscription_id)
        return RedeliverResult(event_id=event_id, subscription_ids=targets)

    @get(
        "/dead-letters",
        summary="Deliveries that exhausted their retries, newest first",
        responses=error_responses(404),
    )
    async def list_dead_letters(
        self,
        subscriptions: Injected[SubscriptionStore],
        deliveries: Injected[DeliveryService],
        subscription_id: FromQuery[str | None] = None,
        school_id: Annotated[int | None, QueryParameter(ge=0, description="only this school's")] = None,
        limit: Limit = 50,
        cursor: Cursor = None,
    ) -> DeadLetterPage:
        async def fetch(after: str | None) -> tuple[list[tuple[float, Delivery]], str | None]:
            size = limit if school_id is None else MAX_PAGE
            rows = await deliveries.dead_letters(
                subscription_id=subscription_id, before=score_cursor(after), limit=size
            )
            return rows, next_score_cursor([score for score, _ in rows], size)

        rows, next_cursor = await filtered_page(
            fetch,
            lambda row: school_id is None or row[1].school_id == school_id,
            lambda row: repr(row[0]),
            cursor,
            limit,
        )
        urls = {s.id: s.url for s in await subscriptions.list_all()}
        items = [dead_letter_view(score, dead, urls) for score, dead in rows]
        return DeadLetterPage(data=items, meta=page_meta(limit, next_cursor))

    @post(
        "/dead-letters/retry",
        summary="Send dead letters again (the ids given, one subscription's, or all)",
        status_code=HTTP_202_ACCEPTED,
        responses=error_responses(404, *BODY_ERRORS),
    )
    async def retry_dead_letters(
        self, deliveries: Injected[DeliveryService], data: JSONBody[RetryRequest | None] = None
    ) -> RetryResult:
        request = data or RetryRequest()
        requeued = await deliveries.retry_dead_letters(
            ids=request.ids, subscription_id=request.subscription_id
        )
        return RetryResult(requeued=requeued)
