"""The demo's webhook receiver: verifies each Standard Webhooks signature and prints one line per event.

It is written as a subscriber would write it, from the Standard Webhooks rules alone (not with the
bridge's signing code): HMAC-SHA256 over `{webhook-id}.{webhook-timestamp}.{body}` with the base64-decoded
secret, any `v1,` entry of `webhook-signature` may match, and the timestamp must be within five minutes.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import sys
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any, Final, TextIO

TOLERANCE_SECONDS: Final = 300

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]


class SignatureError(ValueError):
    pass


def verify(secret: str, headers: dict[str, str], body: bytes, now: float | None = None) -> None:
    """Raise SignatureError unless the headers carry a valid, fresh signature of `body`."""
    try:
        msg_id, stamp, signatures = (
            headers["webhook-id"],
            headers["webhook-timestamp"],
            headers["webhook-signature"],
        )
        timestamp = int(stamp)
    except (KeyError, ValueError):
        raise SignatureError("missing or malformed webhook headers") from None
    if abs((time.time() if now is None else now) - timestamp) > TOLERANCE_SECONDS:
        raise SignatureError("timestamp outside the tolerance")
    key = base64.b64decode(secret.removeprefix("whsec_"))
    expected = hmac.new(key, f"{msg_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
    for entry in signatures.split():
        version, _, value = entry.partition(",")
        if version == "v1" and hmac.compare_digest(base64.b64decode(value), expected):
            return
    raise SignatureError("no signature matches")


def describe(event: dict[str, Any]) -> str:
    """One readable line: time, type, school, resource and what changed."""
    data = event.get("data") or {}
    clock = str(event.get("timestamp", ""))[11:19]
    sequence, etype = event.get("sequence", "?"), event.get("type", "?")
    head = f"{clock}  #{sequence:<4} {etype:<24} school {event.get('school_id')}"
    resource = event.get("resource")
    changes = event.get("changes") or {}
    if resource in ("learner", "debtor"):
        who = (
            f"{resource} {event.get('resource_id')} {data.get('first_name', '')} {data.get('last_name', '')}"
        )
    elif resource in FINANCE:
        who, changes = FINANCE[resource](data, changes)
    else:
        who = f"{resource} {event.get('resource_id')}"
    what = ", ".join(
        f"{field}: {_short(c.get('old'))} -> {_short(c.get('new'))}" for field, c in changes.items()
    )
    origin = event.get("origin")
    made = f"  [written through the bridge: {origin.get('command_id')}]" if isinstance(origin, dict) else ""
    return f"{head}  {' '.join(who.split())}" + (f"  ({what})" if what else "") + made


Changes = dict[str, Any]


def _balance(data: dict[str, Any], changes: Changes) -> tuple[str, Changes]:
    """A balance move: the total, then the buckets that moved."""
    total = changes.get("balance_total")
    moved = f"total {_rand(total.get('old'))} -> {_rand(total.get('new'))}" if total else ""
    buckets = {k: v for k, v in changes.items() if k.startswith("balance_") and k != "balance_total"}
    now = f"owes {_rand(data.get('balance_total'))}" if not changes else moved
    return f"debtor {data.get('debtor_code')}  {now}", {
        k.removeprefix("balance_"): v for k, v in buckets.items()
    }


def _transaction(data: dict[str, Any], changes: Changes) -> tuple[str, Changes]:
    """A payment or an invoice, readably: who, when, what, how much."""
    credit, debit = _amount(data.get("credit_amount")), _amount(data.get("debit_amount"))
    money = f"paid {_rand(credit)}" if credit else f"charged {_rand(debit)}"
    return (
        f"debtor {data.get('debtor_code')}  {data.get('transaction_date')}  {money}  "
        f"{data.get('transaction_description') or data.get('transaction_type') or ''}",
        changes,
    )


def _promise(data: dict[str, Any], changes: Changes) -> tuple[str, Changes]:
    state = data.get("promise_completed")
    return (
        f"debtor {data.get('debtor_code')}  promised {_rand(data.get('amount_promised'))} by "
        f"{data.get('date_promised')}, paid {_rand(data.get('amount_paid'))} ({state})",
        {k: v for k, v in changes.items() if k not in ("amount_paid", "promise_completed")},
    )


def _note(data: dict[str, Any], changes: Changes) -> tuple[str, Changes]:
    text = str(data.get("note") or "")
    return (
        f"debtor {data.get('debtor_code')}  {data.get('note_type') or 'note'} "
        f"{json.dumps(text[:40] + ('...' if len(text) > 40 else ''), ensure_ascii=False)}",
        changes,
    )


FINANCE = {"balance": _balance, "transaction": _transaction, "promise": _promise, "note": _note}


def _amount(value: Any) -> float:
    try:
        return float(str(value))
    except ValueError:
        return 0.0


def _rand(value: Any) -> str:
    """`"3500.00"` -> `R3,500.00` (amounts arrive as d6 sends them: strings)."""
    try:
        return f"R{float(str(value)):,.2f}"
    except ValueError:
        return str(value)


def _short(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False)
    return text if len(text) <= 40 else text[:37] + "..."


class DemoSubscriber:
    """An ASGI app: POST any path with a signed event; 204 when verified, 401 when not."""

    def __init__(self, out: TextIO = sys.stdout) -> None:
        self.secret: str | None = None
        self.out = out
        self.verified = 0
        self.rejected = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await receive()
            await send({"type": "lifespan.startup.complete"})
            await receive()
            await send({"type": "lifespan.shutdown.complete"})
            return
        if scope["type"] != "http":
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        status = 204
        try:
            if self.secret is None:
                raise SignatureError("no secret yet")
            verify(self.secret, headers, body)
            event = json.loads(body)
        except (SignatureError, ValueError) as error:
            self.rejected += 1
            print(f"REJECTED webhook {headers.get('webhook-id')}: {error}", file=self.out, flush=True)
            status = 401
        else:
            self.verified += 1
            print(f"verified  {describe(event)}", file=self.out, flush=True)
        await send({"type": "http.response.start", "status": status, "headers": []})
        await send({"type": "http.response.body", "body": b""})
