"""Standard Webhooks v1 signatures (https://www.standardwebhooks.com/).

The signed content is `{webhook-id}.{webhook-timestamp}.{body}`; the key is the base64-decoded part
of the secret after `whsec_`. During a secret rotation every live secret signs, and the header
carries one `v1,<sig>` entry per secret, space-separated; verifiers accept any that matches.

HMAC-SHA256 (RFC 2104) is computed from the two SHA-256 states the key starts (its inner and outer pad
hashed once per secret and kept), so a delivery's signature costs two hash copies and its content's
hashing: about half of `hmac.digest`, which looks the digest up by name on each call.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import secrets
from typing import Any

SECRET_PREFIX = "whsec_"  # noqa: S105 - a prefix, not a secret
SECRET_BYTES = 32
_BLOCK = 64  # SHA-256's block size: the HMAC key is padded (or, if longer, hashed) to it
_INNER = bytes(0x36 for _ in range(_BLOCK))
_OUTER = bytes(0x5C for _ in range(_BLOCK))


def new_secret() -> str:
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode()


@functools.lru_cache(maxsize=1024)
def secret_key(secret: str) -> bytes:
    """The HMAC key of a `whsec_` secret (kept decoded: every delivery signs with it)."""
    raw = secret.removeprefix(SECRET_PREFIX)
    return base64.b64decode(raw)


@functools.lru_cache(maxsize=1024)
def _pads(secret: str) -> tuple[Any, Any]:
    """SHA-256 after the key's inner pad and after its outer pad (RFC 2104); only ever copied."""
    key = secret_key(secret)
    if len(key) > _BLOCK:
        key = hashlib.sha256(key).digest()
    key = key.ljust(_BLOCK, b"\0")
    inner = hashlib.sha256(bytes(k ^ p for k, p in zip(key, _INNER, strict=True)))
    outer = hashlib.sha256(bytes(k ^ p for k, p in zip(key, _OUTER, strict=True)))
    return inner, outer


def _hmac(secret: str, content: bytes) -> bytes:
    inner, outer = _pads(secret)
    inner = inner.copy()
    inner.update(content)
    outer = outer.copy()
    outer.update(inner.digest())
    digest: bytes = outer.digest()
    return digest


def sign(secrets_: list[str], msg_id: str, timestamp: int, body: bytes) -> str:
    """The `webhook-signature` header value for `body`, one entry per secret."""
    content = b"%s.%d.%s" % (msg_id.encode(), timestamp, body)
    return " ".join(
        "v1," + binascii.b2a_base64(_hmac(secret, content), newline=False).decode() for secret in secrets_
    )


def headers(secrets_: list[str], msg_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    """The three Standard Webhooks headers."""
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": sign(secrets_, msg_id, timestamp, body),
    }
