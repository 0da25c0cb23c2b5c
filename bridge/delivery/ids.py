"""Identifiers: ULIDs for events (sortable by time) and random ids for subscriptions and deliveries."""

from __future__ import annotations

import secrets
import time

CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


def ulid(now: float | None = None) -> str:
    """26 characters: 48 bits of milliseconds, then 80 random bits, Crockford base32."""
    millis = int((time.time() if now is None else now) * 1000)
    value = (millis << 80) | secrets.randbits(80)
    chars = []
    for _ in range(26):
        chars.append(CROCKFORD[value & 31])
        value >>= 5
    return "".join(reversed(chars))


def new_event_id(now: float | None = None) -> str:
    return "evt_" + ulid(now)


def new_subscription_id() -> str:
    return "sub_" + secrets.token_hex(12)


def new_delivery_id() -> str:
    return "dlv_" + ulid()
