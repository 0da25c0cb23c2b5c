"""Record normalisation: one form for every d6 record, so comparing and hashing see real changes only.

d6 is inconsistent about types: the docs show `"accountable_person_id": "40"` in one example and
`40` in the next, and "no date" is `"0000-00-00"`. `normalise` settles exactly these and keeps every
other field as sent (fields unknown today included):

- a `*_id` field that is integer-like (`40`, `"40"`, `" 40 "`, `"-3"`, `40.0`) becomes an `int`;
  an empty string or `null` becomes `None` (d6 v1 sent "" for "no value", v2 sends null);
  anything else (`"abc"`, `true`, a list) is left as sent rather than guessed at;
- a value `"0000-00-00"` (or `"0000-00-00 00:00:00"`) in any field becomes `None`;
- nested objects and lists (a debtor's `learners`, a learner's `parents`) get the same treatment.

`normalise` is idempotent, so applying it twice (client and sync code) is harmless.
"""

from __future__ import annotations

import hashlib
import re
from typing import Any

import msgspec

from bridge.d6.endpoints import Endpoint, endpoint_for
from bridge.errors import D6MalformedResponse

Record = dict[str, Any]

ZERO_DATES = frozenset({"0000-00-00", "0000-00-00 00:00:00"})
_INTEGER = re.compile(r"\s*[-+]?\d+\s*")
_ENCODER = msgspec.json.Encoder(order="sorted")
HASH_BYTES = 16


def normalise(record: Record) -> Record:
    """A new record with ids as integers and zero dates as None; every other field as sent."""
    return normalise_in_place(dict(record))


def normalise_in_place(record: Record) -> Record:
    """`normalise`, changing `record` itself and returning it.

    The client uses it on records fresh from decoding a page, so that a poll of a large school does not
    allocate every record twice. Nested objects and lists are rebuilt, top-level fields assigned.
    """
    for key, value in record.items():
        kind = type(value)
        # Fast paths for the common flat values; everything else takes the general route.
        if kind is int or value is None:
            continue
        if kind is str and not _is_id_field(key):
            if value in ZERO_DATES:
                record[key] = None
        else:
            record[key] = _value(str(key), value)
    return record


_ID_FIELDS: dict[str, bool] = {}
"""Field name -> whether it is an `*_id`: d6 sends the same few dozen names over and over."""


def _is_id_field(key: str) -> bool:
    known = _ID_FIELDS.get(key)
    if known is None:
        known = key.endswith("_id")
        if len(_ID_FIELDS) < 10_000:  # bounded, whatever a misbehaving d6 sends
            _ID_FIELDS[key] = known
    return known


def _value(key: str, value: Any) -> Any:
    if isinstance(value, dict):
        return normalise(value)
    if isinstance(value, list):
        return [_value("", item) for item in value]
    if key.endswith("_id"):
        return identifier(value)
    if isinstance(value, str) and value in ZERO_DATES:
        return None
    return value


def identifier(value: Any) -> Any:
    """A value normalised as an `*_id` field is: integer-like to an int, empty text to None, else as sent.

    An int (d6's usual form) comes first: it is its own identifier."""
    if type(value) is int:
        return value
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        if value.strip() == "":
            return None
        if _INTEGER.fullmatch(value):
            return int(value)
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def canonical_bytes(record: Record) -> bytes:
    """The normalised record as JSON with sorted keys: equal records give equal bytes, whatever the order."""
    return _ENCODER.encode(normalise(record))


def record_hash(record: Record) -> str:
    """BLAKE2b-128 of `canonical_bytes`, as 32 hex characters (compact in Redis, readable in logs)."""
    return hashlib.blake2b(canonical_bytes(record), digest_size=HASH_BYTES).hexdigest()


def record_id(resource: str | Endpoint, record: Record) -> int:
    """The record's id (`learner_id`, `accountable_person_id`, `school_id`) as an int.

    A record without a usable id cannot be diffed, so it makes the answer malformed.
    """
    endpoint = resource if isinstance(resource, Endpoint) else endpoint_for(resource)
    if endpoint.id_field is None:
        raise ValueError(f"{endpoint.name} records have no single id; use integration_key")
    value = identifier(record.get(endpoint.id_field))
    if not isinstance(value, int) or isinstance(value, bool):
        # The field and the kind of value, never the value (docs/personal-data.md): this text reaches
        # the logs and `/v1/schools`.
        raise D6MalformedResponse(
            f"record without a usable {endpoint.id_field} (got {kind_of(record.get(endpoint.id_field))})",
            endpoint=endpoint.collection,
        )
    return value


def integration_key(record: Record) -> tuple[int, int]:
    """A client integration's identity: (school_id, api_type_id)."""
    school = identifier(record.get("school_id"))
    api_type = identifier(record.get("api_type_id"))
    usable = {
        name: value
        for name, value in (("school_id", school), ("api_type_id", api_type))
        if isinstance(value, int) and not isinstance(value, bool)
    }
    if len(usable) < 2:
        missing = " and ".join(name for name in ("school_id", "api_type_id") if name not in usable)
        known = "".join(f"; its {name} {value}" for name, value in usable.items())
        raise D6MalformedResponse(
            f"client integration without a usable {missing}{known}",
            endpoint="/v2/settings/clientintegrations",
        )
    return usable["school_id"], usable["api_type_id"]


def kind_of(value: Any) -> str:
    """What an unusable value is, for an error that must not repeat it: `null`, `text`, `object` ..."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, str):
        return "empty text" if not value.strip() else "text"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list):
        return "a list"
    return type(value).__name__
