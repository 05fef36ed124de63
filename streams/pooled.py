"""The pooled per-version stage: one version's claims tested on the counts of all its sites.

A version regression is a fleet-wide event, but a per-site stream needs its own evidence: at
a site seeing forty cases a day a drop takes a week or more to show. :class:`PooledMonitor`
tests one (device, version, task) on the sum of its sites' confusion counts. A drop every site
shares is found in a fraction of the time (ten sites at sensitivity 0.74, acceptable 0.818,
eight labelled positives a day each: median 4 days against 10.5 for the first of the ten site
streams, ``tests/streams/test_pooled.py``); a drop at one site only is diluted by the others,
and that site's own stream is what finds it.

Input: each site stream's *cumulative* counts (:class:`~postmarket.contracts.VersionTally`,
sent by the join whenever the stream's outcomes change). :class:`PooledCounts` keeps
each site's latest tally and the increment a newer one brings; a tally whose sequence (the
stream's outcome count, never reset) is not above the kept one changes nothing, so tallies
sent again after a crash, duplicated or read out of order never count twice, and the pooled
counts are always the sum of the sites' latest tallies.

Tests, per claimed metric, at the same acceptable and rejectable levels as the site streams
(:func:`streams.charted_claims.design_levels`):

- the anytime-valid claims test (:class:`~detectors.BetaBinomialConfidenceSequence`, one-sided
  at the acceptable level) on the pooled counts. Its evidence depends on the cumulative counts
  alone and Ville's inequality holds at every stopping time, so looking once per increment
  keeps its ``alpha`` (restarted each surveillance year, as the site streams' are);
- a multi-chart Bernoulli CUSUM (:func:`streams.detector_design.labelled_chart`, the site
  streams' chart) fed each increment as one binomial batch
  (:meth:`~detectors.BernoulliMultiCUSUM.update_counts`). Not the increment's cases one by one
  in a canonical order: putting a batch's adverse events last (or first) gives the largest
  path a case-by-case chart could take, not a random one, so its false-alarm rate would
  exceed the design. The batched statistic is never above what the case-by-case chart holds
  after the same cases in the order they happened, so it alarms no earlier: its in-control
  ARL (in charted cases) is at least the designed ARL0, for every mix of sites each at or
  above the acceptable level (independent cases, each adverse with probability at most the
  acceptable rate: the run length only grows as the rate falls).

What the guarantees assume: the sites' cases are independent given their rates, every
outcome a site counted reaches the pooled counts (the latest tally of each site is kept, and
a restarted worker sends every stream's tally again), and the acceptable level is the one the
claims set (each site at or above it; no site needs to be at it).

A pooled CUSUM's signal says when the change began, to the resolution of the increments
(:attr:`PooledMonitor.change_starts`).

Each pooled chart's ARL0 and claims test's alpha are its parts of the fleet budget
(:mod:`streams.false_alarm_budget`): a pooled chart charts about ``K / G`` sites' cases, so
its ARL0 is that many times a site chart's, in the same units.
"""

from __future__ import annotations

import functools
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime
from typing import Any, NamedTuple

from detectors import BernoulliMultiCUSUM, BetaBinomialConfidenceSequence, Detector, StateError
from postmarket.claim_levels import ChartLevels
from postmarket.contracts.events import StreamKey
from postmarket.contracts.pooled import VersionTally
from streams.change_start import firing_run_start, runs_started
from streams.charted_claims import design_levels
from streams.detector_design import labelled_chart
from streams.false_alarm_budget import Unit
from streams.monitor_policy import (
    CHARTED_METRICS,
    SURVEILLANCE_YEAR,
    TESTS_PER_STREAM,
    ClaimedMetric,
    MonitorPolicy,
)
from streams.stream_monitor import Signal

STATE_VERSION = 1
POOLED_SITE = "all-sites"
"""The site of a pooled alert's stream key: the alert is about the version at every site
(the contributing ones are listed in its message and evidence)."""
POOLED_DETECTOR_PREFIX = "pooled_"
"""Pooled detectors are named like the site streams', with this prefix
(``pooled_sensitivity_cusum``), so an alert says which stage raised it."""


