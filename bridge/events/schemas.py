"""The event catalogue as data: each event type's description, JSON Schema and an example that validates.

`GET /v1/event-types` and the OpenAPI document's `webhooks` section are both built from here, and here
from the definitions the events themselves use, so the three cannot drift apart:

- the envelope is `bridge.events.envelope.Event`, read with `msgspec.json.schema_components`;
- `data` is typed per resource by the structs below, one a resource. Their fields are those of d6's
  records as the bridge normalises them (docs/events.md): ids are integers or null, a `"0000-00-00"`
  date is null, everything else is as d6 sends it (amounts are strings). d6 adds fields over time and
  the bridge passes them on, so unknown fields are allowed; and a subscription's `fields` may leave
  fields out, so none is required;
- the event types are `bridge.catalogue.EVENT_TYPES`, each with its resource from the catalogue; a
  `*.snapshot` carries the record as its change events do, and the `resync.*` markers that frame them
  have `data` of their own (`ResyncStarted`, `ResyncCompleted`: docs/events.md#resyncs);
- each example is made by `new_event`, the function that makes every real event.

The schemas describe the full payload. A subscription with `"payload": "thin"` receives the envelope
without `data`, and `changes` with an empty object per changed field.
"""

from __future__ import annotations

import copy
import functools
from collections.abc import Mapping
from typing import Annotated, Any, Final, TypeAlias

import msgspec

from bridge.catalogue import (
    BY_NAME,
    BY_PREFIX,
    COMMAND,
    COMMAND_FAILED,
    COMMAND_SUCCEEDED,
    EVENT_TYPES,
    INTEGRATION,
    RESYNC,
    RESYNC_COMPLETED,
    RESYNC_STARTED,
    SNAPSHOT_KIND,
    TEST_EVENT_TYPE,
)
from bridge.events.envelope import Event, FieldChange, new_event

UNSET = msgspec.UNSET
Id: TypeAlias = int | msgspec.UnsetType | None
Text: TypeAlias = str | msgspec.UnsetType | None
DateText: TypeAlias = Annotated[str, msgspec.Meta(extra_json_schema={"format": "date"})]
Date: TypeAlias = DateText | msgspec.UnsetType | None
AmountText: TypeAlias = Annotated[str, msgspec.Meta(description="an amount as d6 sends it, e.g. 1500.00")]
Amount: TypeAlias = AmountText | msgspec.UnsetType | None


class Integration(msgspec.Struct, kw_only=True):
    """A (school, API type) pair of d6's client integrations list."""

    school_id: Id = UNSET
    school_name: Text = UNSET
    admin_email_address: Text = UNSET
    telephone_calling_code: Text = UNSET
    telephone_number: Text = UNSET
    api_type_id: Id = UNSET
    api_type: Text = UNSET
    activated_by_integrator: Text = UNSET
    """`Yes` or `No`."""


class Debtor(msgspec.Struct, kw_only=True):
    """An accountable person (d6's `accountablepersons`)."""

    accountable_person_id: Id = UNSET
    title: Text = UNSET
    first_name: Text = UNSET
    full_names: Text = UNSET
    last_name: Text = UNSET
    debtor_code: Text = UNSET
    mobile_calling_code: Text = UNSET
    mobile_number: Text = UNSET
    work_tel_number: Text = UNSET
    home_tel_number: Text = UNSET
    email_address: Text = UNSET
    residential_address: Text = UNSET
    postal_address: Text = UNSET
    home_language: Text = UNSET
    nationality: Text = UNSET
    id_number: Text = UNSET
    passport_number: Text = UNSET
    employer: Text = UNSET
    employer_address: Text = UNSET
    account_closing_date: Date = UNSET
    account_start_date: Date = UNSET


class Learner(msgspec.Struct, kw_only=True):
    learner_id: Id = UNSET
    first_name: Text = UNSET
    last_name: Text = UNSET
    gender: Text = UNSET
    grade: Text = UNSET
    debtor_code: Text = UNSET
    parent1_id: Id = UNSET
    parent2_id: Id = UNSET
    accountable_person_id: Id = UNSET


