"""Fixtures for delivery tests: settings with a short retry schedule and a store on them.

Receivers, store and dispatcher factories are shared with the metrics tests: see tests/conftest.py.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest

from bridge.delivery.store import SubscriptionStore
from bridge.settings import Settings
from bridge.testing.settings import fast_settings


@pytest.fixture
def settings() -> Settings:
    return fast_settings()


@pytest.fixture
def store(store_factory: Callable[[Settings], SubscriptionStore], settings: Settings) -> SubscriptionStore:
    return store_factory(settings)