class SiteTally(NamedTuple):
    """One site stream's latest cumulative counts."""

    sequence: int
    counts: tuple[int, int, int, int]
    """(tp, fn, tn, fp)."""
    first_case_time: datetime
    last_case_time: datetime

    @classmethod
    def of(cls, tally: VersionTally) -> SiteTally:
        return cls(tally.sequence, tally.counts, tally.first_case_time, tally.last_case_time)


class Increment(NamedTuple):
    """What a newer tally of one site adds: its counts' growth."""

    true_positives: int
    false_negatives: int
    true_negatives: int
    false_positives: int

    def charted(self, metric: ClaimedMetric) -> tuple[int, int]:
        """(cases, adverse events) of ``metric``: misses among positives for sensitivity,
        false positives among negatives for specificity."""
        if metric == "sensitivity":
            return self.true_positives + self.false_negatives, self.false_negatives
        return self.true_negatives + self.false_positives, self.false_positives


@dataclass
class PooledCounts:
    """Each contributing site's latest cumulative tally; the pooled counts are their sum.

    >>> from datetime import UTC, datetime
    >>> t = datetime(2026, 1, 1, tzinfo=UTC)
    >>> pooled = PooledCounts()
    >>> pooled.apply("site-a", SiteTally(3, (1, 1, 1, 0), t, t))
    Increment(true_positives=1, false_negatives=1, true_negatives=1, false_positives=0)
    >>> pooled.apply("site-a", SiteTally(3, (1, 1, 1, 0), t, t)) is None  # sent again
    True
    >>> pooled.apply("site-b", SiteTally(2, (0, 1, 1, 0), t, t)).false_negatives
    1
    >>> pooled.totals()
    (1, 2, 2, 0)
    """

    sites: dict[str, SiteTally] = field(default_factory=dict)

    def apply(self, site: str, tally: SiteTally) -> Increment | None:
        """Keep ``tally`` as the site's latest and return what it adds, or None (changing
        nothing) when the site's kept tally is as recent. Raises ValueError on a newer
        tally with fewer of some count: cumulative counts never fall."""
        kept = self.sites.get(site)
        if kept is not None and tally.sequence <= kept.sequence:
            return None
        before = kept.counts if kept is not None else (0, 0, 0, 0)
        growth = Increment(*(new - old for new, old in zip(tally.counts, before, strict=True)))
        if min(growth) < 0 or sum(tally.counts) != tally.sequence:
            raise ValueError(
                f"tally {tally.sequence} of {site} has counts {tally.counts}, not cumulative "
                f"from {before}"
            )
        self.sites[site] = tally
        return growth

    def totals(self) -> tuple[int, int, int, int]:
        """(tp, fn, tn, fp) summed over the sites' latest tallies."""
        sums = [0, 0, 0, 0]
        for tally in self.sites.values():
            for cell, count in enumerate(tally.counts):
                sums[cell] += count
        return sums[0], sums[1], sums[2], sums[3]

    @property
    def outcomes(self) -> int:
        return sum(tally.sequence for tally in self.sites.values())

    def case_times(self) -> tuple[datetime, datetime] | None:
        """The earliest and latest case any site's counts include."""
        if not self.sites:
            return None
        first = min(tally.first_case_time for tally in self.sites.values())
        return first, max(tally.last_case_time for tally in self.sites.values())

    def to_state(self) -> dict[str, list[Any]]:
        return {
            site: [t.sequence, list(t.counts), _iso(t.first_case_time), _iso(t.last_case_time)]
            for site, t in sorted(self.sites.items())
        }

    @classmethod
    def from_state(cls, state: dict[str, list[Any]]) -> PooledCounts:
        sites = {}
        for site, (sequence, counts, first, last) in state.items():
            tally = SiteTally(sequence, _counts(counts), _time(first), _time(last))
            if not (type(sequence) is int and sequence == sum(tally.counts) >= 1):
                raise ValueError(f"site {site!r}: sequence {sequence!r} is not its outcome count")
            if tally.first_case_time > tally.last_case_time:
                raise ValueError(f"site {site!r}: first case after last")
            sites[site] = tally
        return cls(sites)


