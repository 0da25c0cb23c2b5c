from __future__ import annotations

from pathlib import Path

import redis.asyncio as aioredis
from redis.crc import key_slot

from bridge.delivery.models import Subscription
from bridge.store import scripts
from bridge.store.keys import (
    META_PUBLISHED,
    META_SEQ,
    SCHOOL_FLAGS,
    SUBSCRIPTION_FAILING_SINCE,
    Keys,
    meta_baseline,
    meta_count,
    meta_polled,
    meta_version,
)
from bridge.store.scripts import COMMIT, DELIVERY_COMPLETE, PURGE_SNAPSHOTS, Scripts
from bridge.sync.snapshot import SchoolFlags

KEYS = Keys("d6b")


def test_every_school_key_lives_in_the_school_slot() -> None:
    school_keys = [
        KEYS.school_meta(1000),
        KEYS.snapshot_hashes(1000, "learner"),
        KEYS.snapshot_records(1000, "debtor"),
        KEYS.snapshot_hold(1000, "integration"),
        *KEYS.snapshot_raws(1000, "learner"),
        KEYS.school_events(1000),
        KEYS.school_bodies(1000),
        KEYS.school_events_rewrite(1000),
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
    assert "KEYS[10]" in COMMIT and "KEYS[11]" not in COMMIT


def test_subscription_keys_share_the_subscription_slot() -> None:
    keys = [*KEYS.all_of("sub_1"), KEYS.lane("sub_1", 1000)]
    assert all("{sub:sub_1}" in key for key in keys)
    assert len({key_slot(key.encode()) for key in keys}) == 1
    assert len(set(keys)) == len(keys)


def test_layout_is_what_stored_data_was_written_with() -> None:
    """Renaming any of these strands existing data: they are the store's on-disk contract."""
    assert [
        KEYS.school_meta(1000),
        KEYS.snapshot_records(1000, "learner"),
        KEYS.snapshot_hold(1000, "learner"),
        KEYS.school_events(1000),
        KEYS.lease(1000),
        KEYS.lease_owner(1000),
        KEYS.fence(1000),
        KEYS.poll_status(1000),
        KEYS.known_schools(),
        KEYS.event_locations(),
        KEYS.event_index(type="learner.updated", school_id=1000),
        KEYS.handoff_cursor(),
        KEYS.handoff_lock(),
        KEYS.integrations_active(),
        KEYS.store_marker(),
        KEYS.subscription_index(),
        KEYS.subscriptions_version(),
        *KEYS.all_of("sub_1"),
        KEYS.lane("sub_1", 1000),
    ] == [
        "d6b:{s:1000}:meta",
        "d6b:{s:1000}:snap:learner:rec",
        "d6b:{s:1000}:snap:learner:hold",
        "d6b:{s:1000}:events",
        "d6b:{s:1000}:lease:poll",
        "d6b:{s:1000}:lease:poll:owner",
        "d6b:{s:1000}:fence",
        "d6b:{s:1000}:poll",
        "d6b:{schools}:known",
        "d6b:{events}:loc",
        "d6b:{events}:idx:s:1000:t:learner.updated",
        "d6b:{events}:handoff",
        "d6b:{events}:handoff:lock",
        "d6b:{integrations}:active",
        "d6b:{store}:marker",
        "d6b:{subs}:index",
        "d6b:{subs}:version",
        "d6b:{sub:sub_1}:record",
        "d6b:{sub:sub_1}:deliveries",
        "d6b:{sub:sub_1}:due",
        "d6b:{sub:sub_1}:leases",
        "d6b:{sub:sub_1}:lanes",
        "d6b:{sub:sub_1}:fanned",
        "d6b:{sub:sub_1}:traces",
        "d6b:{sub:sub_1}:dead",
        "d6b:{sub:sub_1}:attempts",
        "d6b:{sub:sub_1}:tokens",
        "d6b:{sub:sub_1}:feed",
        "d6b:{sub:sub_1}:feed:at",
        "d6b:{sub:sub_1}:resyncs",
        "d6b:{sub:sub_1}:resyncs:active",
        "d6b:{sub:sub_1}:resyncs:unconfirmed",
        "d6b:{sub:sub_1}:resyncs:counter",
        "d6b:{sub:sub_1}:lane:1000",
    ]
    fields = [META_SEQ, META_PUBLISHED, *SCHOOL_FLAGS, SUBSCRIPTION_FAILING_SINCE]
    assert fields == ["seq", "published", "denied", "revoked", "purged", "failing_since"]
    builders = (meta_version, meta_baseline, meta_count, meta_polled)
    assert [build("learner") for build in builders] == [
        "ver:learner",
        "baseline:learner",
        "count:learner",
        "polled:learner",
    ]


def test_scripts_spell_the_fields_of_keys() -> None:
    assert "'ver:' .. r" in COMMIT and "'seq'" in COMMIT and "$" not in COMMIT
    assert "{'revoked', 'denied'}" in PURGE_SNAPSHOTS and "'purged'" in PURGE_SNAPSHOTS
    assert "'failing_since'" in DELIVERY_COMPLETE
    assert SUBSCRIPTION_FAILING_SINCE in Subscription.__struct_fields__
    assert set(SCHOOL_FLAGS) == set(SchoolFlags.__struct_fields__)


def test_every_script_is_registered_once_in_scripts() -> None:
    # A name with a leading underscore is a part several scripts share (`_CLAIM_LUA`), not a script.
    texts = [
        v
        for n, v in vars(scripts).items()
        if n.isupper() and not n.startswith("_") and isinstance(v, str) and "redis.call" in v
    ]
    registered = [script.script for script in vars(Scripts(aioredis.Redis())).values()]
    assert sorted(registered) == sorted(texts)


def test_only_the_store_module_holds_scripts_and_d6_knows_no_store() -> None:
    root = Path(__file__).resolve().parents[2] / "bridge"
    for path in root.rglob("*.py"):
        text = path.read_text()
        if path != root / "store" / "scripts.py":
            assert "register_script" not in text and "redis.call(" not in text, path
        if path.parent == root / "d6":
            assert "bridge.store" not in text, path
