"""`/v1/subscriptions`: register, read, change, remove, rotate the secret, send a test event.

Each handler receives what it uses: `subscriptions` (the `SubscriptionStore`), to send a test event
`deliveries` (the `DeliveryService`), to start a resync `resyncs` (delivery/resync.py). Delivery-side
errors become 400/404 with a detail a person can act on (see `errors.py`).
"""

from __future__ import annotations

import contextlib
import time
from typing import Any

import msgspec
from litestar import Controller, delete, get, patch, post
from litestar.params import FromPath, JSONBody
from litestar.status_codes import HTTP_200_OK, HTTP_202_ACCEPTED

from bridge.api.auth import admin_guard, subscription_guard
from bridge.api.common import Cursor, Injected, Limit, PageMeta, keyset_page, page_meta, rfc3339
from bridge.api.contract import BODY_ERRORS, SECURITY, error_responses, json_body
from bridge.delivery.feed import Feed
from bridge.delivery.models import DeliveryKind, Initial, Subscription
from bridge.delivery.policy import gone
from bridge.delivery.projection import Payload
from bridge.delivery.resync import Resyncs
from bridge.delivery.service import DeliveryService
from bridge.delivery.store import InvalidSubscription, SubscriptionStore, validate_initial
from bridge.errors import Conflict, InvalidRequest
from bridge.events.envelope import Timestamp


