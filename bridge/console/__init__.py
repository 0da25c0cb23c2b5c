"""The operator console: a few static files at `/console` that call the `/v1` API from the browser.

The shell holds no data and needs no token: the page asks for the admin token once, keeps it in the
tab's sessionStorage and sends it as `Authorization: Bearer` on every API call, so the console can show
nothing the API would not. Every value from d6 or a subscriber is put on the page as text (never parsed
as HTML), and every console response carries a strict Content-Security-Policy (no inline script or
style, no other origin) as a second line of defence.

Mount with `create_app(..., route_handlers=[..., console_routes])`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Final

from litestar.datastructures import CacheControlHeader
from litestar.static_files import create_static_files_router
from litestar.types import ASGIApp, Message, Receive, Scope, Send

STATIC_DIR: Final = Path(__file__).parent / "static"

CONTENT_SECURITY_POLICY: Final = "; ".join(
    (
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "connect-src 'self'",
        "frame-ancestors 'none'",
        "base-uri 'none'",
        "form-action 'self'",
    )
)
SECURITY_HEADERS: Final = (
    (b"content-security-policy", CONTENT_SECURITY_POLICY.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
)


def security_headers_middleware(app: ASGIApp) -> ASGIApp:
    """Add `SECURITY_HEADERS` to every console response (the file responses bypass `response_headers`)."""

    async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *SECURITY_HEADERS]
            await send(message)

        await app(scope, receive, send_with_headers)

    return middleware


console_routes: Final = create_static_files_router(
    path="/console",
    directories=[STATIC_DIR],
    html_mode=True,  # `/console` serves index.html
    name="console",
    cache_control=CacheControlHeader(no_cache=True),  # revalidate, so an upgrade shows at once
    middleware=[security_headers_middleware],
    include_in_schema=False,
)
