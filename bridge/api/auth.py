"""Who may call `/v1/*`: the admin token, the read-only token for `GET` alone, or a subscription token for its
own subscription's routes alone (docs/api.md#subscription-tokens).

The admin and read-only tokens are compared in constant time: the presented token is compared with each
configured one, every time, so the answer's timing says nothing about which (if any) it nearly matched. A
subscription token is looked up by the `TokenStore` (`app.state.tokens`: guards run before dependencies are
resolved), which compares digests in constant time. A missing, wrong or revoked token is 401. A read-only
caller gets 403 with a detail on any change (`POST`, `PATCH`, `DELETE`); a subscription token gets 403 on
every route but those of its own subscription that take one (`subscription_guard`) and the records in its
scope (api/records.py). No token is ever logged: the log redactor knows the configured two (serve.py
`secrets_of`, bridge/settings.py) and the shape of a subscription token (bridge/logs.py).

Who called is kept on the connection's state (`caller_of`), so a handler can cut its answer by the
subscription's `fields`, `redact` and `payload` (`shape_for`). `GET /v1/whoami` tells a caller which role its
token has, so the console can hide what it may not do.
"""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Final, Literal

import msgspec
from litestar import Request, get
from litestar.connection import ASGIConnection
from litestar.exceptions import NotAuthorizedException, PermissionDeniedException
from litestar.handlers.base import BaseRouteHandler

from bridge.api.contract import SECURITY, error_responses
from bridge.delivery.models import Subscription
from bridge.delivery.projection import Shape, shape_of
from bridge.delivery.tokens import TOKEN_PREFIX, TokenStore

Role = Literal["admin", "readonly", "subscription"]
READ_METHODS: Final = frozenset({"GET", "HEAD", "OPTIONS"})
CALLER: Final = "caller"
"""Where `caller_of` keeps who called, in the connection's state (one per request)."""
SUBSCRIPTION_REACH: Final = (
    "a subscription token reaches only its own subscription's feed, commit, stream, events "
    "(GET /v1/subscriptions/{id}/events/{event_id}) and resync, and the records within its scope "
    "(GET /v1/schools/{school_id}/records/{resource}); use the admin token for this"
)
READ_ONLY: Final = (
    "this token is read-only: it may look (GET) but not change anything; use the admin token for this"
)


@dataclass(frozen=True)
class Caller:
    """Who presented the token: its role and, for a subscription token, its subscription."""

    role: Role
    subscription: Subscription | None = None

    @property
    def shape(self) -> Shape | None:
        """What to cut answers by: the subscription's `fields`, `redact` and `payload` for its token; None
        (every field) for the admin and read-only tokens, and for a subscription that sets none of them."""
        return None if self.subscription is None else shape_of(self.subscription)


class WhoAmI(msgspec.Struct, kw_only=True):
    role: Role
    """`admin` may do everything; `readonly` may only read (`GET`): every change answers 403; `subscription`
    reaches only its own subscription's routes (docs/api.md#subscription-tokens)."""
    subscription_id: str | msgspec.UnsetType = msgspec.UNSET
    """The subscription of a subscription token; absent for the other roles."""


async def caller_of(connection: ASGIConnection[Any, Any, Any, Any]) -> Caller:
    """Who called (resolved once per request, then kept on the connection's state); 401 when the token is
    missing, wrong or revoked."""
    known = connection.state.get(CALLER)
    if isinstance(known, Caller):
        return known
    caller = await _resolve(connection)
    connection.state[CALLER] = caller
    return caller


async def still_allowed(
    connection: ASGIConnection[Any, Any, Any, Any],
) -> Callable[[], Awaitable[bool]] | None:
    """For a subscription token: whether it still resolves to its subscription (asked again by a long-poll
    after its wait and by a stream before each read, so a revoked token reads nothing more); None for the
    admin and read-only tokens, which only a restart changes."""
    caller = await caller_of(connection)
    tokens: TokenStore | None = connection.app.state.get("tokens")
    if caller.subscription is None or tokens is None:
        return None
    token = connection.headers.get("authorization", "").partition(" ")[2].strip()
    subscription_id = caller.subscription.id

    async def allowed() -> bool:
        return await tokens.resolve(token) == subscription_id

    return allowed