def _counts(values: Any) -> tuple[int, int, int, int]:
    if not (isinstance(values, list) and len(values) == 4):
        raise ValueError(f"counts must be [tp, fn, tn, fp], got {values!r}")
    if not all(type(v) is int and v >= 0 for v in values):
        raise ValueError(f"counts must be non-negative integers, got {values!r}")
    return values[0], values[1], values[2], values[3]


def _iso(time: datetime) -> str:
    return time.isoformat()


def _time(text: Any) -> datetime:
    if not isinstance(text, str):
        raise ValueError(f"a case time must be an ISO string, got {text!r}")
    time = datetime.fromisoformat(text)
    if time.tzinfo is None:
        raise ValueError(f"case time {text!r} has no time zone")
    return time


def version_tally(
    stream: StreamKey,
    counts: tuple[int, int, int, int],
    first_case_time: datetime | None,
    last_case_time: datetime | None,
) -> VersionTally | None:
    """A site stream's cumulative tally (its outcome count as the sequence), or None before
    its first outcome."""
    if sum(counts) == 0 or first_case_time is None or last_case_time is None:
        return None
    tp, fn, tn, fp = counts
    return VersionTally(
        stream=stream,
        sequence=sum(counts),
        true_positives=tp,
        false_negatives=fn,
        true_negatives=tn,
        false_positives=fp,
        first_case_time=first_case_time,
        last_case_time=last_case_time,
    )


def tally_of_labelled_state(stream: StreamKey, state: dict[str, Any]) -> VersionTally | None:
    """The tally of a stream's labelled table state (:meth:`StreamMonitor.labelled_state`):
    what was sent with it, sent again after a restart in case it was lost in a crash."""
    first, last = state.get("first_case_time"), state.get("last_case_time")
    return version_tally(
        stream,
        _counts(state["counts"]),
        _time(first) if first else None,
        _time(last) if last else None,
    )


def pooled_test_arl0(policy: MonitorPolicy, unit: Unit, prevalence: float | None) -> float:
    """A pooled chart's in-control ARL in ``unit``: its part of the fleet budget spent on a
    group's sites' cases (``arl0_cases`` without a budget, as a site chart)."""
    budget = policy.budget()
    if budget is None:
        return policy.arl0_cases
    return budget.pooled_arl0(unit, prevalence or policy.planned_prevalence, TESTS_PER_STREAM)


class PooledDesign(NamedTuple):
    detectors: dict[str, Detector]
    levels: dict[ClaimedMetric, ChartLevels]
    unmonitored: dict[ClaimedMetric, str]


@functools.lru_cache(maxsize=256)
def _chart_settings(acceptable: float, rejectable: float, arl0: float) -> dict[str, Any]:
    return labelled_chart(acceptable, rejectable, arl0).settings()


def design_pooled(
    claims: dict[ClaimedMetric, float],
    lower_bounds: dict[ClaimedMetric, float],
    policy: MonitorPolicy,
    prevalence: float | None,
) -> PooledDesign:
    """Per claimed metric a pooled CUSUM and claims test at the site streams' levels; a metric
    no chart can monitor is left out with why (its site streams raise it, once each)."""
    levels, unmonitored = design_levels(claims, lower_bounds, policy)
    detectors: dict[str, Detector] = {}
    for metric, level in sorted(levels.items()):
        unit: Unit = "positives" if metric == "sensitivity" else "negatives"
        try:
            arl0 = pooled_test_arl0(policy, unit, prevalence)
            chart = BernoulliMultiCUSUM(**_chart_settings(level.acceptable, level.rejectable, arl0))
            claims_test = BetaBinomialConfidenceSequence(
                1.0 - level.acceptable, policy.test_alpha(), alternative="greater"
            )
        except ValueError as error:
            unmonitored[metric] = f"pooled {metric} chart cannot be designed: {error}"
            continue
        detectors[pooled_name(metric, "cusum")] = chart
        detectors[pooled_name(metric, "claims_test")] = claims_test
    kept = {metric: levels[metric] for metric in levels if metric not in unmonitored}
    return PooledDesign(detectors, kept, unmonitored)


