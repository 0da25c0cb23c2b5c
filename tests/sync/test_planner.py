"""The poll planner: targets while the budget covers them, the square-root rule within the budget when it
does not, the floor of BRIDGE_MAX_POLL_SECONDS, change rates learned from scans, and `fixed` untouched."""

from __future__ import annotations

import math
import random

import msgspec
import redis.asyncio as aioredis

from bridge.app import Services
from bridge.settings import Settings
from bridge.store.keys import Keys
from bridge.sync.planner import Feed, Planner, estimate, estimate_rates, make_plan, square_root_rates
from bridge.sync.rates import HALF_LIFE_SECONDS, observe
from bridge.sync.scheduler import DueQueue
from bridge.sync.status import FeedStatus, PollStatusStore
from bridge.testing.settings import fast_settings

HOUR = 3600.0


def settings(**overrides: object) -> Settings:
    return Settings(**{"school_poll_seconds": 300.0, "poll_jitter_seconds": 30.0, **overrides})  # type: ignore[arg-type]


def learned(pages: int, per_hour: float, *, hours: float = 24 * 14, now: float = 0.0) -> FeedStatus:
    """A feed watched for `hours`, having found `per_hour` changes an hour: its history says so exactly."""
    return FeedStatus(
        resource="learners",
        pages=pages,
        decayed_changes=per_hour * hours,
        decayed_seconds=hours * HOUR,
        decayed_at=now,
        last_due=now - 60,
        last_started=now - 60,
    )


def poisson(rng: random.Random, mean: float) -> int:
    """A Poisson draw (exponential gaps), for synthetic histories."""
    count, total = 0, rng.expovariate(1.0)
    while total < mean:
        count += 1
        total += rng.expovariate(1.0)
    return count


def test_while_the_budget_covers_every_feed_at_its_target_nothing_changes() -> None:
    states = {(s, "learners"): learned(20, 5.0 if s == 1 else 0.01) for s in range(1, 41)}
    plan = make_plan(settings(d6_max_rps=10.0), states, now=0.0)  # 40 x 20 pages / 300 s = 2.7 rps
    assert not plan.binding
    assert set(plan.intervals.values()) == {300.0}
    planner = Planner(settings(d6_max_rps=10.0))
    planner.update(states, now=0.0)
    assert planner.handed_out((1, "learners"), 123.0, now=500.0) == 123.0  # due times as ever
    assert planner.due("learners", states[(1, "learners")], now=0.0) is None  # the fixed due rule applies


def test_when_the_budget_binds_rates_follow_the_square_root_rule_within_it() -> None:
    rng = random.Random(3)
    states = {
        (s, "learners"): learned(rng.randint(5, 40), rate)
        for s, rate in enumerate([20.0 / r for r in range(1, 301)], start=1)  # Zipf(1) over 300 schools
    }
    plan = make_plan(settings(d6_max_rps=10.0, integrations_poll_seconds=60.0), states, now=0.0)
    assert plan.binding and plan.demand > plan.budget
    costs = {f: float(s.pages or 0) for f, s in states.items()}
    spent = sum(costs[f] / plan.intervals[f] for f in states)
    assert math.isclose(spent, (10.0 - 6 / 60) * 0.95, rel_tol=1e-9)
    # Unclamped feeds: interval x sqrt(rate / cost) is one constant.
    constants = [
        plan.intervals[f] * math.sqrt((plan.rates[f] or 0) / costs[f])
        for f in states
        if 300.0 < plan.intervals[f] < 0.9 * 86400
    ]
    assert len(constants) > 200 and max(constants) / min(constants) < 1 + 1e-9
    # No feed faster than its target, none slower than 90% of BRIDGE_MAX_POLL_SECONDS.
    assert min(plan.intervals.values()) >= 300.0 and max(plan.intervals.values()) <= 0.9 * 86400 + 1e-6
    # The optimum beats a uniform round at the same budget on the planned mean lag.
    uniform = sum(costs.values()) / plan.budget
    assert (plan.expected_lag() or 0) < 0.75 * uniform / 2


def test_quiet_feeds_rest_at_the_floor_and_busy_ones_at_their_target() -> None:
    states = (
        {(1, "learners"): learned(10, 500.0)}
        | {(s, "learners"): learned(30, 5.0) for s in range(2, 52)}
        | {(s, "learners"): learned(30, 0.0) for s in range(52, 352)}
    )
    plan = make_plan(settings(d6_max_rps=1.0, max_poll_seconds=20000.0), states, now=0.0)
    assert plan.binding
    assert plan.intervals[(1, "learners")] == 300.0  # never faster than the target
    assert 300.0 < plan.intervals[(2, "learners")] < 0.9 * 20000.0
    assert {plan.intervals[(s, "learners")] for s in range(52, 352)} == {0.9 * 20000.0}  # the floor
    spent = sum((states[f].pages or 0) / interval for f, interval in plan.intervals.items())
    assert math.isclose(spent, plan.budget, rel_tol=1e-9)


