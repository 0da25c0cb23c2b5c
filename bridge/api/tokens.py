"""Subscription tokens, and one event as a subscription receives it (docs/api.md#subscription-tokens).

- `POST /v1/subscriptions/{id}/tokens` (admin): a new token, shown this once (only its digest is kept).
- `GET /v1/subscriptions/{id}/tokens`: the tokens' ids and times, never a token.
- `DELETE /v1/subscriptions/{id}/tokens/{token_id}` (admin): revoked; from then on the token is a 401.
- `GET /v1/subscriptions/{id}/events/{event_id}`: one of the subscription's events, cut by its `fields`
  and `redact` as what it is sent is (delivery/projection.py), `data` included whatever its `payload`:
  this is where a `thin` subscriber reads what its webhook left out, with its own token, which sees no
  more than the subscription is meant to.

Handlers receive `tokens` (the `TokenStore`), `subscriptions` and `events` (the `EventLog`).
"""

from __future__ import annotations

from typing import Any, Final

import msgspec
import structlog
from litestar import Controller, delete, get, post
from litestar.params import FromPath

from bridge.api.auth import admin_guard, subscription_guard
from bridge.api.common import Cursor, Injected, Limit, PageMeta, keyset_page, page_meta, rfc3339
from bridge.api.contract import SECURITY, error_responses
from bridge.delivery.feed import Feed
from bridge.delivery.projection import decode, project, shape_of
from bridge.delivery.store import SubscriptionStore
from bridge.delivery.tokens import TokenInfo, TokenStore, is_token_id
from bridge.errors import NotFound
from bridge.events.envelope import Timestamp
from bridge.events.ids import is_event_id
from bridge.events.log import EventLog, is_erased_body

log = structlog.get_logger(__name__)


class TokenView(msgspec.Struct, kw_only=True):
    token_id: str
    """Names the token in `DELETE .../tokens/{token_id}`; the token itself is never shown again."""
    created_at: Timestamp


class TokenCreated(TokenView, kw_only=True):
    """Only the answer to create shows the token: keep it, it cannot be read back."""

    token: str
    """Send it as `Authorization: Bearer <token>`; it reaches only this subscription's own routes
    (docs/api.md#subscription-tokens)."""


class TokenPage(msgspec.Struct, kw_only=True):
    data: list[TokenView]
    meta: PageMeta


class SubscriptionEvent(msgspec.Struct, kw_only=True, omit_defaults=True):
    """An event as one subscription may see it: its `fields` and `redact` applied to `data` and `changes`
    (whole, also for a `thin` subscription: this is where it reads them). Field order is the wire order."""

    id: str
    type: str
    timestamp: Timestamp
    school_id: int
    sequence: int
    resource: str
    resource_id: str
    data: dict[str, Any] | msgspec.UnsetType = msgspec.UNSET
    """The record cut by the subscription's `fields` and `redact`; `{"erased": true}` for an erased event."""
    changes: dict[str, Any] | None = None


_event: Final = msgspec.json.Decoder(SubscriptionEvent)


def token_view(info: TokenInfo) -> TokenView:
    return TokenView(token_id=info.token_id, created_at=rfc3339(info.created_at) or "")


def no_token(subscription_id: str, token_id: str) -> NotFound:
    if not is_token_id(token_id):  # never repeat what was sent: it might be a token pasted in the path
        return NotFound(
            f"that is not a token id (they look like tok_01J...): see GET /v1/subscriptions/{subscription_id}"
            "/tokens",
            subscription_id=subscription_id,
        )
    return NotFound(
        f"subscription {subscription_id} has no token {token_id} (revoked already, or never made)",
        subscription_id=subscription_id,
        token_id=token_id,
    )


