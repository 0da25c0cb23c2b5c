"""The hour-of-week profile: counted from scans (in Redis, by every replica), learned per school against all
schools, and the turn that follows it; flat while nothing is known, when turns are the plan's intervals."""

from __future__ import annotations

import random
import time
from datetime import UTC, datetime, timedelta, timezone

import redis.asyncio as aioredis

from bridge.settings import Settings
from bridge.store.keys import Keys
from bridge.sync.planner import WEEK_FLOOR_SHARE, Planner
from bridge.sync.status import FeedStatus, PollStatusStore
from bridge.sync.week import (
    EPOCH,
    FLAT,
    HOUR,
    HOURS,
    Pooled,
    covered,
    grow,
    hour_of_week,
    lag_area_turn,
    scan_spread,
    school_shape,
)

SAST = timezone(timedelta(hours=2))
MONDAY = datetime(2026, 12, 7, tzinfo=SAST).timestamp()  # a Monday, 00:00 in South Africa


def day_school(slot: int) -> float:
    """Weekdays 07:00 to 17:00 busy, nothing else (relative)."""
    day, hour = divmod(slot, 24)
    return 1.0 if day < 5 and 7 <= hour < 17 else 0.02


def test_the_hour_of_the_week_is_south_african_time_from_monday() -> None:
    assert hour_of_week(MONDAY) == 0
    assert hour_of_week(MONDAY + 10.5 * HOUR) == 10
    assert hour_of_week(datetime(2026, 12, 13, 23, 30, tzinfo=SAST).timestamp()) == 167  # Sunday 23:30
    assert hour_of_week(datetime(2026, 12, 7, 22, 0, tzinfo=UTC).timestamp()) == 24  # Tuesday 00:00 there
    assert covered(MONDAY + 0.5 * HOUR, MONDAY + 2.25 * HOUR) == [(0, 1800.0), (1, 3600.0), (2, 900.0)]


def test_with_a_flat_profile_the_turn_is_the_interval_itself() -> None:
    for interval in (300.0, 5000.0, 20 * HOUR):
        assert abs(lag_area_turn(MONDAY + 1234.0, interval, FLAT) - (MONDAY + 1234.0 + interval)) < 1e-6


def test_the_turn_comes_soon_after_busy_hours_and_late_after_quiet_ones() -> None:
    shape = _shape(day_school)
    interval = 4 * HOUR
    after_morning = lag_area_turn(MONDAY + 7 * HOUR, interval, shape)  # scanned at 07:00, a busy day ahead
    after_night = lag_area_turn(MONDAY + 19 * HOUR, interval, shape)  # scanned at 19:00, a night ahead
    assert after_morning - (MONDAY + 7 * HOUR) < interval  # changes pile up: due sooner
    assert after_night > MONDAY + 31 * HOUR  # nothing changes at night: due in the next morning, not at 23:00
    assert after_night < MONDAY + 41 * HOUR  # ... and within the busy day after it


def test_a_school_learns_its_own_hours_and_a_quiet_school_keeps_the_pooled_ones() -> None:
    rng = random.Random(3)
    pooled = Pooled.empty()
    schools: dict[int, dict[int, float]] = {}
    now = MONDAY
    shape = FLAT
    late = {slot: (1.0 if slot % 24 >= 18 else 0.02) for slot in range(HOURS)}  # school 2: evenings
    for _ in range(3):  # three weeks of hourly scans of two schools, and a quiet third
        for hour in range(HOURS):
            start = now + hour * HOUR
            for school_id, week in ((1, day_school), (2, late.__getitem__), (3, lambda slot: 0.0)):
                changes = sum(rng.random() < 2.0 * week(hour) for _ in range(3))
                added = scan_spread(start, start + HOUR, changes, shape, start)
                pooled.add(added.changes, added.seconds)
                counts = schools.setdefault(school_id, {})
                for slot, value in added.changes.items():
                    counts[slot] = counts.get(slot, 0.0) + value
        now += HOURS * HOUR
        shape = pooled.shape(now)
    exposure = pooled.exposure()
    one = school_shape(schools[1], shape, exposure, now)
    two = school_shape(schools[2], shape, exposure, now)
    assert one[10] > 5 * one[20]  # Monday 10:00 busy, 20:00 quiet for the day school
    assert two[20] > 5 * two[10]  # the other way round for the evening school
    assert school_shape(schools[3], shape, exposure, now) == shape  # nothing of its own: all schools' hours
    assert abs(sum(one) / HOURS - 1.0) < 1e-9


def test_the_planner_follows_the_week_within_the_gap_bound_and_is_unchanged_when_flat() -> None:
    settings = Settings(school_poll_seconds=300.0, poll_jitter_seconds=30.0, max_poll_seconds=86400.0)
    planner = Planner(settings)
    feed = (1, "learners")
    status = FeedStatus(
        resource="learners", pages=10, last_due=MONDAY + 19 * HOUR, last_started=MONDAY + 19 * HOUR
    )
    planner.update({feed: status}, MONDAY + 19 * HOUR)
    flat_turn = planner.turn(feed)
    assert flat_turn == MONDAY + 19 * HOUR + planner.interval(feed)
    pooled = Pooled([0.0] * HOURS, [0.0] * HOURS)
    for slot in range(HOURS):  # weeks of history: busy school days, quiet otherwise
        pooled.changes[slot] = 1000.0 * day_school(slot)
        pooled.seconds[slot] = 1000.0 * HOUR
    planner.learn_week(pooled, {}, EPOCH)
    turn = planner.turn(feed)
    assert turn != flat_turn
    assert turn <= MONDAY + 19 * HOUR + WEEK_FLOOR_SHARE * settings.max_poll_seconds


async def test_every_scan_adds_to_the_counts_in_redis_and_the_planner_reads_them(
    redis: aioredis.Redis,
) -> None:
    keys = Keys(prefix="weektest")
    status = PollStatusStore(redis, keys, ("learners",))
    monday = MONDAY - 7 * 86400  # a week earlier: scans start in the past
    await status.started(7, "learners", at=monday + 9 * HOUR)
    assert await status.succeeded(7, "learners", 100, 2, changes=0) is None  # a first scan: nothing to learn
    await status.started(7, "learners", at=monday + 11 * HOUR)
    await status.succeeded(7, "learners", 100, 2, changes=4)
    now = time.time()
    pooled, schools = await status.weeks([7, 8])
    assert set(schools) == {7}  # school 8 has no counts
    assert sorted(schools[7]) == [9, 10]  # the two hours the scan covered, two changes each (flat spread)
    assert abs(sum(schools[7].values()) / (4 * grow(now)) - 1) < 1e-3  # forward-decayed at the scan's end
    assert [slot for slot in range(HOURS) if pooled.seconds[slot]] == [9, 10]
    planner = Planner(Settings(school_poll_seconds=300.0, poll_jitter_seconds=30.0), status)
    await planner.refresh([(7, "learners")])
    assert planner.shapes.keys() == {7}
    assert status.week_shape == planner.pooled_shape != FLAT


def _shape(week: object) -> tuple[float, ...]:
    values = [week(slot) for slot in range(HOURS)]  # type: ignore[operator]
    mean = sum(values) / HOURS
    return tuple(v / mean for v in values)
