"""The watched resources (docs/events.md#catalogue): each d6 collection the bridge polls per school,
declared once.

An entry says everything the rest of the bridge needs: the d6 endpoint and the query it is scanned
with, how a record is identified, the event prefix (`debtor` -> `debtor.created` ...), which event kinds
it has, and its default interval. The poller scans it, the snapshot stores it under its prefix, the
event builder names its events, and delivery's filters accept its event types, all from here: adding a
resource is one entry below (plus the simulator's data for it).

A (school, resource) pair is a *feed*. The client integrations list is not a feed (it is one list for
every school), but its event types live here too, so that the one list of event types is built here.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Protocol

from bridge.d6 import finance
from bridge.d6.endpoints import ACCOUNTABLE_PERSONS, LEARNERS, Endpoint

Record = dict[str, Any]


class Settings(Protocol):
    """What a scan's query reads of the settings (`bridge.settings.Settings` has it; the catalogue sits below
    the settings, which validate `BRIDGE_RESOURCES` against it)."""

    @property
    def debtor_scope(self) -> str: ...

    @property
    def transaction_window_days(self) -> int: ...


RECORD_KINDS: Final = ("created", "updated", "removed")
SNAPSHOT_KIND: Final = "snapshot"
"""`<prefix>.snapshot`: one record's current state, sent by a resync (docs/events.md#resyncs)."""


def snapshot_type(prefix: str) -> str:
    """`<prefix>.snapshot`: the type a resync sends each record of a resource as (`debtor.snapshot`)."""
    return f"{prefix}.{SNAPSHOT_KIND}"


def is_snapshot_type(event_type: str) -> bool:
    """Whether `event_type` is a resync's record type (`<prefix>.snapshot`)."""
    return event_type.endswith(f".{SNAPSHOT_KIND}")


@dataclass(frozen=True, kw_only=True)
class Resource:
    """One watched d6 collection."""

    name: str
    """The name in `BRIDGE_RESOURCES` and `/v1/schools`, e.g. `debtors`."""
    prefix: str
    """The event prefix and the `resource` of its events, e.g. `debtor`; also its snapshot's name."""
    endpoint: Endpoint
    identity: str | Callable[[Record], str]
    """The id field of a record, or a function of the record (raises D6MalformedResponse if unusable)."""
    query: Callable[[Settings], Mapping[str, Any]] = field(default=lambda _settings: {})
    """The d6 query parameters of a scan (booleans as bools; None leaves a parameter out)."""
    kinds: tuple[str, ...] = RECORD_KINDS
    default_interval: float | None = None
    """Target seconds between polls; None means `BRIDGE_SCHOOL_POLL_SECONDS`."""
    prepare: Callable[[list[Record]], list[Record]] | None = None
    """Turns a complete scan into the records to diff (e.g. flattening groups); None keeps it."""
    keys: Callable[[], Callable[[Record], str]] | None = None
    """A fresh key function per scan, when identity depends on the scan (occurrence numbers)."""
    scan_keys: Callable[[Sequence[Sequence[Record]]], finance.TransactionKeys] | None = None
    """Keys of a whole scan (its pages) paired with the snapshot, when identity depends on the scan: what
    the poller uses (twins keep their numbers, a row repeated on two pages is one key); `keys` numbers them
    in scan order."""
    compare: Callable[[Record], Record] | None = None
    """The form two versions of a record are compared in (amounts normalised); None compares as sent."""
    aged_out: Callable[[Record, Settings], bool] | None = None
    """A record that left a windowed scan because it grew old: dropped from the snapshot, not removed."""
    description: str = ""

    @property
    def change_types(self) -> tuple[str, ...]:
        """The types of the change events a poll detects (`debtor.created` ...)."""
        return tuple(f"{self.prefix}.{kind}" for kind in self.kinds)

    @property
    def snapshot_type(self) -> str:
        """The type a resync sends each record as (`debtor.snapshot`)."""
        return snapshot_type(self.prefix)

    @property
    def event_types(self) -> tuple[str, ...]:
        return (*self.change_types, self.snapshot_type)

    def key_function(self) -> str | Callable[[Record], str]:
        """What identifies a record in the scan about to be diffed."""
        return self.keys() if self.keys is not None else self.identity


def _debtor_query(settings: Settings) -> Mapping[str, Any]:
    return {"all_accounts": settings.debtor_scope == "all"}


def _all_accounts(_settings: Settings) -> Mapping[str, Any]:
    return {"all_accounts": True}


def _transaction_query(settings: Settings) -> Mapping[str, Any]:
    return {"all_accounts": True, "start_date": finance.window_start(settings.transaction_window_days)}


def _aged_out(record: Record, settings: Settings) -> bool:
    return finance.before_window(record, finance.window_start(settings.transaction_window_days))