def no_event(subscription_id: str, event_id: str) -> NotFound:
    if not is_event_id(event_id):
        return NotFound(
            "that is not an event id (they look like evt_01J...)", subscription_id=subscription_id
        )
    return NotFound(
        f"subscription {subscription_id} has no event {event_id}: unknown, older than retention, or outside "
        "its event_types and school_ids",
        subscription_id=subscription_id,
        event_id=event_id,
    )


class SubscriptionTokensController(Controller):
    path = "/v1/subscriptions"
    security = SECURITY

    @post(
        "/{subscription_id:str}/tokens",
        summary="A new subscription token, shown this once: it reaches only this subscription's own routes",
        tags=["subscriptions"],
        guards=[admin_guard],
        responses=error_responses(403, 404),
    )
    async def create_subscription_token(
        self, tokens: Injected[TokenStore], subscription_id: FromPath[str]
    ) -> TokenCreated:
        info, token = await tokens.create(subscription_id)
        log.info("subscription token made", subscription=subscription_id, id=info.token_id)
        return TokenCreated(**msgspec.structs.asdict(token_view(info)), token=token)

    @get(
        "/{subscription_id:str}/tokens",
        summary="The subscription's tokens, oldest first (their ids and times, never a token)",
        tags=["subscriptions"],
        guards=[admin_guard],
        responses=error_responses(403, 404),
    )
    async def list_subscription_tokens(
        self,
        tokens: Injected[TokenStore],
        subscription_id: FromPath[str],
        limit: Limit = 50,
        cursor: Cursor = None,
    ) -> TokenPage:
        page, next_cursor = keyset_page(
            await tokens.list(subscription_id), lambda t: t.token_id, cursor or None, limit
        )
        return TokenPage(data=[token_view(info) for info in page], meta=page_meta(limit, next_cursor))

    @delete(
        "/{subscription_id:str}/tokens/{token_id:str}",
        summary="Revoke a token: from now on it answers 401",
        tags=["subscriptions"],
        guards=[admin_guard],
        responses=error_responses(403, 404),
    )
    async def revoke_subscription_token(
        self,
        tokens: Injected[TokenStore],
        subscription_id: FromPath[str],
        token_id: FromPath[str],
        feed: Injected[Feed | None] = None,
    ) -> None:
        if not await tokens.revoke(subscription_id, token_id):
            raise no_token(subscription_id, token_id)
        log.info("subscription token revoked", subscription=subscription_id, id=token_id)
        if feed is not None:  # its open streams and long-polls, on every replica, read nothing more
            await feed.notices.publish([subscription_id])

    @get(
        "/{subscription_id:str}/events/{event_id:str}",
        summary="One of this subscription's events, cut by its fields and redact",
        description="The subscription's own token may read it: how a `thin` subscriber fetches what its "
        "webhook left out (`data` and `changes`, cut by `fields` and `redact`). 404 for an event it does "
        "not match (its `event_types` and `school_ids`). An erased event answers as the log holds it.",
        tags=["events"],
        guards=[subscription_guard],
        responses=error_responses(403, 404),
    )
    async def get_subscription_event(
        self,
        subscriptions: Injected[SubscriptionStore],
        events: Injected[EventLog],
        subscription_id: FromPath[str],
        event_id: FromPath[str],
    ) -> SubscriptionEvent:
        subscription = await subscriptions.get(subscription_id)
        bodies = await events.raw([event_id]) if is_event_id(event_id) else []
        envelope = decode(bodies[0]) if bodies else None
        if envelope is None or not subscription.matches(envelope.type, envelope.school_id):
            raise no_event(subscription_id, event_id)
        shape = shape_of(subscription)
        if shape is None or is_erased_body(bodies[0]):
            return _event.decode(bodies[0])
        # `thin` left `data` out of the webhook so that it is read here. An update whose changes its
        # `fields` leave out was not sent; it still answers here, with no changes.
        cut = project(envelope, msgspec.structs.replace(shape, thin=False), may_skip=False)
        assert cut is not None  # only a skippable update is None
        return _event.decode(cut)
