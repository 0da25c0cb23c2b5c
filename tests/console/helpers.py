"""The bridge app with the console mounted, as `create_app` serves it."""

from __future__ import annotations

from litestar import Litestar

from bridge.app import Services, create_app
from bridge.settings import Settings


def console_app(settings: Settings, services: Services | None = None) -> Litestar:
    """`create_app`, which mounts the console; fails loudly if it ever stops doing so."""
    app = create_app(settings, services)
    assert any(route.path.startswith("/console") for route in app.routes), "create_app lost the console"
    return app
