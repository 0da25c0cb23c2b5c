"""Standard Webhooks v1 signatures (https://www.standardwebhooks.com/).

The signed content is `{webhook-id}.{webhook-timestamp}.{body}`; the key is the base64-decoded part
of the secret after `whsec_`. During a secret rotation every live secret signs, and the header
carries one `v1,<sig>` entry per secret, space-separated; verifiers accept any that matches.
"""

from __future__ import annotations

import base64
import functools
import hmac
import secrets

SECRET_PREFIX = "whsec_"  # noqa: S105 - a prefix, not a secret
SECRET_BYTES = 32


def new_secret() -> str:
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode()


@functools.lru_cache(maxsize=1024)
def secret_key(secret: str) -> bytes:
    """The HMAC key of a `whsec_` secret (kept decoded: every delivery signs with it)."""
    raw = secret.removeprefix(SECRET_PREFIX)
    return base64.b64decode(raw)


def sign(secrets_: list[str], msg_id: str, timestamp: int, body: bytes) -> str:
    """The `webhook-signature` header value for `body`, one entry per secret."""
    content = f"{msg_id}.{timestamp}.".encode() + body
    entries = []
    for secret in secrets_:
        digest = hmac.digest(secret_key(secret), content, "sha256")
        entries.append("v1," + base64.b64encode(digest).decode())
    return " ".join(entries)


def headers(secrets_: list[str], msg_id: str, timestamp: int, body: bytes) -> dict[str, str]:
    """The three Standard Webhooks headers."""
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": sign(secrets_, msg_id, timestamp, body),
    }