def _endpoint(name: str, path: str, id_field: str | None = None) -> Endpoint:
    return Endpoint(name=name, version="v2", path=path, school_scoped=True, id_field=id_field)


RESOURCES: Final = (
    Resource(
        name="debtors",
        prefix="debtor",
        endpoint=ACCOUNTABLE_PERSONS,
        identity="accountable_person_id",
        query=_debtor_query,
        description="an accountable person (debtor)",
    ),
    Resource(
        name="learners",
        prefix="learner",
        endpoint=LEARNERS,
        identity="learner_id",
        query=_all_accounts,
        description="a learner",
    ),
    Resource(
        name="balances",
        prefix="balance",
        endpoint=_endpoint("age_analysis", "/finplus/debtmanagement/ageanalysis"),
        identity=finance.balance_id,
        query=_all_accounts,  # grouped by family and parent: d6's default
        compare=finance.comparable,
        description="a debtor's age-analysis row: balances per ageing bucket",
    ),
    Resource(
        name="promises",
        prefix="promise",
        endpoint=_endpoint(
            "promises_to_pay", "/finplus/debtmanagement/debtornotes/promisetopays", "promise_to_pay_id"
        ),
        identity="promise_to_pay_id",
        compare=finance.comparable,
        description="a promise to pay (amount promised, amount paid, completed)",
    ),
    Resource(
        name="notes",
        prefix="note",
        endpoint=_endpoint("debtor_notes", "/finplus/debtmanagement/debtornotes/notes", "note_id"),
        identity="note_id",
        query=lambda _settings: {"include_deleted": True},  # a deletion is a change of its status
        description="a debtor note",
    ),
    Resource(
        name="transactions",
        prefix="transaction",
        endpoint=_endpoint("financial_transactions", "/finplus/debtmanagement/financialtransactions"),
        identity="transaction digest",
        keys=finance.transaction_keys,
        scan_keys=finance.TransactionKeys,
        query=_transaction_query,
        kinds=("created", "removed"),
        prepare=finance.flatten_transactions,
        compare=finance.comparable,
        aged_out=_aged_out,
        description="a financial transaction in the trailing window (BRIDGE_TRANSACTION_WINDOW_DAYS)",
    ),
)
"""Every watched resource, in the order a school's poll scans them."""

BY_NAME: Final = {resource.name: resource for resource in RESOURCES}
BY_PREFIX: Final = {resource.prefix: resource for resource in RESOURCES}
DEFAULT_RESOURCES: Final = ("debtors", "learners")

INTEGRATION: Final = "integration"
"""The `resource` of client-integration events (and the snapshot of a school's pairs)."""
INTEGRATION_EVENT_TYPES: Final = (
    "integration.authorised",
    "integration.activated",
    "integration.deactivated",
    "integration.revoked",
)
TEST_EVENT_TYPE: Final = "webhook.test"
RESYNC: Final = "resync"
"""The `resource` of the markers that frame a resync's snapshot events (`resource_id`: the resync id)."""
RESYNC_STARTED: Final = "resync.started"
RESYNC_COMPLETED: Final = "resync.completed"
RESYNC_EVENT_TYPES: Final = (RESYNC_STARTED, RESYNC_COMPLETED)
COMMAND: Final = "command"
"""The `resource` of a write-back command's outcome (`resource_id`: the command id, docs/commands.md)."""
COMMAND_SUCCEEDED: Final = "command.succeeded"
COMMAND_FAILED: Final = "command.failed"
COMMAND_EVENT_TYPES: Final = (COMMAND_SUCCEEDED, COMMAND_FAILED)
SNAPSHOT_EVENT_TYPES: Final = tuple(resource.snapshot_type for resource in RESOURCES)
"""`debtor.snapshot` ...: a subscription that matches none of them gets no resync (docs/api.md)."""

EVENT_TYPES: Final = (
    *INTEGRATION_EVENT_TYPES,
    *(event_type for resource in RESOURCES for event_type in resource.event_types),
    *RESYNC_EVENT_TYPES,
    *COMMAND_EVENT_TYPES,
    TEST_EVENT_TYPE,
)
"""Every event type of the catalogue (docs/events.md#catalogue), in the order the docs list them."""
EVENT_FAMILIES: Final = tuple(sorted({t.split(".")[0] for t in EVENT_TYPES}))
SNAPSHOT_RESOURCES: Final = (*(resource.prefix for resource in RESOURCES), INTEGRATION)
"""Every snapshot a school can have."""


def resource(prefix_or_name: str) -> Resource:
    """The entry for `debtor` or `debtors`; ValueError naming the known ones otherwise."""
    found = BY_PREFIX.get(prefix_or_name) or BY_NAME.get(prefix_or_name)
    if found is None:
        raise ValueError(f"unknown resource {prefix_or_name!r}; one of {', '.join(BY_NAME)}")
    return found
