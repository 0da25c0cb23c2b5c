from __future__ import annotations

import base64
import hmac
import time

import pytest
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from bridge.delivery.signing import headers, new_secret, sign


def test_new_secret_is_whsec_and_32_random_bytes() -> None:
    secret = new_secret()
    assert secret.startswith("whsec_")
    assert len(base64.b64decode(secret.removeprefix("whsec_"))) == 32
    assert new_secret() != secret


def test_signature_verifies_with_standardwebhooks() -> None:
    secret = new_secret()
    body = b'{"id":"evt_1","type":"learner.updated"}'
    now = int(time.time())
    sent = headers([secret], "evt_1", now, body)
    assert sent["webhook-signature"].startswith("v1,")
    Webhook(secret).verify(body, sent)


def test_two_secrets_give_two_entries_and_both_verify() -> None:
    old, new = new_secret(), new_secret()
    now = int(time.time())
    body = b"{}"
    sent = headers([new, old], "evt_2", now, body)
    assert len(sent["webhook-signature"].split(" ")) == 2
    Webhook(old).verify(body, sent)
    Webhook(new).verify(body, sent)
    with pytest.raises(WebhookVerificationError):
        Webhook(new_secret()).verify(body, sent)


def test_tampered_body_fails() -> None:
    secret = new_secret()
    signature = sign([secret], "evt_3", 1_700_000_000, b"{}")
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(
            b"{ }",
            {"webhook-id": "evt_3", "webhook-timestamp": "1700000000", "webhook-signature": signature},
        )


@pytest.mark.parametrize("key_bytes", [1, 32, 64, 65, 200])
def test_signature_is_the_standard_library_hmac(key_bytes: int) -> None:
    """The HMAC kept as two SHA-256 states gives `hmac.digest`'s answer, for keys shorter and longer than a
    block (a key over 64 bytes is hashed first)."""
    secret = "whsec_" + base64.b64encode(bytes((n * 7) % 256 for n in range(key_bytes))).decode()
    body = b'{"id":"evt_4","data":"' + b"x" * 3000 + b'"}'
    key = base64.b64decode(secret.removeprefix("whsec_"))
    expected = base64.b64encode(hmac.digest(key, b"evt_4.1700000000." + body, "sha256")).decode()
    assert sign([secret], "evt_4", 1_700_000_000, body) == "v1," + expected
