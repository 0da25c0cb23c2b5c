from __future__ import annotations

from redis.crc import key_slot

from bridge.store.keys import Keys
from bridge.store.scripts import COMMIT

KEYS = Keys("d6b")


def test_every_school_key_lives_in_the_school_slot() -> None:
    school_keys = [
        KEYS.school_meta(1000),
        KEYS.snapshot_hashes(1000, "learner"),
        KEYS.snapshot_records(1000, "debtor"),
        KEYS.snapshot_hold(1000, "integration"),
        KEYS.school_events(1000),
        KEYS.lease(1000),
        KEYS.lease_owner(1000, "integration"),
        KEYS.fence(1000),
        KEYS.poll_status(1000),
    ]
    assert all("{s:1000}" in key for key in school_keys)
    assert len({key_slot(key.encode()) for key in school_keys}) == 1
    assert KEYS.snapshot_hashes(1000, "learner") == "d6b:{s:1000}:snap:learner:hash"


def test_published_structures_share_the_events_slot() -> None:
    keys = [
        KEYS.event_locations(),
        KEYS.event_index(),
        KEYS.event_index(type="debtor.updated"),
        KEYS.event_index(school_id=3),
        KEYS.event_index(type="debtor.updated", school_id=3),
        KEYS.delivery_stream(),
    ]
    assert len({key_slot(key.encode()) for key in keys}) == 1
    assert len(set(keys)) == len(keys)


def test_prefix_and_budget_key() -> None:
    assert Keys("other").school_meta(1) == "other:{s:1}:meta"
    assert Keys().d6_budget() == "d6b:{d6}:budget"
    assert "KEYS[6]" in COMMIT and "KEYS[7]" not in COMMIT