class Balance(msgspec.Struct, kw_only=True):
    """A debtor's age-analysis row: the balance per ageing bucket."""

    debtor_code: Text = UNSET
    accountable_person_id: Id = UNSET
    date: Date = UNSET
    balance_current: Amount = UNSET
    balance_30days: Amount = UNSET
    balance_60days: Amount = UNSET
    balance_90days: Amount = UNSET
    balance_120days: Amount = UNSET
    balance_150days: Amount = UNSET
    balance_total: Amount = UNSET


class Promise(msgspec.Struct, kw_only=True):
    """A promise to pay."""

    promise_to_pay_id: Id = UNSET
    note_id: Id = UNSET
    accountable_person_id: Id = UNSET
    debtor_code: Text = UNSET
    date_promised: Date = UNSET
    amount_promised: Amount = UNSET
    amount_paid: Amount = UNSET
    promise_completed: Text = UNSET
    """`Yes` or `No`."""


class Note(msgspec.Struct, kw_only=True):
    """A debtor note; a note deleted in d6 has `status` `Deleted`."""

    note_id: Id = UNSET
    accountable_person_id: Id = UNSET
    debtor_code: Text = UNSET
    date: Date = UNSET
    note_type_id: Id = UNSET
    note_type: Text = UNSET
    communication_type_id: Id = UNSET
    communication_type: Text = UNSET
    note: Text = UNSET
    status: Text = UNSET


class Transaction(msgspec.Struct, kw_only=True):
    """A financial transaction (d6 gives it no id: `resource_id` is a digest of what it is)."""

    debtor_code: Text = UNSET
    accountable_person_id: Id = UNSET
    transaction_date: Date = UNSET
    transaction_type_id: Id = UNSET
    transaction_type: Text = UNSET
    category_id: Id = UNSET
    category: Text = UNSET
    learner_id: Id = UNSET
    transaction_reference: Text = UNSET
    transaction_description: Text = UNSET
    debit_amount: Amount = UNSET
    credit_amount: Amount = UNSET
    accumulated_balance: Amount = UNSET


class TestMessage(msgspec.Struct, kw_only=True):
    """The `data` of `webhook.test`."""

    subscription_id: str
    message: str


FeedName: TypeAlias = Annotated[
    str,
    msgspec.Meta(
        description="the resource as BRIDGE_RESOURCES and the state API name it, e.g. debtors",
        extra_json_schema={"enum": list(BY_NAME)},
    ),
]
ResyncId: TypeAlias = Annotated[str, msgspec.Meta(description="the id POST .../resync answered")]


class ResyncStarted(msgspec.Struct, kw_only=True):
    """The `data` of `resync.started`: the feed's `*.snapshot` events follow, then `resync.completed`."""

    resync_id: ResyncId
    resource: FeedName
    as_of_sequence: int
    """The school's sequence when the feed was read: every change up to it is in the snapshots sent."""
    count: int
    """How many `*.snapshot` events of this feed follow."""


class ResyncCompleted(msgspec.Struct, kw_only=True):
    """The `data` of `resync.completed`: a record of the feed not told since `resync.started` is gone."""

    resync_id: ResyncId
    resource: FeedName
    count: int
    """How many `*.snapshot` events of this feed were sent."""


class CommandOutcome(msgspec.Struct, kw_only=True):
    """The `data` of `command.succeeded` and `command.failed`: how a write-back command ended
    (docs/commands.md). Never the note's text. A field without a value is left out."""

    command_id: str
    kind: Annotated[
        str,
        msgspec.Meta(
            extra_json_schema={"enum": ["create_note", "update_note", "delete_note", "delete_promise"]}
        ),
    ]
    idempotency_key: str | None = None
    target_id: str | None = None
    """The note or promise it acted on; None for a create."""
    note_id: int | None = None
    """The note a create made."""
    attempts: int
    d6_status: int | None = None
    """The HTTP status of d6's last answer (None when there was none)."""
    d6_message: str | None = None
    """d6's message, verbatim."""
    remark: str | None = None


