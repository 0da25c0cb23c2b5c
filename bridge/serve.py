"""`d6-bridge serve`: the production service."""

from __future__ import annotations

import sys

from bridge.settings import Settings


def run_serve(settings: Settings) -> None:
    """Not built yet: the scheduler, API and delivery workers arrive with their issues."""
    del settings
    print(
        "d6-bridge serve: not built yet. The settings are valid; the polling scheduler, the HTTP API and "
        "the delivery workers are still being built.",
        file=sys.stderr,
    )
    raise SystemExit(1)
