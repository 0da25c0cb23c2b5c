from __future__ import annotations

import base64
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
