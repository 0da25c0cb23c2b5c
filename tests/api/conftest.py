"""A live bridge for the API contract tests: `create_app` on the embedded store, served on loopback.

Its d6 is nowhere (nothing here needs a poll): it only answers what the API documents and serves.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from bridge.testing.servers import ThreadedServer
from bridge.testing.settings import bridge_settings
from tests.console.helpers import console_app


@pytest.fixture(scope="module")
def bridge() -> Iterator[str]:
    with ThreadedServer(console_app(bridge_settings("memory://", "http://127.0.0.1:9/api"))) as server:
        yield server.url
