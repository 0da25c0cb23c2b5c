"""`/v1/subscriptions`: register, read, change, remove, rotate the secret, send a test event.

Each handler receives what it uses: `subscriptions` (the `SubscriptionStore`) and, to send a test event,
`deliveries` (the `DeliveryService`). Delivery-side errors become 400/404 with a detail a person can act on
(see `errors.py`).
"""

from __future__ import annotations

import time
from typing import Any

import msgspec
from litestar import Controller, delete, get, patch, post
from litestar.params import FromPath, JSONBody
from litestar.status_codes import HTTP_200_OK

from bridge.api.auth import admin_guard
from bridge.api.common import Cursor, Injected, Limit, PageMeta, keyset_page, page_meta, rfc3339
from bridge.api.contract import BODY_ERRORS, SECURITY, error_responses, json_body
from bridge.delivery.models import Subscription
from bridge.delivery.policy import gone
from bridge.delivery.projection import Payload
from bridge.delivery.service import DeliveryService
from bridge.delivery.store import SubscriptionStore
from bridge.events.envelope import Timestamp


class SubscriptionCreate(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    url: str
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
    url: str
    event_types: list[str] | None
    school_ids: list[int] | None
    description: str | None
    ordered: bool
    fields: dict[str, list[str]] | None
    redact: list[str] | None
    payload: Payload
    enabled: bool
    disabled_reason: str | None
    failing_since: Timestamp | None
    created_at: Timestamp
    updated_at: Timestamp
    previous_secret_expires_at: Timestamp | None
    pending_deliveries: int | None = None
    dead_letters: int | None = None


class SubscriptionWithSecret(SubscriptionView, kw_only=True):
    """Only the answers to create and rotate-secret show the secret."""

    secret: str


class SubscriptionPage(msgspec.Struct, kw_only=True):
    data: list[SubscriptionView]
    meta: PageMeta


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
        url=subscription.url,
        event_types=subscription.event_types,
        school_ids=subscription.school_ids,
        description=subscription.description,
        ordered=subscription.ordered,
        fields=subscription.fields,
        redact=subscription.redact,
        payload=subscription.payload,
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
        summary="Register a webhook endpoint; the answer holds its signing secret",
        responses=error_responses(*BODY_ERRORS),
    )
    async def create_subscription(
        self, subscriptions: Injected[SubscriptionStore], data: JSONBody[SubscriptionCreate]
    ) -> SubscriptionWithSecret:
        subscription = await subscriptions.create(
            url=data.url,
            event_types=data.event_types,
            school_ids=data.school_ids,
            description=data.description,
            ordered=data.ordered,
            fields=data.fields,
            redact=data.redact,
            payload=data.payload,
        )
        return view_with_secret(subscription)

    @get("/", summary="Every subscription, by id (secrets not shown)", responses=error_responses())
    async def list_subscriptions(
        self, subscriptions: Injected[SubscriptionStore], limit: Limit = 50, cursor: Cursor = None
    ) -> SubscriptionPage:
        ordered = sorted(await subscriptions.list_all(), key=lambda s: s.id)
        page, next_cursor = keyset_page(ordered, lambda s: s.id, cursor or None, limit)
        return SubscriptionPage(data=[view(s) for s in page], meta=page_meta(limit, next_cursor))

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
        self, subscriptions: Injected[SubscriptionStore], subscription_id: FromPath[str]
    ) -> None:
        await subscriptions.delete(subscription_id)

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
        "/{subscription_id:str}/test",
        summary="Send a webhook.test event now",
        status_code=HTTP_200_OK,
        responses=error_responses(403, 404),
    )
    async def test_subscription(
        self,
        subscriptions: Injected[SubscriptionStore],
        deliveries: Injected[DeliveryService],
        subscription_id: FromPath[str],
    ) -> TestOutcome:
        subscription = await subscriptions.get(subscription_id)
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
