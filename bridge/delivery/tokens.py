"""Subscription tokens: bearer tokens that reach one subscription's own routes alone
(docs/api.md#subscription-tokens).

A token reads `d6bs_<subscription id>_<token id>_<secret>`: it names its subscription and its id, so
resolving one is a single HGET in that subscription's slot (`Keys.tokens`). There is no global token index,
so nothing has to be kept in step across slots, on Redis Cluster or not. Only the SHA-256 digest of the
whole token is stored, and a presented token's digest is compared with it by `hmac.compare_digest`. The
secret is 256 random bits, so a plain digest is enough (a slow hash guards guessable passwords, and there is
nothing to guess here). The token itself is shown once, in `create`'s answer, and then never again: not in a
listing, an error or a log (bridge/logs.py scrubs anything shaped like one).

The tokens hash is one of the subscription's keys (`Keys.all_of`), so deleting the subscription (or the
orphan sweep after a delete that died part-way) takes its tokens with it. A token whose subscription is gone
resolves to nothing.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import time
from collections.abc import Callable
from typing import Final

import msgspec
from redis.asyncio import Redis

from bridge.delivery.models import Subscription
from bridge.delivery.store import SubscriptionStore
from bridge.errors import InvalidRequest
from bridge.events.ids import ulid
from bridge.store.codec import as_text
from bridge.store.keys import Keys

TOKEN_PREFIX: Final = "d6bs_"  # noqa: S105 - a prefix, not a secret
"""How every subscription token starts, so a leaked one is recognised (and bridge/logs.py can scrub it)."""
TOKEN_ID_PREFIX: Final = "tok_"  # noqa: S105 - an id's prefix
MAX_TOKENS: Final = 50
"""Tokens one subscription may hold at once: enough to rotate through, few enough to audit."""
_TOKEN: Final = re.compile(r"d6bs_(sub_[A-Za-z0-9-]+)_(tok_[0-9A-Z]{26})_[A-Za-z0-9_-]{43}")
_TOKEN_ID: Final = re.compile(r"tok_[0-9A-Z]{26}")
_NO_DIGEST: Final = bytes(32)
"""Compared with when a token's id is unknown, so that answer costs what a wrong secret costs."""


class TokenInfo(msgspec.Struct, kw_only=True, frozen=True):
    """What may be shown of a token: its id and when it was made (never the token, never its digest)."""

    token_id: str
    created_at: float


class StoredToken(msgspec.Struct, kw_only=True, frozen=True):
    """One field of `Keys.tokens`, stored as JSON under its token id."""

    digest: str
    """SHA-256 of the whole token, hex."""
    created_at: float


_encoder: Final = msgspec.json.Encoder()
_decoder: Final = msgspec.json.Decoder(StoredToken)


def is_token_id(token_id: str) -> bool:
    return _TOKEN_ID.fullmatch(token_id) is not None


def looks_like_token(text: str) -> bool:
    """Whether `text` is shaped like a subscription token (not whether it is a valid one)."""
    return _TOKEN.fullmatch(text) is not None


def digest_of(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


class TokenStore:
    """The subscription tokens of every subscription: make, list, revoke, and find whose a token is."""

    def __init__(
        self,
        redis: Redis,
        keys: Keys,
        subscriptions: SubscriptionStore,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.redis = redis
        self.keys = keys
        self.subscriptions = subscriptions
        self._clock = clock

    async def create(self, subscription_id: str) -> tuple[TokenInfo, str]:
        """A new token of the subscription: what may be shown of it, and the token (to be shown once).

        UnknownSubscription (404) when there is no such subscription; InvalidRequest when it holds
        `MAX_TOKENS` already.
        """
        await self.subscriptions.get(subscription_id)
        key = self.keys.tokens(subscription_id)
        if await self.redis.hlen(key) >= MAX_TOKENS:
            raise InvalidRequest(
                "subscription_id",
                f"holds {MAX_TOKENS} tokens already, the most one subscription may; revoke one first",
            )
        info = TokenInfo(token_id=TOKEN_ID_PREFIX + ulid(), created_at=self._clock())
        token = f"{TOKEN_PREFIX}{subscription_id}_{info.token_id}_{secrets.token_urlsafe(32)}"
        stored = StoredToken(digest=digest_of(token).hex(), created_at=info.created_at)
        await self.redis.hset(key, info.token_id, _encoder.encode(stored))
        return info, token

    async def list(self, subscription_id: str) -> list[TokenInfo]:
        """The subscription's tokens, oldest first (token ids are ULIDs: their order is creation order)."""
        await self.subscriptions.get(subscription_id)
        raw = await self.redis.hgetall(self.keys.tokens(subscription_id))
        stored = {as_text(token_id): _decoder.decode(value) for token_id, value in raw.items()}
        return [
            TokenInfo(token_id=token_id, created_at=stored[token_id].created_at)
            for token_id in sorted(stored)
        ]

    async def revoke(self, subscription_id: str, token_id: str) -> bool:
        """Remove the token: from now on it is refused (401). False when the subscription has no such
        token."""
        await self.subscriptions.get(subscription_id)
        return bool(await self.redis.hdel(self.keys.tokens(subscription_id), token_id))

    async def resolve(self, token: str) -> str | None:
        """The id of the subscription this token belongs to, or None for a token that is malformed, unknown or
        revoked. The digests are compared in constant time."""
        parsed = _TOKEN.fullmatch(token)
        if parsed is None:
            return None
        subscription_id, token_id = parsed.group(1), parsed.group(2)
        raw = await self.redis.hget(self.keys.tokens(subscription_id), token_id)
        stored = _NO_DIGEST if raw is None else bytes.fromhex(_decoder.decode(raw).digest)
        matches = hmac.compare_digest(stored, digest_of(token))
        return subscription_id if matches and raw is not None else None

    async def holder(self, token: str) -> Subscription | None:
        """The subscription this token belongs to, or None (also when the subscription is gone)."""
        subscription_id = await self.resolve(token)
        return None if subscription_id is None else await self.subscriptions.find(subscription_id)
