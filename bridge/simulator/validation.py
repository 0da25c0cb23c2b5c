"""d6's request validation: the same rules and the same wording ("The Limit maximum is 50").

Errors are collected per field, like d6's `validation_errors` object, so one answer names every
problem in the request at once.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any

from bridge.simulator.table import Cursor, decode_cursor

_INTEGER = re.compile(r"-?\d+")
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
TRUE_WORDS = frozenset({"1", "true"})
FALSE_WORDS = frozenset({"0", "false"})


def label(field: str) -> str:
    """d6 names a field in messages by its words, first one capitalised: `api_type_id` -> `Api type id`."""
    return field.replace("_", " ").capitalize()


def as_int(text: str) -> int | None:
    return int(text) if _INTEGER.fullmatch(text) else None


class Checks:
    """Reads query parameters (or body fields) and records d6's message for each one that is wrong."""

    def __init__(self, values: dict[str, str]) -> None:
        self.values = values
        self.errors: dict[str, str] = {}

    def flag(self, name: str) -> bool:
        text = self.values.get(name)
        if text is None:
            return False
        lowered = text.strip().lower()
        if lowered in TRUE_WORDS:
            return True
        if lowered not in FALSE_WORDS:
            self.errors[name] = f"The {label(name)} must be a boolean"
        return False

    def integer(self, name: str) -> int | None:
        text = self.values.get(name)
        if text is None or text == "":
            return None
        value = as_int(text.strip())
        if value is None:
            self.errors[name] = f"The {label(name)} must be integer"
        return value

    def date(self, name: str) -> dt.date | None:
        """A `YYYY-MM-DD` date, worded as d6 words it ("Expected format is 'Y-m-d'")."""
        text = self.values.get(name)
        if text is None or text == "":
            return None
        try:
            if not _DATE.fullmatch(text.strip()):
                raise ValueError(text)
            return dt.date.fromisoformat(text.strip())
        except ValueError:
            self.errors[name] = f"The {label(name)} is not valid date format. Expected format is 'Y-m-d'."
            return None

    def choice(self, name: str, options: Iterable[str]) -> str | None:
        """One of a few words (`"Yes"`, `"No"`, `"Partial"`), in any case; the canonical spelling back."""
        text = self.values.get(name)
        if text is None or text == "":
            return None
        for option in options:
            if text.strip().lower() == option.lower():
                return option
        self.errors[name] = f"The selected {label(name)} is invalid."
        return None

    def limit(self, default: int, maximum: int) -> int:
        value = self.integer("limit")
        if value is None:
            return default
        if value > maximum:
            self.errors["limit"] = f"The Limit maximum is {maximum}"
        elif value < 1:
            self.errors["limit"] = "The Limit minimum is 1"
        return min(max(value, 1), maximum)

    def cursor(self) -> Cursor | None:
        text = self.values.get("cursor")
        if not text:
            return None
        cursor = decode_cursor(text)
        if cursor is None:
            self.errors["cursor"] = "The Cursor is invalid"
        return cursor


def body_integer(body: dict[str, Any], name: str, errors: dict[str, str]) -> int | None:
    """A required integer field of a JSON body; PHP-style `"1000"` is accepted as d6 does."""
    value = body.get(name)
    if value is None:
        errors[name] = f"The {label(name)} field is required"
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and as_int(value) is not None:
        return int(value)
    errors[name] = f"The {label(name)} must be integer"
    return None


def body_boolean(body: dict[str, Any], name: str, errors: dict[str, str]) -> bool | None:
    """A required boolean: `true`/`false`, `1`/`0`, or the same as strings (d6's samples send `1`)."""
    value = body.get(name)
    if value is None:
        errors[name] = f"The {label(name)} field is required"
        return None
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return value == 1
    if isinstance(value, str) and value.strip().lower() in TRUE_WORDS | FALSE_WORDS:
        return value.strip().lower() in TRUE_WORDS
    errors[name] = f"The {label(name)} must be a boolean"
    return None


_AMOUNT = re.compile(r"-?\d+(?:\.\d+)?")


def body_date(value: Any, key: str, errors: dict[str, str]) -> dt.date | None:
    """A `YYYY-MM-DD` date in a JSON body; `key` is where d6 files the error
    (`promise_to_pays.0.date_promised`), its last part names the field in the message."""
    name = key.rsplit(".", 1)[-1]
    if value is None or value == "":
        errors[key] = f"The {label(name)} field is required"
        return None
    try:
        if not isinstance(value, str) or not _DATE.fullmatch(value.strip()):
            raise ValueError(value)
        return dt.date.fromisoformat(value.strip())
    except ValueError:
        errors[key] = f"The {label(name)} is not valid date format. Expected format is 'Y-m-d'."
        return None


def body_amount(value: Any, key: str, errors: dict[str, str]) -> int | None:
    """A plain amount in cents: a JSON number or numeric text (`"100.00"`, no currency symbol, no
    separators), above zero. More than two decimals are rounded to cents, as a money column would."""
    name = key.rsplit(".", 1)[-1]
    if value is None or value == "":
        errors[key] = f"The {label(name)} field is required"
        return None
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        errors[key] = f"The {label(name)} must be a number."
        return None
    text = value.strip() if isinstance(value, str) else repr(value)
    if isinstance(value, str) and not _AMOUNT.fullmatch(text):
        errors[key] = f"The {label(name)} must be a number."
        return None
    try:
        amount = Decimal(text)
    except InvalidOperation:
        errors[key] = f"The {label(name)} must be a number."
        return None
    if not amount.is_finite():
        errors[key] = f"The {label(name)} must be a number."
        return None
    cents = int((amount * 100).quantize(Decimal(1), rounding=ROUND_HALF_UP))
    if cents <= 0:
        errors[key] = f"The {label(name)} must be greater than 0."
        return None
    return cents