async def shape_for(connection: ASGIConnection[Any, Any, Any, Any]) -> Shape | None:
    """The shape to cut this caller's answers by (`Caller.shape`)."""
    return (await caller_of(connection)).shape


async def _resolve(connection: ASGIConnection[Any, Any, Any, Any]) -> Caller:
    settings = connection.app.state.settings
    admin: str = settings.admin_token or ""
    readonly: str = getattr(settings, "readonly_token", None) or ""
    header = connection.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if not admin or scheme.lower() != "bearer" or not token.strip():
        raise NotAuthorizedException(detail="send the admin token as 'Authorization: Bearer <token>'")
    given = token.strip()
    is_admin = hmac.compare_digest(given.encode(), admin.encode())
    # Always compared, also when there is no read-only token, so both paths cost the same.
    is_reader = hmac.compare_digest(given.encode(), (readonly or admin).encode()) and bool(readonly)
    if is_admin:
        return Caller("admin")
    if is_reader:
        return Caller("readonly")
    tokens: TokenStore | None = connection.app.state.get("tokens")
    if tokens is not None and given.startswith(TOKEN_PREFIX):
        subscription = await tokens.holder(given)
        if subscription is not None:
            return Caller("subscription", subscription)
        raise NotAuthorizedException(
            detail="this subscription token is unknown or was revoked (or its subscription was deleted); "
            "ask an admin for a new one"
        )
    raise NotAuthorizedException(detail="the token is wrong")


def _guards_of(handler: BaseRouteHandler) -> list[Any]:
    """Every guard of the route, from the app down to the handler, as they were declared."""
    return [guard for layer in handler.ownership_layers for guard in (layer.guards or ())]


def _refuse_changes(connection: ASGIConnection[Any, Any, Any, Any]) -> None:
    if connection.scope.get("method", "GET") not in READ_METHODS:
        raise PermissionDeniedException(detail=READ_ONLY)


async def admin_guard(connection: ASGIConnection[Any, Any, Any, Any], handler: BaseRouteHandler) -> None:
    """Every `/v1` controller's guard: any valid token may read, only the admin token may change, and a
    subscription token passes only where the route also has `subscription_guard` (which then decides)."""
    caller = await caller_of(connection)
    if caller.role == "subscription":
        if subscription_guard not in _guards_of(handler):
            raise PermissionDeniedException(detail=SUBSCRIPTION_REACH)
    elif caller.role == "readonly":
        _refuse_changes(connection)


async def subscription_guard(
    connection: ASGIConnection[Any, Any, Any, Any], handler: BaseRouteHandler
) -> None:
    """The guard of a route of one subscription (`subscription_id` in its path) that the subscription's own
    token may reach: the admin token passes, the read-only one for `GET` alone, a subscription token for its
    own subscription alone (403 for any other)."""
    del handler
    caller = await caller_of(connection)
    if caller.role == "readonly":
        _refuse_changes(connection)
    elif caller.subscription is not None:
        own = caller.subscription.id
        if connection.path_params.get("subscription_id") != own:
            raise PermissionDeniedException(
                detail=f"this subscription token belongs to subscription {own}: it reaches nothing of another"
            )


async def token_guard(connection: ASGIConnection[Any, Any, Any, Any], handler: BaseRouteHandler) -> None:
    """Any valid token (401 otherwise): for what every caller may ask, such as which token it holds."""
    del handler
    await caller_of(connection)


@get(
    "/v1/whoami",
    summary="The role of the token presented: admin, readonly (GET only) or subscription (its own routes)",
    tags=["auth"],
    guards=[token_guard],
    security=SECURITY,
    responses=error_responses(),
)
async def whoami(request: Request[Any, Any, Any]) -> WhoAmI:
    caller = await caller_of(request)
    if caller.subscription is None:
        return WhoAmI(role=caller.role)
    return WhoAmI(role=caller.role, subscription_id=caller.subscription.id)
