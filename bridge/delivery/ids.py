"""Random ids for subscriptions and deliveries (event ids are made in `bridge.events.ids`)."""

from __future__ import annotations

import secrets

from bridge.events.ids import ulid


def new_subscription_id() -> str:
    return "sub_" + secrets.token_hex(12)


def new_delivery_id() -> str:
    return "dlv_" + ulid()