def test_the_square_root_sweep_is_exact() -> None:
    rng = random.Random(5)
    for _ in range(200):
        n = rng.randint(1, 30)
        weights = [rng.choice([0.0, rng.random(), rng.random() * 100]) for _ in range(n)]
        costs = [rng.uniform(1, 50) for _ in range(n)]
        low = [rng.uniform(0.0, 0.01) for _ in range(n)]
        high = [lo + rng.uniform(0.0, 1.0) for lo in low]
        budget = rng.uniform(0, 1.2) * sum(c * h for c, h in zip(costs, high, strict=True))
        rates = square_root_rates(weights, costs, low, high, budget)
        assert all(lo - 1e-12 <= f <= hi + 1e-12 for f, lo, hi in zip(rates, low, high, strict=True))
        spent = sum(c * f for c, f in zip(costs, rates, strict=True))
        floor = sum(c * lo for c, lo in zip(costs, low, strict=True))
        reachable = floor + sum(
            c * (h - lo) for c, h, lo, w in zip(costs, high, low, weights, strict=True) if w
        )
        between = [f / w for f, lo, hi, w in zip(rates, low, high, weights, strict=True) if w and lo < f < hi]
        assert not between or max(between) / min(between) < 1 + 1e-9  # one `a` for all: the square-root rule
        ceiling = sum(c * h for c, h in zip(costs, high, strict=True))
        expected = ceiling if budget >= ceiling else min(max(budget, floor), reachable)
        assert math.isclose(spent, expected, rel_tol=1e-9, abs_tol=1e-12)


def test_a_feed_without_history_is_planned_at_the_fixed_rate() -> None:
    states = {(s, "learners"): learned(20, 1.0 / s) for s in range(1, 200)}
    states[(500, "learners")] = FeedStatus(resource="learners", pages=20)  # one scan: a baseline, no rate
    states[(501, "learners")] = FeedStatus(resource="learners")  # never polled: cost as its resource's
    plan = make_plan(settings(d6_max_rps=2.0), states, now=0.0)
    assert plan.binding
    fixed = 20 * 201 / plan.budget
    assert plan.intervals[(500, "learners")] == plan.intervals[(501, "learners")] == fixed
    assert plan.rates[(500, "learners")] is None


def test_the_estimate_converges_on_irregular_polls_and_follows_a_change_of_rate() -> None:
    rng = random.Random(11)
    window = HALF_LIFE_SECONDS / math.log(2) / HOUR  # the decayed sums' time constant, in hours
    for true_per_hour in (0.5, 3.0, 40.0):
        summed = seconds = 0.0
        at = None
        now = 0.0
        for _ in range(400):
            interval = rng.uniform(0.2, 6.0) * HOUR
            now += interval
            found = poisson(rng, true_per_hour * interval / HOUR)
            summed, seconds = observe(summed, seconds, at, interval, found, now)
            at = now
        status = FeedStatus(
            resource="debtors", decayed_changes=summed, decayed_seconds=seconds, decayed_at=at
        )
        rate = (estimate(status, now) or 0.0) * HOUR
        standard_error = math.sqrt(2 / (true_per_hour * window))  # relative, with exponential weights
        assert abs(rate / true_per_hour - 1) < 3 * standard_error, (true_per_hour, rate)
    # A busy feed that goes quiet (holidays) is believed quiet within a few half-lives.
    summed, seconds, at, now = 0.0, 0.0, None, 0.0
    for hours, per_hour in ((24 * 60, 10.0), (24 * 21, 0.1)):
        for _ in range(int(hours)):
            now += HOUR
            summed, seconds = observe(summed, seconds, at, HOUR, poisson(rng, per_hour), now)
            at = now
    status = FeedStatus(resource="debtors", decayed_changes=summed, decayed_seconds=seconds, decayed_at=at)
    assert (estimate(status, now) or 0.0) * HOUR < 10.0 * 0.5 ** (21 * 86400 / HALF_LIFE_SECONDS) * 1.5


def test_little_history_leans_on_the_school_then_the_resource_and_much_history_on_itself() -> None:
    def feed(resource: str, per_hour: float, hours: float) -> FeedStatus:
        return msgspec.structs.replace(learned(20, per_hour, hours=hours), resource=resource)

    states = {(s, "learners"): feed("learners", 1.0, 24 * 14) for s in range(1, 100)}
    states |= {(s, "debtors"): feed("debtors", 1.0, 24 * 14) for s in range(1, 100)}
    states |= {
        (200, "debtors"): feed("debtors", 20.0, 24 * 14),  # a busy school ...
        (200, "learners"): feed("learners", 0.0, 1.0),  # ... whose learners were quiet for one hour
        (300, "debtors"): feed("debtors", 0.01, 24 * 14),  # a quiet school ...
        (300, "learners"): feed("learners", 0.0, 1.0),  # ... the same hour
    }
    rates = {f: (r or 0.0) * HOUR for f, r in estimate_rates(states, now=0.0).items()}
    assert rates[(200, "learners")] > 5 * rates[(300, "learners")] > 0  # the school's activity counts
    assert abs(rates[(50, "learners")] - 1.0) < 0.05  # an average feed with two weeks of history
    assert abs(rates[(200, "debtors")] / 20.0 - 1) < 0.05  # much history: its own rate


