"""Who may call `/v1/*`: the admin token, or the read-only token for `GET` alone.

Both are bearer tokens compared in constant time: the presented token is compared with each configured
one, every time, so the answer's timing says nothing about which (if any) it nearly matched. A read-only
caller gets 403 with a detail on any change (`POST`, `PATCH`, `DELETE`); a missing or wrong token, 401.
Neither token is ever logged (the log redactor knows both, see serve.py `secrets_of`).

`GET /v1/whoami` tells a caller which role its token has, so the console can hide what it may not do.
"""

from __future__ import annotations

import hmac
from typing import Any, Final, Literal

import msgspec
from litestar import Request, get
from litestar.connection import ASGIConnection
from litestar.exceptions import NotAuthorizedException, PermissionDeniedException
from litestar.handlers.base import BaseRouteHandler

from bridge.api.contract import SECURITY, error_responses

Role = Literal["admin", "readonly"]
READ_METHODS: Final = frozenset({"GET", "HEAD", "OPTIONS"})


class WhoAmI(msgspec.Struct, kw_only=True):
    role: Role
    """`admin` may do everything; `readonly` may only read (`GET`): every change answers 403."""


def role_of(connection: ASGIConnection[Any, Any, Any, Any]) -> Role:
    """The role of the bearer token presented; 401 when there is none or it matches neither token."""
    settings = connection.app.state.settings
    admin: str = settings.admin_token or ""
    readonly: str = getattr(settings, "readonly_token", None) or ""
    header = connection.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if not admin or scheme.lower() != "bearer" or not token:
        raise NotAuthorizedException(detail="send the admin token as 'Authorization: Bearer <token>'")
    given = token.strip().encode()
    is_admin = hmac.compare_digest(given, admin.encode())
    # Always compared, also when there is no read-only token, so both paths cost the same.
    is_reader = hmac.compare_digest(given, (readonly or admin).encode()) and bool(readonly)
    if is_admin:
        return "admin"
    if is_reader:
        return "readonly"
    raise NotAuthorizedException(detail="the token is wrong")


def admin_guard(connection: ASGIConnection[Any, Any, Any, Any], handler: BaseRouteHandler) -> None:
    """Every `/v1` controller's guard: any valid token may read, only the admin token may change."""
    del handler
    role = role_of(connection)
    if role != "admin" and connection.scope.get("method", "GET") not in READ_METHODS:
        raise PermissionDeniedException(
            detail="this token is read-only: it may look (GET) but not change anything; "
            "use the admin token for this"
        )


@get(
    "/v1/whoami",
    summary="The role of the token presented: admin, or readonly (GET only)",
    tags=["auth"],
    guards=[admin_guard],
    security=SECURITY,
    responses=error_responses(),
)
async def whoami(request: Request[Any, Any, Any]) -> WhoAmI:
    return WhoAmI(role=role_of(request))
