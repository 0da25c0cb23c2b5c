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
  on one day are two transactions). The identity values are normalised as ids and amounts are: a debtor
  code `"1005"` and `1005` are one code, `"3500"` and `"3500.00"` one amount. `accumulated_balance` is data,
  never identity: it moves when an earlier transaction is back-dated. The report may come as flat rows or
  grouped per family with a list of transactions; groups are flattened, each transaction carrying the
  family's `debtor_code` and `accountable_person_id` when it does not name its own.
- Occurrence numbers are given per scan (`TransactionKeys`), against the snapshot: twins (one identity,
  several rows, e.g. two learners' identical invoices) keep the numbers of the rows they were, matched by
  the whole row, then by the whole row without its running balance, and only then in scan order; a new
  twin takes a new number. The same whole row on two pages is one row that d6 repeated (the list moved
  under the cursor): both get one key, so the scan has a duplicate id and is not trusted at once
  (docs/guarantees.md). Two identical rows on one page are two transactions.

Errors name the field and the record's id (or its place in the scan), never a value (docs/personal-data.md):
their text reaches the logs and `/v1/schools`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal, InvalidOperation
from typing import Any, Final

import msgspec

from bridge.d6.records import identifier
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
_SORTED: Final = msgspec.json.Encoder(order="sorted")
ROW_DIGEST_BYTES: Final = 16
"""A whole row's digest, as the snapshot stores it (`bridge.sync.diff.digest`: BLAKE2b-128, sorted JSON)."""
RUNNING_FIELDS: Final = frozenset({"accumulated_balance"})
"""Fields that move when another transaction changes: left out when twins are matched by their row."""


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
    raise D6MalformedResponse("age analysis row without a usable accountable_person_id or debtor_code")


def flatten_transactions(records: list[Record]) -> list[Record]:
    """Flat transaction rows from flat rows or family groups (see the module docstring)."""
    flat: list[Record] = []
    for record in records:
        group = next((record[k] for k in GROUP_KEYS if isinstance(record.get(k), list)), None)
        if group is None:
            flat.append(record)
            continue
        family: Record = {k: record[k] for k in ("debtor_code", "accountable_person_id") if k in record}
        for number, item in enumerate(group, 1):
            if not isinstance(item, dict):
                raise D6MalformedResponse(
                    f"transaction {number} of a family is not an object{_debtor_of(record)}"
                )
            flat.append({**family, **item} if family else item)
    return flat


def transaction_keys() -> Callable[[Record], str]:
    """A key function for one scan: digest of the identity fields, then `:n` for the n-th exact repeat.

    Repeats are numbered in the order of the scan, without the snapshot (the poller uses `TransactionKeys`,
    which pairs twins with the rows they were).
    """
    seen: dict[str, int] = {}

    def key(record: Record) -> str:
        digest = identity_digest(record)
        seen[digest] = seen.get(digest, 0) + 1
        return f"{digest}:{seen[digest]}"

    return key


def identity_digest(record: Record, place: str = "") -> str:
    """The digest of TRANSACTION_IDENTITY, in order, values normalised (ids as ids, amounts as amounts).

    `place` says where the row is (for the error of a row that has no identity)."""
    get = record.get
    debtor, day = _code(get("debtor_code")), get("transaction_date")
    person = identifier(get("accountable_person_id"))
    if not day or (debtor is None and person is None):
        missing = "transaction_date" if not day else "debtor_code or accountable_person_id"
        raise D6MalformedResponse(f"transaction{place} without a usable {missing}{_debtor_of(record)}")
    kind = get("transaction_type_id")
    identity = (
        debtor if debtor is not None else f"person:{person}",
        day,
        identifier(kind),
        _code(get("transaction_reference")),
        _code(get("transaction_description")),
        normal_amount(get("debit_amount")),
        normal_amount(get("credit_amount")),
    )
    return hashlib.blake2b(_PLAIN.encode(identity), digest_size=10).hexdigest()


def _code(value: Any) -> Any:
    """A code or text of the identity: integer-like as text without padding (`1005`, `" 1005"` ->
    `"1005"`), so it is one value whichever way d6 typed it and the usual text form keeps its digest.

    A scan computes this for three fields of every transaction, so d6's two usual forms come first, each
    giving what `identifier` would: digits alone (`str.isdecimal`, the digits `int` reads and `\\d`
    matches), and text that starts with a letter (never integer-like, never blank)."""
    if type(value) is str:
        if value.isdecimal():
            return str(int(value))
        if value[:1].isalpha():
            return value
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float | str):
        normal = identifier(value)
        if isinstance(normal, int) and not isinstance(normal, bool):
            return str(normal)
    return value


def _debtor_of(record: Record) -> str:
    """ "; its accountable_person_id 40": the id of the row's debtor, when it has a usable one."""
    person = identifier(record.get("accountable_person_id"))
    return f"; its accountable_person_id {person}" if type(person) is int else ""


def _row_digest(record: Record) -> bytes:
    return hashlib.blake2b(_SORTED.encode(record), digest_size=ROW_DIGEST_BYTES).digest()