TEST_RESOURCE: Final = "subscription"
DATA: Final[Mapping[str, type[msgspec.Struct]]] = {
    INTEGRATION: Integration,
    "debtor": Debtor,
    "learner": Learner,
    "balance": Balance,
    "promise": Promise,
    "note": Note,
    "transaction": Transaction,
    TEST_RESOURCE: TestMessage,
}
"""The `data` of each event `resource` (the `resync` markers: `MARKER_DATA`)."""
MARKER_DATA: Final[Mapping[str, type[msgspec.Struct]]] = {
    RESYNC_STARTED: ResyncStarted,
    RESYNC_COMPLETED: ResyncCompleted,
    COMMAND_SUCCEEDED: CommandOutcome,
    COMMAND_FAILED: CommandOutcome,
}
"""The `data` of each `resync.*` marker, by type."""

INTEGRATION_DESCRIPTIONS: Final = {
    "integration.authorised": "a (school, API type) pair appeared in d6's client integrations list, or a "
    "school whose data calls were denied answers again",
    "integration.activated": "its activated_by_integrator became Yes (by auto-activation or otherwise)",
    "integration.deactivated": "its activated_by_integrator became No again",
    "integration.revoked": "the pair left the list, or d6 denies the school's data while the list still "
    "shows it",
}
KIND_DESCRIPTIONS: Final = {
    "created": "{what} appeared",
    "updated": "{what} changed; `changes` has each changed field, old and new",
    "removed": "{what} is no longer returned by d6; `data` is the last known record",
    SNAPSHOT_KIND: "{what} as the bridge holds it now, sent by a resync between resync.started and "
    "resync.completed; `sequence` is the record's own (that of the last event that told its state, 0 for "
    "a silent baseline), not a new number of the school's sequence",
}
MARKER_DESCRIPTIONS: Final = {
    RESYNC_STARTED: "a resync of one feed (school and resource) begins: its *.snapshot events follow, "
    "each record once, then resync.completed; `sequence` is data.as_of_sequence, not a new number",
    RESYNC_COMPLETED: "every *.snapshot event of the feed's resync was sent: a record of that feed not "
    "told since the matching resync.started no longer exists",
    COMMAND_SUCCEEDED: "a write-back command was done in d6 (docs/commands.md); the change it made arrives "
    "as its own event from the scan the bridge asks for at once",
    COMMAND_FAILED: "a write-back command ended without being done: d6 refused it, denied the school, or "
    "the retries were used up; `data` has d6's status and message",
}
TEST_DESCRIPTION: Final = "sent by POST /v1/subscriptions/{id}/test only, at once and outside the queue"