class SubscriptionCreate(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    url: str | None = None
    """The webhook endpoint (https); required for `webhook`, absent for `pull`."""
    delivery: DeliveryKind = "webhook"
    """`pull`: no url; its events are read from `GET .../feed` or `GET .../stream` (docs/pull.md). Set at
    creation only."""
    event_types: list[str] | None = None
    school_ids: list[int] | None = None
    description: str | None = None
    ordered: bool = True
    fields: dict[str, Any] | None = None
    """Per event `resource` (`debtor`, `learner`, ...), a list of the only `data` fields sent; ids always
    kept. A resource not named arrives with its ids alone. An update whose changes all fall outside is
    skipped. (Typed loosely here so that a 400 can name the resource whose value is not a list.)"""
    redact: list[str] | None = None
    """Fields sent masked: all but their last four characters replaced by `*`, in `data` and `changes`."""
    payload: Payload = "full"
    """`thin`: no `data`, and `changes` reduced to the changed field names."""
    initial: Initial = "none"
    """`snapshot`: start with a resync of the whole scope (the answer's `resync_id`), and get one of each
    feed that takes a new baseline; needs `event_types` that take a `*.snapshot` type."""


class SubscriptionPatch(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    url: str | msgspec.UnsetType = msgspec.UNSET
    event_types: list[str] | msgspec.UnsetType | None = msgspec.UNSET
    school_ids: list[int] | msgspec.UnsetType | None = msgspec.UNSET
    description: str | msgspec.UnsetType | None = msgspec.UNSET
    fields: dict[str, Any] | msgspec.UnsetType | None = msgspec.UNSET
    redact: list[str] | msgspec.UnsetType | None = msgspec.UNSET
    payload: Payload | msgspec.UnsetType = msgspec.UNSET
    enabled: bool | msgspec.UnsetType = msgspec.UNSET


class SubscriptionView(msgspec.Struct, kw_only=True):
    id: str
    url: str | None
    """None for a pull subscription."""
    delivery: DeliveryKind
    event_types: list[str] | None
    school_ids: list[int] | None
    description: str | None
    ordered: bool
    fields: dict[str, list[str]] | None
    redact: list[str] | None
    payload: Payload
    initial: Initial
    enabled: bool
    disabled_reason: str | None
    failing_since: Timestamp | None
    created_at: Timestamp
    updated_at: Timestamp
    previous_secret_expires_at: Timestamp | None
    pending_deliveries: int | None = None
    """Deliveries not yet done: for a pull subscription, the events after its committed position."""
    dead_letters: int | None = None


class SubscriptionWithSecret(SubscriptionView, kw_only=True):
    """Only the answers to create and rotate-secret show the secret."""

    secret: str
    resync_id: str | msgspec.UnsetType = msgspec.UNSET
    """Only in the answer to create with `"initial": "snapshot"`: the resync of its whole scope, under
    way (docs/api.md#automatic-snapshots)."""


class SubscriptionPage(msgspec.Struct, kw_only=True):
    data: list[SubscriptionView]
    meta: PageMeta


class ResyncRequest(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    school_ids: list[int] | None = None
    """The schools to send (default: the subscription's `school_ids`, else every school the bridge knows);
    each must be in the subscription's scope."""
    resources: list[str] | None = None
    """The resources to send (`debtors`, `learners`, ...; default: every watched one whose
    `<prefix>.snapshot` the subscription's `event_types` take)."""


class ResyncStarted(msgspec.Struct, kw_only=True):
    resync_id: str
    """Named by every `resync.started` and `resync.completed` of this resync (`data.resync_id`)."""
    feeds: int
    """(school, resource) pairs it sends: each framed by `resync.started` and `resync.completed`."""


class TestOutcome(msgspec.Struct, kw_only=True):
    event_id: str
    success: bool
    status_code: int | None
    error: str | None
    duration_ms: float
    response_body: str
    subscription_disabled: bool = False
    """True when the endpoint answered 410 Gone: the subscription is disabled, as for any delivery."""


def view(subscription: Subscription, counts: tuple[int, int] | None = None) -> SubscriptionView:
    now = time.time()
    expires = subscription.previous_secret_expires_at
    return SubscriptionView(
        id=subscription.id,
        url=subscription.url if not subscription.pulled else None,
        delivery=subscription.delivery,
        event_types=subscription.event_types,
        school_ids=subscription.school_ids,
        description=subscription.description,
        ordered=subscription.ordered,
        fields=subscription.fields,
        redact=subscription.redact,
        payload=subscription.payload,
        initial=subscription.initial,
        enabled=subscription.enabled,
        disabled_reason=subscription.disabled_reason,
        failing_since=rfc3339(subscription.failing_since),
        created_at=rfc3339(subscription.created_at) or "",
        updated_at=rfc3339(subscription.updated_at) or "",
        previous_secret_expires_at=rfc3339(expires) if expires and expires > now else None,
        pending_deliveries=None if counts is None else counts[0],
        dead_letters=None if counts is None else counts[1],
    )


def view_with_secret(subscription: Subscription) -> SubscriptionWithSecret:
    base = msgspec.structs.asdict(view(subscription))
    return SubscriptionWithSecret(**base, secret=subscription.secret)


class SubscriptionController(Controller):
    path = "/v1/subscriptions"
    tags = ["subscriptions"]
    guards = [admin_guard]
    security = SECURITY
    before_request = staticmethod(json_body)

    @post(
        "/",
        summary="Register a webhook endpoint (or a pull feed); the answer holds its signing secret",
        responses=error_responses(*BODY_ERRORS),
    )
    async def create_subscription(
        self,
        subscriptions: Injected[SubscriptionStore],
        data: JSONBody[SubscriptionCreate],
        resyncs: Injected[Resyncs | None] = None,
    ) -> SubscriptionWithSecret:
        """With `"initial": "snapshot"`, its first resync (its whole scope) is asked for before the answer,
        which names it (docs/api.md#automatic-snapshots). A resync that cannot be asked for takes the new
        subscription away again: the client may simply try again."""
        if data.initial == "snapshot" and resyncs is None:  # an app built without the resync runner
            validate_initial(data.initial, data.event_types)
            raise InvalidSubscription("initial", "snapshot: this bridge app runs no resyncs")
        subscription = await subscriptions.create(
            url=data.url,
            event_types=data.event_types,
            school_ids=data.school_ids,
            description=data.description,
            ordered=data.ordered,
            fields=data.fields,
            redact=data.redact,
            payload=data.payload,
            initial=data.initial,
            delivery=data.delivery,
        )
        created = view_with_secret(subscription)
        if subscription.initial != "snapshot" or resyncs is None:
            return created
        try:
            resync_id, _feeds = await resyncs.start(subscription)
        except BaseException as error:
            with contextlib.suppress(Exception):
                await subscriptions.delete(subscription.id)
            if isinstance(error, InvalidRequest):  # e.g. its snapshot types are of resources not watched
                raise InvalidSubscription("initial", f"snapshot: {error.problem}") from None
            raise
        return msgspec.structs.replace(created, resync_id=resync_id)

    @get(
        "/",
        summary="Every subscription, by id, with its queue counts (secrets not shown)",
        responses=error_responses(),
    )
    async def list_subscriptions(
        self, subscriptions: Injected[SubscriptionStore], limit: Limit = 50, cursor: Cursor = None
    ) -> SubscriptionPage:
        ordered = sorted(await subscriptions.list_all(), key=lambda s: s.id)
        page, next_cursor = keyset_page(ordered, lambda s: s.id, cursor or None, limit)
        counts = await subscriptions.counts_of([s.id for s in page])
        return SubscriptionPage(
            data=[view(s, c) for s, c in zip(page, counts, strict=True)], meta=page_meta(limit, next_cursor)
        )

    @get(
        "/{subscription_id:str}",
        summary="One subscription, with its queue counts",
        responses=error_responses(404),
    )
    async def get_subscription(
        self, subscriptions: Injected[SubscriptionStore], subscription_id: FromPath[str]
    ) -> SubscriptionView:
        subscription = await subscriptions.get(subscription_id)
        return view(subscription, await subscriptions.counts(subscription_id))

    @patch(
        "/{subscription_id:str}",
        summary="Change url, filters, description, fields, redact, payload or enabled",
        responses=error_responses(404, *BODY_ERRORS),
    )
    async def update_subscription(
        self,
        subscriptions: Injected[SubscriptionStore],
        subscription_id: FromPath[str],
        data: JSONBody[SubscriptionPatch],
    ) -> SubscriptionView:
        changes = {
            name: value for name, value in msgspec.structs.asdict(data).items() if value is not msgspec.UNSET
        }
        subscription = await subscriptions.update(subscription_id, changes)
        return view(subscription)

    @delete(
        "/{subscription_id:str}",
        summary="Remove it, with its queue and logs",
        responses=error_responses(403, 404),
    )
    async def delete_subscription(
        self,
        subscriptions: Injected[SubscriptionStore],
        subscription_id: FromPath[str],
        feed: Injected[Feed | None] = None,
    ) -> None:
        await subscriptions.delete(subscription_id)
        if feed is not None:
            await feed.notices.publish([subscription_id])  # its open streams, on every replica, end now

    @post(
        "/{subscription_id:str}/rotate-secret",
        summary="New secret; the old one keeps signing alongside for 24 hours",
        status_code=HTTP_200_OK,
        responses=error_responses(403, 404),
    )
    async def rotate_subscription_secret(
        self, subscriptions: Injected[SubscriptionStore], subscription_id: FromPath[str]
    ) -> SubscriptionWithSecret:
        return view_with_secret(await subscriptions.rotate_secret(subscription_id))

    @post(
        "/{subscription_id:str}/resync",
        summary="Send the current records as snapshot events, framed by resync.started and resync.completed",
        description="Queued at once, sent in each school's lane after what was already queued "
        "(docs/consumers.md). A feed already being resynced is not sent twice: the answer then names the "
        "resync under way.",
        status_code=HTTP_202_ACCEPTED,
        guards=[subscription_guard],  # its own subscription token may ask one (of its own scope, as any)
        responses=error_responses(403, 404, *BODY_ERRORS),
    )
    async def resync_subscription(
        self,
        subscriptions: Injected[SubscriptionStore],
        subscription_id: FromPath[str],
        data: JSONBody[ResyncRequest],
        resyncs: Injected[Resyncs | None] = None,
    ) -> ResyncStarted:
        subscription = await subscriptions.get(subscription_id)
        if resyncs is None:  # an app built without the resync runner (some tests' apps)
            raise InvalidRequest("subscription_id", "this bridge app runs no resyncs")
        resync_id, feeds = await resyncs.start(subscription, data.school_ids, data.resources)
        return ResyncStarted(resync_id=resync_id, feeds=feeds)

    @post(
        "/{subscription_id:str}/test",
        summary="Send a webhook.test event now",
        status_code=HTTP_200_OK,
        responses=error_responses(403, 404, 409),
    )
    async def test_subscription(
        self,
        subscriptions: Injected[SubscriptionStore],
        deliveries: Injected[DeliveryService],
        subscription_id: FromPath[str],
    ) -> TestOutcome:
        subscription = await subscriptions.get(subscription_id)
        if subscription.pulled:
            raise Conflict(
                "a pull subscription is never sent anything: read its feed (GET .../feed) instead",
                subscription_id=subscription_id,
            )
        event_id, result = await deliveries.send_test(subscription)
        return TestOutcome(
            event_id=event_id,
            success=result.ok,
            status_code=result.status_code,
            error=result.error,
            duration_ms=result.duration_ms,
            response_body=result.response_body,
            subscription_disabled=gone(result),
        )
