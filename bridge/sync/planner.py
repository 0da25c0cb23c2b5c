"""Poll planning (docs/operations.md#the-d6-request-budget): when the d6 budget cannot poll every feed
at its target interval, poll where the changes are.

A change waits, on average, half its feed's interval before a poll sees it. With feed i changing λ_i times
a second, costing c_i requests a poll and polled f_i times a second, the mean detection lag of all changes
is Σ λ_i / (2·f_i) / Σ λ_i, and the budget is Σ c_i·f_i ≤ B. The Lagrange condition of that minimum is
f_i = a·sqrt(λ_i / c_i): the square-root rule (Cho and Garcia-Molina, "Effective page refresh policies for
Web crawlers", ACM TODS 2003). Each rate is kept between 1 / floor and 1 / target: never faster than the
feed's target interval, never slower than `BRIDGE_MAX_POLL_SECONDS` less a tenth for queueing; `a` comes
out exactly from a sweep over the breakpoints of that clamp (`square_root_rates`). While the budget covers
every feed at its target interval the plan is the targets, and nothing differs from `fixed`.

Each feed's change rate is learned from its own scans. A complete scan that follows another is one
observation: the seconds since the previous scan and the changes (events) it found, none included. Their
sums, each weighed down by its age (half after `HALF_LIFE_SECONDS`, so the estimate follows the school
year), give the Poisson maximum-likelihood rate Σ changes / Σ seconds. A crawler only learns whether a page
changed and needs Cho's estimator for that; the bridge counts the changes, and a count does not saturate
on a busy feed whose every scan finds something. Few observations say little (a feed that changes twice a
week shows nothing for days), so the rate planned is the posterior mean of a gamma-Poisson model in two
levels (`estimate_rates`): a school's activity against its resources' mean rates, from all of its feeds,
then the feed against its school's activity. With history the feed's own count dominates; with little, it
leans on its school, then its resource. A feed with none yet (before its second scan) is planned at the
fixed rate: a round of every feed at the budget.

The budget planned is `BRIDGE_D6_MAX_RPS` less the integrations list's share, of which `USABLE_SHARE` (the
budget's wake-up jitter and retries take the rest). The plan sets intervals; the poll queue realises them
in turns: a feed's next turn is the due time its last poll recorded plus its planned interval (stride
scheduling), so when d6 is slower than planned every feed slows in proportion, and a poll that came late
is not followed by a late one. Forced polls go first, then feeds never polled (new schools).

Replicas: every replica reads the same status hashes (`PollStatusStore.feeds_of`) every `refresh_seconds`
and derives the same plan and the same turns from them. The school's lease still lets one replica poll a
feed at a time, and while the plan binds the poller's due check refuses a feed polled less than its target
interval ago by any replica (`Planner.due`), which a replica's plan, at most `refresh_seconds` old, cannot
outrun.
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final

from bridge.sync.due import is_due, soonest
from bridge.sync.rates import HALF_LIFE_SECONDS as HALF_LIFE_SECONDS
from bridge.sync.rates import decay
from bridge.sync.rates import observe as observe

if TYPE_CHECKING:
    from bridge.settings import Settings
    from bridge.sync.status import FeedStatus, PollStatusStore

Feed = tuple[int, str]
"""(school id, resource name)."""

SCHOOL_PRIOR: Final = 2.0
"""Pseudo-changes a school's activity starts from, at its resources' mean rates: gamma shape 2, so a
school that shows nothing for a while looks quieter, but a quiet night does not make it silent (on the
Zipf(1) population of bench/freshness.py, 2 gave the lowest mean lag and a p95 below `fixed`'s; 0.5 gave
a mean lag 1 to 4% longer and a p95 7% above `fixed`'s: bench/RESULTS.md section 5)."""
FEED_PRIOR: Final = 4.0
"""Pseudo-changes a feed's rate starts from, at its school's activity: a school's feeds are busy alike."""
USABLE_SHARE: Final = 0.95
"""Of the budget left by the integrations list, the share the plan spends."""
FLOOR_SHARE: Final = 0.9
"""Feeds are planned at most this share of `BRIDGE_MAX_POLL_SECONDS` apart: the rest absorbs queueing."""
INTEGRATIONS_PAGE: Final = 50
MAX_REFRESH_SECONDS: Final = 30.0


def history(status: FeedStatus, now: float) -> tuple[float, float] | None:
    """The feed's decayed (changes, seconds) as of `now`; None while it has no observation."""
    if status.decayed_seconds <= 0 or status.decayed_at is None:
        return None
    weight = decay(now - status.decayed_at)
    return status.decayed_changes * weight, status.decayed_seconds * weight


def estimate(status: FeedStatus, now: float) -> float | None:
    """The feed's own maximum-likelihood change rate (changes a second); None while it has no observation."""
    found = history(status, now)
    return None if found is None else found[0] / found[1]


def estimate_rates(states: Mapping[Feed, FeedStatus], now: float) -> dict[Feed, float | None]:
    """Every feed's planned change rate: the posterior mean in two gamma-Poisson levels.

    m_r, a resource's mean rate over its feeds; u_s, a school's activity: (Σ changes + SCHOOL_PRIOR) /
    (Σ m_r·seconds + SCHOOL_PRIOR) over its feeds; then a feed's rate, with p = m_r·u_s:
    p·(changes + FEED_PRIOR) / (p·seconds + FEED_PRIOR). None for a feed without history.
    """
    seen = {f: found for f, s in states.items() if (found := history(s, now)) is not None}
    totals: dict[str, list[float]] = {}
    for (_, resource), (changes, seconds) in seen.items():
        both = totals.setdefault(resource, [0.0, 0.0])
        both[0] += changes
        both[1] += seconds
    means = {resource: changes / seconds for resource, (changes, seconds) in totals.items()}
    schools: dict[int, list[float]] = {}
    for (school_id, resource), (changes, seconds) in seen.items():
        both = schools.setdefault(school_id, [SCHOOL_PRIOR, SCHOOL_PRIOR])
        both[0] += changes
        both[1] += means[resource] * seconds
    rates: dict[Feed, float | None] = dict.fromkeys(states)
    for feed, (changes, seconds) in seen.items():
        school_changes, school_expected = schools[feed[0]]
        prior = means[feed[1]] * school_changes / school_expected
        rates[feed] = prior * (changes + FEED_PRIOR) / (prior * seconds + FEED_PRIOR)
    return rates


def square_root_rates(
    weights: Sequence[float],
    costs: Sequence[float],
    low: Sequence[float],
    high: Sequence[float],
    budget: float,
) -> list[float]:
    """Poll rates f_i = clamp(a·w_i, low_i, high_i) with Σ c_i·f_i = budget, where w_i = sqrt(λ_i / c_i).

    The spend Σ c_i·f_i grows piecewise linearly with a: each feed is held at `low` until a·w_i reaches it,
    then rises, then is held at `high`. Walking the breakpoints in order finds the segment that spends the
    budget, and `a` on it. If even `low` overspends, `low`; if `high` underspends, `high`.
    """
    n = len(weights)
    const = sum(costs[i] * low[i] for i in range(n))  # the spend of the feeds held at a bound
    if const >= budget:
        return list(low)
    if sum(costs[i] * high[i] for i in range(n)) <= budget:
        return list(high)
    points: list[tuple[float, int, int]] = []
    for i in range(n):
        if weights[i] > 0:
            points.append((low[i] / weights[i], 0, i))  # starts to rise
            points.append((high[i] / weights[i], 1, i))  # reaches its high
    points.sort()
    slope = 0.0  # Σ c_i·w_i of the feeds in between
    a = math.inf
    for point, kind, i in points:
        if slope > 0 and const + slope * point >= budget:
            a = (budget - const) / slope
            break
        if kind == 0:
            const -= costs[i] * low[i]
            slope += costs[i] * weights[i]
        else:
            slope -= costs[i] * weights[i]
            const += costs[i] * high[i]
    return [min(high[i], max(low[i], a * weights[i])) for i in range(n)]


@dataclass(frozen=True)
class Plan:
    """The planned interval of every feed, and what it was planned from."""

    at: float = 0.0
    binding: bool = False
    """False while the budget covers every feed at its target interval: then every interval is the target."""
    budget: float = 0.0
    """Requests a second the plan may spend."""
    demand: float = 0.0
    """Requests a second every feed at its target interval would take."""
    fixed_interval: float = 0.0
    """A round of every feed at the budget: the interval of a feed with no history while the plan binds."""
    intervals: Mapping[Feed, float] = field(default_factory=dict)
    rates: Mapping[Feed, float | None] = field(default_factory=dict)
    """The change rates (a second) planned with; None: no history yet."""

    def expected_lag(self, feeds: Sequence[Feed] | None = None) -> float | None:
        """The mean detection lag of a change the plan expects: Σ λ·P/2 / Σ λ (None without rates)."""
        rated = [(r, self.intervals[f]) for f in feeds or self.intervals if (r := self.rates.get(f))]
        total = sum(r for r, _ in rated)
        return sum(r * p / 2 for r, p in rated) / total if total > 0 else None


def make_plan(
    settings: Settings,
    states: Mapping[Feed, FeedStatus],
    now: float,
    rates: Mapping[Feed, float] | None = None,
) -> Plan:
    """The plan for these feeds from their status (cost: pages of the last scan; rate: `estimate`).
    `rates` replaces the estimates (the benchmark's optimum plans with the true rates)."""
    states = {f: states[f] for f in sorted(states)}  # the same sums in every replica, to the last bit
    feeds = list(states)
    targets = {f: settings.feed_interval(f[1]) for f in feeds}
    costs = _costs(states)
    schools = len({school_id for school_id, _ in feeds})
    integrations = math.ceil(schools / INTEGRATIONS_PAGE) / settings.integrations_poll_seconds
    budget = max(settings.d6_max_rps - integrations, 0.0) * USABLE_SHARE
    demand = sum(costs[f] / targets[f] for f in feeds)
    planned = estimate_rates(states, now) if rates is None else {f: rates.get(f) for f in feeds}
    if settings.poll_planning != "adaptive" or demand <= budget or budget <= 0:
        return Plan(now, False, budget, demand, 0.0, dict(targets), planned)
    fixed = sum(costs.values()) / budget
    floors = {f: max(targets[f], FLOOR_SHARE * settings.max_poll_seconds) for f in feeds}
    intervals = {f: min(max(fixed, targets[f]), floors[f]) for f in feeds if planned[f] is None}
    left = budget - sum(costs[f] / intervals[f] for f in intervals)
    learned = [f for f in feeds if planned[f] is not None]
    if learned and left > 0:
        frequencies = square_root_rates(
            [math.sqrt((planned[f] or 0.0) / costs[f]) for f in learned],
            [costs[f] for f in learned],
            [1 / floors[f] for f in learned],
            [1 / targets[f] for f in learned],
            left,
        )
        intervals.update((f, 1 / rate) for f, rate in zip(learned, frequencies, strict=True))
    else:  # nothing left for them: they take turns at the fixed rate too
        intervals.update((f, max(fixed, targets[f])) for f in learned)
    return Plan(now, True, budget, demand, fixed, intervals, planned)


def _costs(states: Mapping[Feed, FeedStatus]) -> dict[Feed, float]:
    """Pages of each feed's last scan; before its first, the mean of its resource's (else one page)."""
    known: dict[str, list[float]] = {}
    for (_, resource), status in states.items():
        if status.pages is not None:
            known.setdefault(resource, []).append(max(1.0, status.pages))
    means = {resource: statistics.fmean(pages) for resource, pages in known.items()}
    return {f: max(1.0, s.pages) if s.pages is not None else means.get(f[1], 1.0) for f, s in states.items()}


class Planner:
    """One process' plan and turns. `refresh` (or `update`, given the states) replaces the plan; the
    scheduler asks it for each feed's turn while the plan binds, and the poller for its due check."""

    def __init__(self, settings: Settings, status: PollStatusStore | None = None) -> None:
        self.settings = settings
        self.status = status
        self.plan = Plan()
        self._last: dict[Feed, tuple[float, float]] = {}
        """The due time and the start of each feed's last poll, by any replica (read) or this one (handed
        out)."""
        shortest = min((settings.feed_interval(r) for r in settings.resources), default=1.0)
        self.refresh_seconds = min(MAX_REFRESH_SECONDS, max(0.5, shortest / 4))
        """How often the plan is derived again: well within a target interval (see `due`)."""

    @property
    def binding(self) -> bool:
        return self.plan.binding

    async def refresh(self, feeds: Sequence[Feed]) -> Plan:
        if self.status is None:
            raise RuntimeError("a Planner without a status store is updated with `update`")
        return self.update(await self.status.feeds_of(feeds), time.time())

    def update(
        self, states: Mapping[Feed, FeedStatus], now: float, rates: Mapping[Feed, float] | None = None
    ) -> Plan:
        """Plan from the feeds' states (every active feed) and learn when each was last polled."""
        last = {}
        for feed, status in states.items():
            started = status.last_started if status.last_started is not None else status.last_due
            due = status.last_due if status.last_due is not None else started
            mine = self._last.get(feed)
            if due is not None and started is not None:
                last[feed] = (max(due, mine[0]), max(started, mine[1])) if mine else (due, started)
            elif mine is not None:
                last[feed] = mine
        self._last = last
        self.plan = make_plan(self.settings, states, now, rates)
        return self.plan

    def interval(self, feed: Feed) -> float:
        """The planned interval of a feed (its target while the plan does not bind or before it knows it)."""
        planned = self.plan.intervals.get(feed)
        if planned is not None:
            return planned
        target = self.settings.feed_interval(feed[1])
        return max(target, self.plan.fixed_interval) if self.plan.binding else target

    def rate(self, feed: Feed) -> float | None:
        return self.plan.rates.get(feed)

    def turn(self, feed: Feed) -> float:
        """When the feed is due by the plan: its last due time plus its planned interval (-inf: never
        polled). A feed that fell behind keeps its earlier turns (stride scheduling): it goes before feeds
        that are less behind, so shares hold when the budget falls short."""
        last = self._last.get(feed)
        return -math.inf if last is None else last[0] + self.interval(feed)

    def handed_out(self, feed: Feed, due_at: float, now: float) -> float:
        """A worker takes the feed: the due time its poll records (its turn while the plan binds). A feed
        that the due check will refuse (polled too recently) keeps its turn for the next time."""
        if not self.plan.binding:
            return due_at
        turn = self.turn(feed)
        due = min(turn, now) if turn > -math.inf else min(due_at, now)
        last = self._last.get(feed)
        if last is None or now >= last[1] + soonest(self.settings, feed[1]):
            self._last[feed] = (due, now)
        return due

    def due(self, resource: str, status: FeedStatus, now: float) -> bool | None:
        """The poller's due check while the plan binds: not within the target interval (less the
        tolerance) of the feed's last start, by any replica. None: the plan does not bind, the fixed rule
        applies."""
        if not self.plan.binding:
            return None
        return is_due(self.settings, resource, status, now, planned=True)