EXAMPLE_AT: Final = 1_795_425_723.123456  # 2026-11-23T09:22:03.123456Z
EXAMPLE_ID: Final = "evt_01M83VJ80XNKFNH7CBV9QJE906"
EXAMPLE_SCHOOL: Final = 1000
EXAMPLE_SEQUENCE: Final = 1289
EXAMPLE_RECORD_SEQUENCE: Final = 1184
"""A `*.snapshot` example's sequence: its record's, older than the school's."""
EXAMPLE_RESYNC: Final = "rsy_01M83VJ7ZRS5B3M0TQ2J7G4W1D"
EXAMPLE_COMMAND: Final = "cmd_1000_01M83VJ7ZRS5B3M0TQ2J7G4W1E"
MARKER_EXAMPLES: Final[Mapping[str, dict[str, Any]]] = {
    RESYNC_STARTED: {
        "resync_id": EXAMPLE_RESYNC,
        "resource": "debtors",
        "as_of_sequence": EXAMPLE_SEQUENCE,
        "count": 412,
    },
    RESYNC_COMPLETED: {"resync_id": EXAMPLE_RESYNC, "resource": "debtors", "count": 412},
    COMMAND_SUCCEEDED: {
        "command_id": EXAMPLE_COMMAND,
        "kind": "create_note",
        "idempotency_key": "sms-reminder-2026-11-23-6",
        "target_id": None,
        "note_id": 2543,
        "attempts": 1,
        "d6_status": 201,
        "d6_message": "Note created successfully",
        "remark": None,
    },
    COMMAND_FAILED: {
        "command_id": EXAMPLE_COMMAND,
        "kind": "delete_promise",
        "idempotency_key": None,
        "target_id": "77",
        "note_id": None,
        "attempts": 1,
        "d6_status": 404,
        "d6_message": "The Promise To Pay does not exist",
        "remark": None,
    },
}
EXAMPLES: Final[Mapping[str, tuple[str, dict[str, Any], str, Any]]] = {
    # resource: (resource_id, data, the field an `updated` example changes, its old value)
    INTEGRATION: (
        "1000:8",
        {
            "school_id": 1000,
            "school_name": "Laerskool Gqeberha",
            "admin_email_address": "admin@laerskoolgqeberha1000.example.co.za",
            "telephone_calling_code": "27",
            "telephone_number": "0215263788",
            "api_type_id": 8,
            "api_type": "Debt manager",
            "activated_by_integrator": "Yes",
        },
        "activated_by_integrator",
        "No",
    ),
    "debtor": (
        "6",
        {
            "accountable_person_id": 6,
            "title": "Mr",
            "first_name": "Vuyo",
            "full_names": "Vuyo Musa",
            "last_name": "Mahlangu",
            "debtor_code": "1004",
            "mobile_calling_code": "27",
            "mobile_number": "0829914402",
            "email_address": "vuyo.mahlangu@example.co.za",
            "id_number": "",
            "account_closing_date": None,
            "account_start_date": "2023-12-25",
        },
        "mobile_number",
        "0818006397",
    ),
    "learner": (
        "5",
        {
            "learner_id": 5,
            "first_name": "Zanele",
            "last_name": "Qwabe",
            "gender": "F",
            "grade": "8",
            "debtor_code": "1005",
            "parent1_id": 8,
            "parent2_id": None,
            "accountable_person_id": 8,
        },
        "grade",
        "7",
    ),
    "balance": (
        "8",
        {
            "debtor_code": "1005",
            "accountable_person_id": 8,
            "date": "2026-11-30",
            "balance_current": "-1910.00",
            "balance_30days": "0.00",
            "balance_60days": "0.00",
            "balance_90days": "0.00",
            "balance_120days": "0.00",
            "balance_150days": "0.00",
            "balance_total": "-1910.00",
        },
        "balance_total",
        "-410.00",
    ),
    "promise": (
        "6",
        {
            "promise_to_pay_id": 6,
            "note_id": 13,
            "accountable_person_id": 8,
            "debtor_code": "1005",
            "date_promised": "2026-12-14",
            "amount_promised": "1500.00",
            "amount_paid": "1500.00",
            "promise_completed": "Yes",
        },
        "promise_completed",
        "No",
    ),
    "note": (
        "13",
        {
            "note_id": 13,
            "accountable_person_id": 8,
            "debtor_code": "1005",
            "date": "2026-11-30",
            "note_type_id": 2,
            "note_type": "Promise to pay",
            "communication_type_id": 3,
            "communication_type": "Telephonic",
            "note": "Promised R1500.00 by 2026-12-14.",
            "status": "Deleted",
        },
        "status",
        "Created",
    ),
    "transaction": (
        "e6ef4f7d645cf6c293c5:1",
        {
            "debtor_code": "1005",
            "accountable_person_id": 8,
            "transaction_date": "2026-11-30",
            "transaction_type_id": 2,
            "transaction_type": "Receipt",
            "category_id": None,
            "category": None,
            "learner_id": None,
            "transaction_reference": "RCT000120",
            "transaction_description": "Payment received - EFT",
            "debit_amount": "0.00",
            "credit_amount": "1500.00",
            "accumulated_balance": "-1910.00",
        },
        "accumulated_balance",
        "-410.00",
    ),
    TEST_RESOURCE: (
        "sub_8a5c2b9cfcd04212bce84c4a",
        {"subscription_id": "sub_8a5c2b9cfcd04212bce84c4a", "message": "a test event from d6 bridge"},
        "message",
        "",
    ),
}


class EventTypeInfo(msgspec.Struct, kw_only=True, frozen=True):
    """One event type as `GET /v1/event-types` shows it."""

    name: str
    description: str
    resource: str
    schema: dict[str, Any]
    """JSON Schema (2020-12) of the whole webhook body, `data` typed for the resource; no `$ref`."""
    example: dict[str, Any]
    """A body of this type, made by the bridge's own event code; it validates against `schema`."""


