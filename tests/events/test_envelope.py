from __future__ import annotations

import time
from datetime import UTC, datetime

import msgspec
import pytest

from bridge.events.envelope import (
    EVENT_TYPES,
    Event,
    FieldChange,
    decode_event,
    encode_event,
    new_event,
    split_for_sequence,
)
from bridge.events.ids import (
    UlidGenerator,
    event_id_at,
    event_id_bound,
    event_id_ms,
    event_id_time,
    is_event_id,
    new_event_id,
)


def test_ids_are_ulids_sortable_and_unique() -> None:
    ids = [new_event_id() for _ in range(5000)]
    assert len(set(ids)) == len(ids)
    assert ids == sorted(ids)
    for eid in ids[:10]:
        assert eid.startswith("evt_") and len(eid) == 30 and is_event_id(eid)
        assert set(eid[4:]) <= set("0123456789ABCDEFGHJKMNPQRSTVWXYZ")


def test_id_time_round_trips_and_is_monotonic_when_clock_steps_back() -> None:
    generator = UlidGenerator()  # its own clock history, so the time travel stays in this test
    at = float(int(time.time())) + 0.25
    eid = new_event_id(at, generator)
    assert event_id_ms(eid) == int(at * 1000)
    assert event_id_time(eid) == datetime.fromtimestamp(at, UTC)
    earlier = new_event_id(at - 10, generator)  # the clock stepped back: still after the previous id
    assert earlier > eid
    later = new_event_id(at + 1, generator)
    assert later > earlier
    assert event_id_ms(event_id_at(at - 10)) == int((at - 10) * 1000)
    assert event_id_bound(at, upper=False) < eid < event_id_bound(at, upper=True)


def test_envelope_field_order_timestamp_and_changes_omitted() -> None:
    event = new_event(
        "learner.created",
        school_id=1000,
        resource="learner",
        resource_id="51",
        data={"learner_id": 51},
        now=1_790_000_000.5,
    )
    body = encode_event(msgspec.structs.replace(event, sequence=7))
    assert list(msgspec.json.decode(body)) == [
        "id",
        "type",
        "timestamp",
        "school_id",
        "sequence",
        "resource",
        "resource_id",
        "data",
    ]
    assert b'"timestamp":"2026-09-21T' in body and b':20.500000Z"' in body
    updated = msgspec.structs.replace(
        event, type="learner.updated", changes={"grade": FieldChange(old="3", new="4")}
    )
    decoded = msgspec.json.decode(encode_event(updated))
    assert list(decoded)[-1] == "changes"
    assert decoded["changes"] == {"grade": {"old": "3", "new": "4"}}
    assert decode_event(encode_event(updated)) == updated
    added = msgspec.structs.replace(updated, changes={"x": FieldChange(old=None, new=1)})
    assert msgspec.json.decode(encode_event(added))["changes"] == {"x": {"old": None, "new": 1}}


def test_split_for_sequence_splices_the_number() -> None:
    event = new_event(
        "debtor.updated",
        school_id=3,
        resource="debtor",
        resource_id="9",
        data={"sequence": 0, "note": ',"sequence":0,'},
    )
    head, tail = split_for_sequence(event)
    body = head + b"1289" + tail
    assert decode_event(body) == msgspec.structs.replace(event, sequence=1289)


def test_catalogue_and_unknown_type() -> None:
    # 4 integration, 17 change types, 6 snapshot types, 2 resync markers, 2 command outcomes, the test event
    assert "webhook.test" in EVENT_TYPES and len(EVENT_TYPES) == 32
    assert {"debtor.snapshot", "resync.started", "resync.completed"} <= EVENT_TYPES
    with pytest.raises(ValueError, match="unknown event type"):
        new_event("learner.exploded", school_id=1, resource="learner", resource_id="1", data={})
    assert isinstance(time.time(), float)
    assert Event.__struct_config__.frozen
