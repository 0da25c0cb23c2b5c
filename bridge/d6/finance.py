"""Finance+ records: how amounts compare, how a balance row and a transaction are identified.

What d6 publishes of these reports is partly unknown (`shared/d6-api-docs/v2/`), so everything here accepts
the shapes the fact sheets allow, keeps every field as sent, and raises `D6MalformedResponse` on a record it
cannot identify (a scan it cannot read fails, and emits nothing).

- Amounts stay the strings d6 sends (`"3500.00"`); they are *compared* after normalisation, so `"3500"`,
  `"3500.0"` and `"3500.00"` are one amount (`comparable`).
- A balance row (age analysis, grouped by family by default) is its `accountable_person_id`, else its
  `debtor_code`.
- A transaction has no id in d6: it is a digest of the fields that say what it is (debtor, date, type,
  reference, description, debit, credit) plus an occurrence number for exact repeats (two identical receipts
  on one day are two transactions). `accumulated_balance` is data, never identity: it moves when an earlier
  transaction is back-dated. The report may come as flat rows or grouped per family with a list of
  transactions; groups are flattened, each transaction carrying the family's `debtor_code` and
  `accountable_person_id` when it does not name its own.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal, InvalidOperation
from typing import Any, Final

import msgspec

from bridge.errors import D6MalformedResponse

Record = dict[str, Any]

SOUTH_AFRICA: Final = timezone(timedelta(hours=2), "SAST")
"""d6's dates are school dates; the transaction window is counted in them."""
TRANSACTION_IDENTITY: Final = (
    "debtor_code",
    "transaction_date",
    "transaction_type_id",
    "transaction_reference",
    "transaction_description",
    "debit_amount",
    "credit_amount",
)
GROUP_KEYS: Final = ("transactions", "financial_transactions", "items")
"""Where a family group may carry its transactions (the report's grouped shape)."""
_PLAIN: Final = msgspec.json.Encoder()


_AMOUNT_FIELDS: dict[str, bool] = {}


def is_amount_field(name: str) -> bool:
    """Money fields of the Finance+ reports: `*amount*`, `balance*`, `bal*` (the age buckets)."""
    known = _AMOUNT_FIELDS.get(name)
    if known is None:
        known = "amount" in name or name.startswith("bal") or name.endswith("_balance")
        if len(_AMOUNT_FIELDS) < 10_000:  # bounded, whatever d6 sends
            _AMOUNT_FIELDS[name] = known
    return known


def normal_amount(value: Any) -> Any:
    """`"3500.00"` -> `"3500"`, `"-12.50"` -> `"-12.5"`: one form per amount; anything else unchanged."""
    if type(value) is str:
        head, dot, tail = value.partition(".")
        digits = head[1:] if head[:1] == "-" else head
        if dot and digits.isdigit() and tail.isdigit() and digits[:1] != "0":  # d6's usual "3500.00"
            tail = tail.rstrip("0")
            return f"{head}.{tail}" if tail else head
    elif not isinstance(value, int | float) or isinstance(value, bool):
        return value
    try:
        number = Decimal(str(value).strip().replace(",", ""))
    except InvalidOperation:
        return value
    if not number.is_finite():
        return value
    text = format(number.normalize(), "f")
    return "0" if text in ("-0", "0") else text


def comparable(record: Record) -> Record:
    """The record as it is compared: amounts in one form, every other field as sent."""
    return {k: normal_amount(v) if is_amount_field(k) else v for k, v in record.items()}


def balance_id(record: Record) -> str:
    """An age-analysis row: its accountable person, else its debtor code."""
    for field in ("accountable_person_id", "debtor_code"):
        value = record.get(field)
        if isinstance(value, int) and not isinstance(value, bool):
            return str(value) if field == "accountable_person_id" else f"code:{value}"
        if isinstance(value, str) and value.strip():
            return value.strip() if field == "accountable_person_id" else f"code:{value.strip()}"
    raise D6MalformedResponse(f"age analysis row without accountable_person_id or debtor_code: {record!r}")


def flatten_transactions(records: list[Record]) -> list[Record]:
    """Flat transaction rows from flat rows or family groups (see the module docstring)."""
    flat: list[Record] = []
    for record in records:
        group = next((record[k] for k in GROUP_KEYS if isinstance(record.get(k), list)), None)
        if group is None:
            flat.append(record)
            continue
        family: Record = {k: record[k] for k in ("debtor_code", "accountable_person_id") if k in record}
        for item in group:
            if not isinstance(item, dict):
                raise D6MalformedResponse(f"a family's transactions hold a non-object: {item!r}")
            flat.append({**family, **item} if family else item)
    return flat


def transaction_keys() -> Callable[[Record], str]:
    """A key function for one scan: digest of the identity fields, then `:n` for the n-th exact repeat.

    Repeats are numbered in the order of the scan; identical rows are indistinguishable, so which one is
    `:1` does not matter.
    """
    seen: dict[str, int] = {}
    encode, blake2b = _PLAIN.encode, hashlib.blake2b

    def key(record: Record) -> str:
        get = record.get
        debtor, day = get("debtor_code"), get("transaction_date")
        if not day or not (debtor or get("accountable_person_id")):
            raise D6MalformedResponse(f"transaction without a date or a debtor: {record!r}")
        identity = (  # TRANSACTION_IDENTITY, in order, amounts in one form
            debtor if debtor is not None else f"person:{get('accountable_person_id')}",
            day,
            get("transaction_type_id"),
            get("transaction_reference"),
            get("transaction_description"),
            normal_amount(get("debit_amount")),
            normal_amount(get("credit_amount")),
        )
        digest = blake2b(encode(identity), digest_size=10).hexdigest()
        seen[digest] = seen.get(digest, 0) + 1
        return f"{digest}:{seen[digest]}"

    return key


def window_start(days: int, now: float | None = None) -> str:
    """The first date (YYYY-MM-DD, school time) of a trailing window of `days` days ending today."""
    today = (datetime.now(UTC) if now is None else datetime.fromtimestamp(now, UTC)).astimezone(SOUTH_AFRICA)
    return (today.date() - timedelta(days=days)).isoformat()


def before_window(record: Record, start: str) -> bool:
    """Whether a transaction's date lies before the window (it aged out: not a removal)."""
    value = record.get("transaction_date")
    if not isinstance(value, str) or len(value) < 10:
        return False
    try:
        return date.fromisoformat(value[:10]).isoformat() < start
    except ValueError:
        return False