def resource_of(event_type: str) -> str:
    """The `resource` of an event type's events: the catalogue prefix, `integration`, `resync` or
    `subscription`."""
    if event_type == TEST_EVENT_TYPE:
        return TEST_RESOURCE
    return event_type.split(".")[0]


def data_of(event_type: str) -> type[msgspec.Struct]:
    """The struct an event type's `data` is."""
    return MARKER_DATA.get(event_type) or DATA[resource_of(event_type)]


def describe(event_type: str) -> str:
    if event_type == TEST_EVENT_TYPE:
        return TEST_DESCRIPTION
    if event_type in INTEGRATION_DESCRIPTIONS:
        return INTEGRATION_DESCRIPTIONS[event_type]
    if event_type in MARKER_DESCRIPTIONS:
        return MARKER_DESCRIPTIONS[event_type]
    prefix, kind = event_type.split(".")
    return KIND_DESCRIPTIONS[kind].format(what=BY_PREFIX[prefix].description)


def event_schema(event_type: str) -> dict[str, Any]:
    """The envelope (`Event`) with `type` and `resource` fixed and `data` typed; `changes` only on
    `*.updated`. Self-contained: every `$ref` is resolved in place."""
    resource = resource_of(event_type)
    _, components = msgspec.json.schema_components(
        [Event, FieldChange, *DATA.values(), *MARKER_DATA.values()], ref_template="{name}"
    )
    envelope = copy.deepcopy(components[Event.__name__])
    properties = envelope["properties"]
    properties["type"] = {"type": "string", "const": event_type}
    properties["resource"] = {"type": "string", "const": resource}
    properties["data"] = components[data_of(event_type).__name__]
    if not event_type.endswith(".updated"):
        del properties["changes"]
    envelope["title"] = event_type
    envelope["description"] = describe(event_type)
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", **_inline(envelope, components)}


def example(event_type: str) -> dict[str, Any]:
    resource = resource_of(event_type)
    sequence = EXAMPLE_SEQUENCE
    if resource == RESYNC:
        resource_id, data = EXAMPLE_RESYNC, dict(MARKER_EXAMPLES[event_type])
        changes = None
    elif resource == COMMAND:
        resource_id, data = EXAMPLE_COMMAND, dict(MARKER_EXAMPLES[event_type])
        changes = None
    else:
        resource_id, data, field, old = EXAMPLES[resource]
        changes = {field: FieldChange(old=old, new=data[field])} if event_type.endswith(".updated") else None
        if event_type.endswith(f".{SNAPSHOT_KIND}"):
            sequence = EXAMPLE_RECORD_SEQUENCE
    test = event_type == TEST_EVENT_TYPE
    event = new_event(
        event_type,
        school_id=0 if test else EXAMPLE_SCHOOL,
        resource=resource,
        resource_id=resource_id,
        data=data,
        changes=changes,
        now=EXAMPLE_AT,
    )
    event = msgspec.structs.replace(event, id=EXAMPLE_ID, sequence=0 if test else sequence)
    built: dict[str, Any] = msgspec.to_builtins(event)
    return built


@functools.cache
def event_types() -> tuple[EventTypeInfo, ...]:
    """Every event type of the catalogue, in its order (built once: it depends on the code alone)."""
    return tuple(
        EventTypeInfo(
            name=name,
            description=describe(name),
            resource=resource_of(name),
            schema=event_schema(name),
            example=example(name),
        )
        for name in EVENT_TYPES
    )


def _inline(schema: Any, components: Mapping[str, Any]) -> Any:
    """`schema` with each `{"$ref": name}` replaced by a copy of that component (they are not recursive)."""
    if isinstance(schema, dict):
        if set(schema) == {"$ref"}:
            return _inline(copy.deepcopy(components[schema["$ref"]]), components)
        return {key: _inline(value, components) for key, value in schema.items()}
    if isinstance(schema, list):
        return [_inline(item, components) for item in schema]
    return schema