def _pairing_form(record: Record) -> Record:
    """A twin as it is matched when its whole row moved: amounts in one form, running fields left out."""
    return {k: v for k, v in comparable(record).items() if k not in RUNNING_FIELDS}


class TransactionKeys:
    """The keys of one scan's transactions, paired with the snapshot (see the module docstring).

    keyer = TransactionKeys(pages)                 # identity digests, grouped (raises on a bad row)
    old = await snapshot records of keyer.to_read(previous.hashes)   # only the twins' old rows
    keys = keyer.keys(previous.hashes, old)        # one key per row of `keyer.rows`
    """

    def __init__(self, pages: Sequence[Sequence[Record]]) -> None:
        self.rows: list[Record] = []
        self._page: list[int] = []
        self._groups: dict[str, list[int]] = {}
        groups = self._groups
        for number, page in enumerate(pages):
            for record in page:
                index = len(self.rows)
                digest = identity_digest(record, f" {index + 1} of the scan")
                self.rows.append(record)
                self._page.append(number)
                groups.setdefault(digest, []).append(index)
        self._previous: dict[str, dict[int, str]] | None = None

    def _previous_groups(self, previous: Mapping[str, bytes]) -> dict[str, dict[int, str]]:
        """Identity digest -> occurrence number -> key, of the snapshot's keys."""
        if self._previous is None:
            found: dict[str, dict[int, str]] = {}
            for key in previous:
                head, _, tail = key.rpartition(":")
                if head and tail.isdigit():
                    found.setdefault(head, {})[int(tail)] = key
            self._previous = found
        return self._previous

    def to_read(self, previous: Mapping[str, bytes]) -> list[str]:
        """The snapshot keys whose last known rows pairing may need: those of twins, then or now."""
        before = self._previous_groups(previous)
        wanted: list[str] = []
        for digest, numbers in before.items():
            rows = self._groups.get(digest)
            if rows and (len(rows) > 1 or len(numbers) > 1):
                wanted += numbers.values()
        return wanted

    def keys(self, previous: Mapping[str, bytes], old: Mapping[str, Record]) -> list[str]:
        """One key per row of `rows`; rows that are one row repeated on several pages share a key."""
        before = self._previous_groups(previous)
        keys = [""] * len(self.rows)
        for digest, indexes in self._groups.items():
            numbers = before.get(digest, {})
            if len(indexes) == 1 and len(numbers) <= 1:  # the usual case: no twins, then or now
                keys[indexes[0]] = next(iter(numbers.values()), f"{digest}:1")
                continue
            slots, digests = self._slots(indexes)
            for number, slot in zip(self._pair(slots, digests, numbers, previous, old), slots, strict=True):
                for index in slot:
                    keys[index] = f"{digest}:{number}"
        return keys

    def _slots(self, indexes: list[int]) -> tuple[list[list[int]], list[bytes]]:
        """The group's rows, one slot per transaction, and each slot's row digest: the n-th copy of a whole
        row on one page and the n-th copy of it on another page are one row repeated (the list moved under
        the cursor)."""
        slots: list[list[int]] = []
        digests: list[bytes] = []
        where: dict[tuple[bytes, int], int] = {}
        copies: dict[tuple[bytes, int], int] = {}
        for index in indexes:
            row = _row_digest(self.rows[index])
            page = (row, self._page[index])
            copies[page] = copy = copies.get(page, 0) + 1
            slot = where.get((row, copy))
            if slot is None:
                where[(row, copy)] = len(slots)
                slots.append([index])
                digests.append(row)
            else:
                slots[slot].append(index)
        return slots, digests

    def _pair(
        self,
        slots: list[list[int]],
        digests: list[bytes],
        numbers: Mapping[int, str],
        previous: Mapping[str, bytes],
        old: Mapping[str, Record],
    ) -> list[int]:
        """The occurrence number of each slot: the snapshot's row it is (whole row, then without the running
        fields), else the snapshot's numbers left in order, else new numbers."""
        rows = [self.rows[slot[-1]] for slot in slots]
        free = sorted(numbers)
        chosen: list[int | None] = [None] * len(slots)

        def match(same: Callable[[int, int], bool]) -> None:
            for s in range(len(slots)):
                if chosen[s] is None:
                    n = next((n for n in free if same(s, n)), None)
                    if n is not None:
                        chosen[s] = n
                        free.remove(n)

        if free:
            match(lambda s, n: previous.get(numbers[n]) == digests[s])
        if free and None in chosen:
            forms = {n: _pairing_form(old[numbers[n]]) for n in free if numbers[n] in old}
            mine = [_pairing_form(row) for row in rows]
            match(lambda s, n: n in forms and forms[n] == mine[s])
        if free and None in chosen:
            match(lambda s, n: True)  # a twin whose row changed keeps a number: no false created / removed
        following = max([*numbers, *(n for n in chosen if n is not None)], default=0) + 1
        result = []
        for n in chosen:
            if n is None:
                n, following = following, following + 1
            result.append(n)
        return result


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