def pooled_name(metric: ClaimedMetric, kind: str) -> str:
    return f"{POOLED_DETECTOR_PREFIX}{metric}_{kind}"


@dataclass
class PooledMonitor:
    """The pooled counts and tests of one (device, version, task).

    Five sites at a sensitivity of 0.74 against a claim of 0.872 (lower bound 0.818), each
    sending its cumulative counts every ten positives (the sites' tallies interleave):

    >>> import numpy as np
    >>> from datetime import UTC, datetime
    >>> from postmarket.contracts import StreamKey, VersionTally
    >>> rng = np.random.default_rng(7)
    >>> pooled = PooledMonitor.for_claims({"sensitivity": 0.872}, {"sensitivity": 0.818},
    ...                                   MonitorPolicy(arl0_cases=20_000))
    >>> t = datetime(2026, 3, 1, tzinfo=UTC)
    >>> counts = {site: [0, 0] for site in "abcde"}
    >>> def tally(site):
    ...     tp, fn = counts[site]
    ...     stream = StreamKey(device_id="dr", device_version="2.2.0.0",
    ...                        site_id=f"site-{site}", task="dr")
    ...     return VersionTally(stream=stream, sequence=tp + fn, true_positives=tp,
    ...                         false_negatives=fn, true_negatives=0, false_positives=0,
    ...                         first_case_time=t, last_case_time=t)
    >>> fired = []
    >>> for step in range(60):
    ...     site = "abcde"[step % 5]
    ...     misses = int((rng.random(10) > 0.74).sum())
    ...     counts[site][0] += 10 - misses
    ...     counts[site][1] += misses
    ...     fired += [(s.detector, pooled.outcomes) for s in pooled.observe(tally(site))]
    >>> for detector, outcomes in fired:
    ...     print(f"{detector} after {outcomes} pooled outcomes")
    pooled_sensitivity_claims_test after 150 pooled outcomes
    pooled_sensitivity_cusum after 290 pooled outcomes
    pooled_sensitivity_cusum after 590 pooled outcomes
    >>> pooled.observe(tally("a"))  # the same tally again: nothing counted, nothing raised
    []
    >>> sorted(pooled.counts.sites)
    ['site-a', 'site-b', 'site-c', 'site-d', 'site-e']
    """

    policy: MonitorPolicy = field(default_factory=MonitorPolicy)
    claims: dict[ClaimedMetric, float] = field(default_factory=dict)
    claim_lower_bounds: dict[ClaimedMetric, float] = field(default_factory=dict)
    reference_prevalence: float | None = None
    counts: PooledCounts = field(default_factory=PooledCounts)
    detectors: dict[str, Detector] = field(default_factory=dict)
    levels: dict[ClaimedMetric, ChartLevels] = field(default_factory=dict)
    unmonitored: dict[ClaimedMetric, str] = field(default_factory=dict)
    statistics: dict[str, tuple[float, float]] = field(default_factory=dict)
    """Each detector's latest (statistic, threshold), for metrics."""
    claims_year_start: datetime | None = None
    change_starts: dict[str, list[datetime | None]] = field(default_factory=dict)
    """Per pooled CUSUM, where each of its runs began (None: at zero, or not known): the
    latest case time the increment that started it came after (the previous tally of the
    site that sent it). A signal's :attr:`~streams.stream_monitor.Signal.change_began_at`:
    Page's estimate to the resolution of the sites' tallies, not of cases."""

    @classmethod
    def for_claims(
        cls,
        claims: dict[ClaimedMetric, float],
        lower_bounds: dict[ClaimedMetric, float],
        policy: MonitorPolicy,
        reference_prevalence: float | None = None,
    ) -> PooledMonitor:
        monitor = cls(policy, dict(claims), dict(lower_bounds), reference_prevalence)
        monitor.detectors = monitor._design().detectors
        return monitor

    def _design(self) -> PooledDesign:
        design = design_pooled(
            self.claims, self.claim_lower_bounds, self.policy, self.reference_prevalence
        )
        self.levels, self.unmonitored = design.levels, design.unmonitored
        return design

    def adopt_claims(
        self,
        claims: dict[ClaimedMetric, float],
        lower_bounds: dict[ClaimedMetric, float],
        reference_prevalence: float | None = None,
    ) -> None:
        """Start the tests once the version has registered claims (its counts are kept and
        the tests start from the next increment, as a site stream's do)."""
        if claims and not self.claims:
            self.claims, self.claim_lower_bounds = dict(claims), dict(lower_bounds)
            self.reference_prevalence = reference_prevalence
            self.detectors = self._design().detectors
            self.change_starts = {}

    @property
    def outcomes(self) -> int:
        return self.counts.outcomes

    def observe(self, tally: VersionTally) -> list[Signal]:
        """Keep a site's cumulative tally and test what it adds; a stale one changes nothing."""
        kept = self.counts.sites.get(tally.stream.site_id)
        growth = self.counts.apply(tally.stream.site_id, SiteTally.of(tally))
        if growth is None:
            return []
        # The increment's cases came after what the site's previous tally had counted.
        since = kept.last_case_time if kept is not None else tally.first_case_time
        self._follow_surveillance_year(tally.last_case_time)
        signals: list[Signal] = []
        for metric in CHARTED_METRICS:
            cases, events = growth.charted(metric)
            if cases == 0:
                continue
            signals += self._update_chart(metric, cases, events, since)
            signals += self._update(metric, "claims_test", cases, events)
        return signals

    def _update_chart(
        self, metric: ClaimedMetric, cases: int, events: int, since: datetime
    ) -> list[Signal]:
        """:meth:`_update` of a pooled CUSUM, following when each of its runs began, to the
        increment: a run that leaves zero on an increment began with its cases, counted
        after ``since`` (see :attr:`change_starts`)."""
        name = pooled_name(metric, "cusum")
        chart = self.detectors.get(name)
        if not isinstance(chart, BernoulliMultiCUSUM):
            return self._update(metric, "cusum", cases, events)
        before = chart.run_lengths
        starts = self.change_starts.pop(name, [None] * len(before))
        signals = self._update(metric, "cusum", cases, events)
        if signals:  # the chart restarted: every run is over
            run = signals[0].result.run_length
            began = firing_run_start(run, before, starts, cases, since)
            return [replace(signals[0], change_began_at=began)]
        running = runs_started(before, chart.run_lengths, starts, since)
        if any(running):
            self.change_starts[name] = running
        return signals

    def already_counted(self, tally: VersionTally) -> bool:
        """Whether the site's kept tally is as recent as ``tally`` (a re-send or a late one)."""
        kept = self.counts.sites.get(tally.stream.site_id)
        return kept is not None and tally.sequence <= kept.sequence

    def _update(self, metric: ClaimedMetric, kind: str, cases: int, events: int) -> list[Signal]:
        name = pooled_name(metric, kind)
        detector = self.detectors.get(name)
        if not isinstance(detector, BernoulliMultiCUSUM | BetaBinomialConfidenceSequence):
            return []
        result = detector.update_counts(cases, events)
        self.statistics[name] = (result.statistic, result.threshold)
        if not result.fired:
            return []
        return [Signal(name, metric, result, self.claims.get(metric))]

    def _follow_surveillance_year(self, time: datetime) -> None:
        """Restart the claims tests at each new surveillance year (by the latest case time),
        as the site streams' are: alpha spent once a year, as the budget counts it."""
        if self.claims_year_start is None:
            self.claims_year_start = time
            return
        years = (time - self.claims_year_start) // SURVEILLANCE_YEAR
        if years < 1:
            return
        self.claims_year_start += years * SURVEILLANCE_YEAR
        for metric in self.levels:
            name = pooled_name(metric, "claims_test")
            test = self.detectors.get(name)
            if test is not None:
                test.reset()
                self.statistics.pop(name, None)

    def expected_false_alarms_per_year(self) -> float | None:
        """At most what this group's pooled tests may raise a year in control: one part of
        the fleet budget per test. None without a budget."""
        budget = self.policy.budget()
        if budget is None:
            return None
        return len(self.detectors) * budget.share_per_test(TESTS_PER_STREAM)

    def to_state(self) -> dict[str, Any]:
        """JSON-able state: the sites' latest tallies and the tests' running states (their
        settings follow from the claims and the policy, designed again on load)."""
        return {
            "state_version": STATE_VERSION,
            "policy": _policy_state(self.policy),
            "claims": dict(self.claims),
            "claim_lower_bounds": dict(self.claim_lower_bounds),
            "reference_prevalence": self.reference_prevalence,
            "sites": self.counts.to_state(),
            "detectors": {name: d.to_state()["state"] for name, d in self.detectors.items()},
            "statistics": {name: list(v) for name, v in self.statistics.items()},
            "claims_year_start": _iso(self.claims_year_start) if self.claims_year_start else None,
            "change_starts": {
                name: [_iso(t) if t is not None else None for t in starts]
                for name, starts in self.change_starts.items()
            },
        }

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> PooledMonitor:
        """The monitor a :meth:`to_state` gave. Raises :class:`~detectors.StateError` on a state
        this release cannot read or that is inconsistent (never a half-restored monitor)."""
        try:
            return cls._restore(state)
        except StateError:
            raise
        except (KeyError, TypeError, ValueError) as error:
            raise StateError(f"pooled state refused: {error!r}") from error

    @classmethod
    def _restore(cls, state: dict[str, Any]) -> PooledMonitor:
        if state.get("state_version") != STATE_VERSION:
            raise StateError(f"pooled state version {state.get('state_version')!r} unknown")
        monitor = cls(
            policy=_policy(state["policy"]),
            claims=dict(state["claims"]),
            claim_lower_bounds=dict(state["claim_lower_bounds"]),
            reference_prevalence=state["reference_prevalence"],
            counts=PooledCounts.from_state(state["sites"]),
        )
        monitor.detectors = monitor._design().detectors
        running = state["detectors"]
        if set(running) != set(monitor.detectors):
            raise ValueError(f"detectors {sorted(running)} differ from the design's")
        for name, detector_state in running.items():
            designed = monitor.detectors[name].to_state()
            monitor.detectors[name] = Detector.from_state({**designed, "state": detector_state})
        monitor.statistics = {k: (float(v[0]), float(v[1])) for k, v in state["statistics"].items()}
        start = state["claims_year_start"]
        monitor.claims_year_start = _time(start) if start is not None else None
        monitor.change_starts = _change_starts(state.get("change_starts", {}), monitor.detectors)
        monitor._check_counts_match_tests()
        return monitor

    def _check_counts_match_tests(self) -> None:
        """Each claims test has counted at most the pooled cases of its metric (fewer when it
        started late or restarted for a new year)."""
        tp, fn, tn, fp = self.counts.totals()
        pooled = {"sensitivity": (tp + fn, fn), "specificity": (tn + fp, fp)}
        for metric in self.levels:
            test = self.detectors[pooled_name(metric, "claims_test")].to_state()["state"]
            cases, events = pooled[metric]
            if test["n_cases"] > cases or test["n_events"] > events:
                raise ValueError(f"{metric} claims test counted more than the pooled counts")


def _change_starts(
    state: dict[str, list[Any]], detectors: dict[str, Detector]
) -> dict[str, list[datetime | None]]:
    """:attr:`PooledMonitor.change_starts` from its state (absent in states written before
    the estimate was kept: every run's start unknown), one per run of its chart."""
    starts: dict[str, list[datetime | None]] = {}
    for name, times in state.items():
        chart = detectors.get(name)
        if not isinstance(chart, BernoulliMultiCUSUM) or len(times) != len(chart.run_lengths):
            raise ValueError(f"change starts of {name!r} do not match its chart")
        starts[name] = [_time(t) if t is not None else None for t in times]
    return starts


def _policy_state(policy: MonitorPolicy) -> dict[str, Any]:
    state = asdict(policy)
    state["explicit_acceptable"] = [list(pair) for pair in policy.explicit_acceptable]
    return state


def _policy(state: dict[str, Any]) -> MonitorPolicy:
    # JSON gives lists back; the policy is hashed (design caches), so tuples again
    explicit = tuple((metric, float(level)) for metric, level in state["explicit_acceptable"])
    return MonitorPolicy(**{**state, "explicit_acceptable": explicit})