def test_the_plan_orders_the_queue_by_turns_forced_and_new_first() -> None:
    """Stride order: a feed's turn is its last due time plus its planned interval; forced, then never
    polled, first; and the poll records its turn as its due time."""
    now = 10_000.0
    states = {
        (1, "learners"): learned(10, 30.0, now=now),  # busy: short interval
        (2, "learners"): learned(10, 0.1, now=now),  # quiet: long interval
        (3, "learners"): FeedStatus(resource="learners"),  # never polled
    } | {(s, "learners"): learned(10, 0.5, now=now) for s in range(4, 200)}
    planner = Planner(settings(d6_max_rps=1.0))
    plan = planner.update(states, now)
    assert plan.binding
    assert plan.intervals[(1, "learners")] < plan.intervals[(2, "learners")]
    queue: DueQueue[Feed] = DueQueue(clock=lambda: now)
    queue.turn = planner.turn
    for feed in ((1, "learners"), (2, "learners"), (3, "learners"), (4, "learners")):
        queue.put(feed, now - 3000)
    queue.put((5, "learners"), now, force=True)
    order = [taken[0] for taken in iter(queue.take, None)]
    assert order[:3] == [(5, "learners"), (3, "learners"), (1, "learners")]
    assert order.index((4, "learners")) < order.index((2, "learners"))
    due = planner.handed_out((1, "learners"), now - 3000, now + 10_000)
    assert due == now - 60 + plan.intervals[(1, "learners")]
    assert planner.turn((1, "learners")) == due + plan.intervals[(1, "learners")]  # late: it catches up
    # Taken again before the due check allows (target less tolerance after its start): it keeps its turn.
    planner.handed_out((1, "learners"), now, now + 10_000 + 300 - 32)
    assert planner.turn((1, "learners")) == due + plan.intervals[(1, "learners")]
    planner.handed_out((1, "learners"), now, now + 10_000 + 300 - 31)
    assert planner.turn((1, "learners")) == due + 2 * plan.intervals[(1, "learners")]


def test_replicas_derive_the_same_plan_from_the_same_state() -> None:
    rng = random.Random(2)
    states = {
        (s, r): learned(rng.randint(1, 40), rng.expovariate(1.0)) for s in range(50) for r in ("learners",)
    }
    one, two = Planner(settings(d6_max_rps=0.5)), Planner(settings(d6_max_rps=0.5))
    assert one.update(states, 100.0) == two.update(dict(reversed(list(states.items()))), 100.0)
    assert all(one.turn(f) == two.turn(f) for f in states)


def test_while_the_plan_binds_no_replica_polls_a_feed_sooner_than_its_target_after_its_last_start() -> None:
    states = {(s, "learners"): learned(20, 1.0) for s in range(100)}
    planner = Planner(settings(d6_max_rps=0.5))
    planner.update(states, 0.0)
    late = FeedStatus(resource="learners", last_due=-90_000.0, last_started=1000.0)  # polled late, just now
    assert planner.due("learners", late, now=1100.0) is False
    assert planner.due("learners", late, now=1000.0 + 300 - 30 - 1) is True  # target less the tolerance
    assert planner.due("learners", FeedStatus(resource="learners"), now=0.0) is True


def test_fixed_planning_builds_no_planner() -> None:
    fixed = Services.build(fast_settings(redis_url="memory://", poll_planning="fixed"))
    assert fixed.scheduler.planner is None and fixed.poller.planned_due is None
    adaptive = Services.build(fast_settings(redis_url="memory://"))
    assert adaptive.scheduler.planner is not None and adaptive.poller.planned_due is not None
    states = {(s, "learners"): learned(50, 1.0 / (s + 1)) for s in range(2000)}
    assert not make_plan(fast_settings(poll_planning="fixed"), states, 0.0).binding


async def test_each_scan_after_the_first_adds_to_the_feeds_change_history(redis: aioredis.Redis) -> None:
    status = PollStatusStore(redis, Keys("plantest"), ("learners",))
    await status.started(1000, "learners", at=1_000.0)
    assert await status.succeeded(1000, "learners", 120, 3, changes=120) is None  # a baseline: no rate
    first = await status.feed(1000, "learners")
    assert first.scanned_at == 1_000.0 and first.decayed_seconds == 0 and estimate(first, 1_000.0) is None
    await status.started(1000, "learners", at=1_000.0 + HOUR)
    assert await status.succeeded(1000, "learners", 121, 3, changes=4) == HOUR
    await status.started(1000, "learners", at=1_000.0 + 3 * HOUR)
    assert await status.succeeded(1000, "learners", 121, 3, changes=0) == 2 * HOUR
    feed = (await status.feeds_of([(1000, "learners")]))[(1000, "learners")]
    assert feed.changes == 0 and feed.scanned_at == 1_000.0 + 3 * HOUR
    assert math.isclose((estimate(feed, feed.decayed_at or 0.0) or 0.0) * HOUR, 4 / 3, rel_tol=0.01)
    assert (await status.get(1000)).feeds["learners"].decayed_changes == feed.decayed_changes
