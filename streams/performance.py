"""Performance of one stream against its registered claims and its own reference, as state.

A :class:`StreamMonitor` holds one stream's confusion counts and its detectors.

Labelled, on each outcome: a multi-chart (GLR) Bernoulli CUSUM on misses among positives
(sensitivity) and on false positives among negatives (specificity), each a few CUSUMs tuned
to drops of different sizes below the claim's acceptable level, every one designed by exact
ARL so that together they keep the chart's in-control ARL (a Bonferroni bound,
:mod:`detectors.bernoulli_multi_cusum`); the anytime-valid claims test of each claim; and a windowed
calibration-in-the-large test of the scores against the truth (which is also the check of
the label-free estimate's own assumption).

Label-free, on each prediction, so they can warn weeks before any label exists: the
confidence-based estimate of each claimed metric from the calibrated scores; and, once
the stream's first predictions have formed its reference, score drift and the drift of
each acquisition category mix (manufacturer, model, slice-thickness and kVp band), where a
category the reference never saw (a new scanner model) is a finding. Once a drift is
investigated and the change accepted, a re-baselining decision restarts the reference from
the predictions that follow (:meth:`StreamMonitor.rebaseline`); nothing re-baselines a claim,
but a decision on a stream whose claims test rejected restarts that test, as a new test paid
for by the budget, with the CUSUMs that alarmed (:meth:`StreamMonitor.restart_after_review`).
A CUSUM's signal says when the change began (:attr:`Signal.change_began_at`).

The stream agent calls :meth:`StreamMonitor.observe` once per outcome,
:meth:`StreamMonitor.observe_score` once per prediction and :meth:`StreamMonitor.rebaseline`
once per decision, and emits what the first two return.
"""

from __future__ import annotations

import functools
import uuid
from dataclasses import astuple, dataclass, field, fields, replace
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal, NamedTuple

from detectors import (
    BernoulliMultiCUSUM,
    BetaBinomialConfidenceSequence,
    Detector,
    DetectorResult,
    EstimatedPerformance,
    KappaEstimate,
    StateError,
    WindowedCalibrationTest,
    WindowedChiSquareDrift,
    WindowedKSDrift,
    WindowedPerformanceEstimate,
    cohen_kappa_from_table,
    multi_cusum_design,
    multi_cusum_resolution,
    wilson_interval,
)
from detectors.bernoulli_glr_cusum import glr_alternatives
from detectors.reference_calibration import reference_cap
from postmarket.claim_levels import (
    AcceptableRule,
    ChartLevels,
    LevelPolicy,
    UnmonitorableClaim,
    chart_levels,
)
from postmarket.contracts.events import (
    Claim,
    JoinPosition,
    Outcome,
    Prediction,
    RegistryEntry,
)
from streams.acquisition import (
    ACQUISITION_DIMENSIONS,
    AcquisitionCategories,
    acquisition_categories,
)
from streams.false_alarm_budget import FleetBudget, Unit

if TYPE_CHECKING:
    from postmarket.config import Settings

STATE_VERSION = 4
"""2: detector settings left out (designed again on load); 3: the acquisition reference;
4: the sensitivity and specificity charts are multi-chart CUSUMs (one Bernoulli CUSUM
before: its running state is migrated, :func:`migrate_single_cusum`). Version 1-3 states
still load (a stream whose reference predates 3 has no acquisition drift tests). Keys added
within a version are read with a default, so its older states still load, and a release
that predates a key ignores it; a release before 4 refuses a version-4 state. Added within 4:
``change_starts``, ``alarmed_charts`` and ``claims_restarts`` (labelled side, each written
only when not empty; absent, a run's start is unknown and no alarm is pending review)."""
Metric = Literal["sensitivity", "specificity", "score_distribution", "acquisition", "calibration"]
ClaimedMetric = Literal["sensitivity", "specificity"]
CHARTED_METRICS: tuple[ClaimedMetric, ...] = ("sensitivity", "specificity")
TESTS_PER_STREAM = 3 * len(CHARTED_METRICS) + 3
"""Tests a stream runs when both metrics are claimed (per metric a multi-chart CUSUM, which
spends one test's part between its alternatives, a claims test and
the label-free estimate; the calibration, score-drift and acquisition-drift tests): each
spends an equal part of the stream's share of the fleet budget. A stream with fewer claims
spends less than its share."""
STRATUM_DIMENSIONS = ("slice_thickness_band", "manufacturer", "model")
MAX_STRATA = 48
"""Strata kept per stream; further ones share the stratum ``other`` (bounded state)."""
MIN_READ_PAIRS = 20
"""Read pairs before a stream's reader agreement is shown (its interval is wide below)."""
SCORE_EDGES = tuple(i / 10 for i in range(1, 10))
"""Deciles of the score scale: the fixed bins of the score-drift reference."""
UNKNOWN_CATEGORY = "(unknown)"
"""An acquisition dimension the prediction's header did not give."""
OTHER_CATEGORY = "(other)"
"""Reference categories beyond the most frequent MAX_REFERENCE_CATEGORIES of a dimension."""
MAX_REFERENCE_CATEGORIES = 8
"""Categories kept per dimension in the acquisition reference (bounded state)."""
SURVEILLANCE_YEAR = timedelta(days=365)
UNMONITORED_STREAM = "unmonitored_stream"
"""The signal of a stream with a claimed metric that no chart can monitor."""
LABEL_FREE_KINDS = ("_drift", "_estimate")
"""Name endings of the detectors that run on predictions, not outcomes."""
REFERENCE_DRIFT_DETECTORS = (
    "score_drift",
    *(f"{dimension}_drift" for dimension in ACQUISITION_DIMENSIONS),
)
"""Every test against the stream's own reference (:meth:`StreamMonitor._reference_detectors`):
what a re-baselining decision restarts."""


def is_label_free(detector: str) -> bool:
    """Whether a stream detector runs on predictions (placed by prediction count)."""
    return detector.endswith(LABEL_FREE_KINDS)


@dataclass(frozen=True)
class MonitorPolicy:
    """How hard to look: chart design and the claims test's error rate."""

    arl0_cases: float = 5000.0
    """In-control average run length of each CUSUM, in the cases it charts."""
    sensitivity_drop: float = 0.07
    """The drop below the claimed sensitivity each CUSUM is designed to catch fastest. The
    label-free estimate warns only when significantly below the claim less this drop: its
    model (calibrated scores) fails quietly, and a few points of bias (scores miscalibrated
    at a site, or a prevalence the adjustment could not know) would otherwise turn its small
    standard error into false alarms. Knowing the prevalence the scores are calibrated at,
    the estimate is also adjusted to each window's prevalence (:mod:`detectors.prior_shift`);
    the tolerance stays, as the adjustment reads a fall of the positives' scores as fewer
    positives."""
    specificity_drop: float = 0.05
    claims_alpha: float = 0.05
    """Chance, under the claim, that the claims test ever says "below claim"."""
    score_reference_cases: int = 500
    """The stream's first predictions form its score reference (label-free drift)."""
    score_window: int = 250
    """Predictions per tumbling window of the score- and acquisition-drift tests."""
    estimate_window: int = 500
    """Cases per tumbling window of the label-free estimate and the calibration test."""
    acceptable_level: AcceptableRule = "ci_lower"
    """What every labelled chart and claims test treats as in control: performance at or
    above the claim's lower confidence bound (what its study demonstrated) or its point
    estimate (:mod:`postmarket.claim_levels`). The rejectable level, charted fastest, is the
    acceptable one less the metric's drop."""
    explicit_acceptable: tuple[tuple[ClaimedMetric, float], ...] = ()
    """Per-metric acceptable levels that override the rule, e.g. (("sensitivity", 0.80),)."""
    fleet_false_alarms_per_year: float | None = None
    """The surveillance plan's budget for the whole fleet. When set, every test's ARL0 (in
    its own units) and every claims test's alpha follow from it and the plan's volumes below
    (:mod:`streams.false_alarm_budget`); when None, every test has ``arl0_cases`` and the
    claims tests ``claims_alpha``."""
    fleet_streams: int = 1
    stream_predictions_per_year: float = 10_000.0
    followup_completeness: float = 0.8
    planned_prevalence: float = 0.25
    """Used for a stream whose version registered no reference prevalence."""
    unseen_min_cases: int = 5
    """Cases of acquisition categories the stream's reference never saw that make a window
    fire on their own (a new scanner at 2 % of a 250-case window): one study would fire
    whenever a category too rare to be in the reference came back."""
    calibration_tolerance: float = 0.08
    """How far a window's positive rate may sit from its mean score before the calibration
    test calls it miscalibrated: a site's prevalence differs from the one the scores were
    calibrated at, and its labelled cases are a verification-biased subset, so an exact
    calibration-in-the-large fails at most sites of a real fleet with nothing wrong."""
    fleet_pooled_groups: int = 0
    """(device, version, task) groups the pooled per-version stage tests across sites: its
    tests take their parts of the same budget (:mod:`streams.false_alarm_budget`). Last, so
    a stream state from before it (a shorter stored tuple) loads with 0."""

    def budget(self) -> FleetBudget | None:
        if self.fleet_false_alarms_per_year is None:
            return None
        return FleetBudget(
            self.fleet_false_alarms_per_year,
            self.fleet_streams,
            self.stream_predictions_per_year,
            self.followup_completeness,
            self.fleet_pooled_groups,
        )

    def test_arl0(self, unit: Unit, prevalence: float | None = None) -> float:
        """The in-control ARL, in ``unit``, of one test of a stream."""
        budget = self.budget()
        if budget is None:
            return self.arl0_cases
        arl0 = budget.arl0(unit, prevalence or self.planned_prevalence, TESTS_PER_STREAM)
        # A windowed test needs an ARL0 above its window; a longer one spends less.
        return max(arl0, 2.0 * max(self.score_window, self.estimate_window))

    def test_alpha(self) -> float:
        """One claims test's error rate in a surveillance year."""
        budget = self.budget()
        return self.claims_alpha if budget is None else budget.alpha(TESTS_PER_STREAM)

    def level_policy(self) -> LevelPolicy:
        return LevelPolicy(
            self.acceptable_level,
            self.sensitivity_drop,
            self.specificity_drop,
            self.explicit_acceptable,
        )


def planned_policy(settings: Settings) -> MonitorPolicy:
    """The policy new streams get: the configured acceptable level and surveillance plan."""
    return MonitorPolicy(
        acceptable_level=settings.acceptable_level,
        fleet_false_alarms_per_year=settings.fleet_false_alarms_per_year,
        fleet_streams=settings.fleet_streams,
        stream_predictions_per_year=settings.stream_predictions_per_year,
        followup_completeness=settings.followup_completeness,
        planned_prevalence=settings.planned_prevalence,
        fleet_pooled_groups=settings.fleet_pooled_groups,
    )


@dataclass(frozen=True)
class Signal:
    """A detector that fired on this outcome, with what it concluded."""

    detector: str
    metric: Metric
    result: DetectorResult
    claimed: float | None
    reason: str | None = None
    """Why, for a signal no statistic decides (an unmonitored stream)."""
    change_began_at: datetime | None = None
    """For a labelled CUSUM's signal, the event (prediction) time of the case at which the
    change is estimated to have begun: the case after the CUSUM that fired last sat at zero,
    Page's maximum-likelihood estimate (``result.change_began`` counts it in charted cases).
    None for other tests, and when that case predates what the stream's state kept (a state
    written before this estimate was kept, or migrated from a single CUSUM)."""


def _charted_claims(entry: RegistryEntry | None, task: str) -> list[tuple[ClaimedMetric, Claim]]:
    if entry is None or entry.registration_status != "registered":
        return []
    return [
        (metric, claim)
        for claim in entry.claims
        if claim.task == task and (metric := _charted(claim.metric)) is not None
    ]


def _charted(metric: str) -> ClaimedMetric | None:
    """The metric as a charted one, or None for a claim no chart tests (ppv, npv, auc)."""
    if metric == "sensitivity":
        return "sensitivity"
    if metric == "specificity":
        return "specificity"
    return None


def claimed_performance(entry: RegistryEntry | None, task: str) -> dict[ClaimedMetric, float]:
    """The registered sensitivity and specificity claims of one task of a version."""
    return {metric: claim.value for metric, claim in _charted_claims(entry, task)}


def claimed_lower_bounds(entry: RegistryEntry | None, task: str) -> dict[ClaimedMetric, float]:
    """The lower confidence bounds of those claims: the default acceptable levels."""
    return {metric: claim.ci_lower for metric, claim in _charted_claims(entry, task)}


CELLS = ("tp", "fn", "tn", "fp")


def confusion_cell(outcome: Outcome) -> int:
    """Index into :data:`CELLS` of an outcome's decision against its truth."""
    if outcome.label == "positive":
        return 0 if outcome.decision == "positive" else 1
    return 2 if outcome.decision == "negative" else 3


CHART_ALTERNATIVES = 3
"""CUSUMs per labelled chart. Each costs the others ``ln K`` nats of threshold (Bonferroni):
three, from a quarter of the drop to three drops below the acceptable level, kept every
drop of the issue's grid (0.80 ... 0.60 under 0.818) within 1.12-1.19 x the delay of the
CUSUM designed for it at the default plan's ARL0 of 180,000 referable cases (four: up to
1.23 x; bench/results/glr_delay_budget.md)."""


def chart_alternatives(acceptable: float, rejectable: float) -> tuple[float, ...]:
    """The adverse-event rates a labelled chart's CUSUMs are tuned to: from a quarter of the
    drop (acceptable - rejectable) to three drops above the acceptable error rate (at most
    halfway to 1), geometric in the log odds ratio (:func:`detectors.bernoulli_glr_cusum.
    glr_alternatives`). 0.818 less 0.07 gives miss rates 0.1995, 0.2395, 0.392."""
    p0, gap = 1.0 - acceptable, acceptable - rejectable
    return glr_alternatives(
        p0, p0 + gap / 4, min(p0 + 3 * gap, p0 + (1.0 - p0) / 2), CHART_ALTERNATIVES
    )


@functools.lru_cache(maxsize=1024)
def labelled_chart(acceptable: float, rejectable: float, arl0: float) -> BernoulliMultiCUSUM:
    """A fresh multi-chart CUSUM of a claimed metric, in-control ARL at least ``arl0`` at the
    acceptable level. Its exact design takes under 0.1 s per CUSUM at budget-scale ARL0s
    and every stream of a version shares it (cached: callers get a copy's settings, below)."""
    p0 = 1.0 - acceptable
    p1 = chart_alternatives(acceptable, rejectable)
    resolution = multi_cusum_resolution(p0, p1)
    return BernoulliMultiCUSUM(p0, p1, multi_cusum_design(p0, p1, arl0, resolution).h, resolution)


def migrate_single_cusum(
    chart: BernoulliMultiCUSUM, running: dict[str, Any], level: ChartLevels
) -> dict[str, Any]:
    """A labelled chart's running state from a stream state of version 3 or older, whose
    chart was one Bernoulli CUSUM at the same acceptable level tuned to the rejectable one.

    Its current run is carried into every CUSUM of the new chart (see
    :meth:`BernoulliMultiCUSUM.running_state_from_cusum`: the evidence of a change under way
    is kept, and the false-alarm guarantee holds). A state already in the new layout (a
    stream this release wrote once, then rolled back and forward) is taken as it is."""
    if "run_lengths" in running:
        return running
    return chart.running_state_from_cusum(running, 1.0 - level.rejectable)


class Design(NamedTuple):
    """What a stream's claims give it: its detectors, the levels its labelled charts are
    designed at, and the claimed metrics no chart can monitor, with why."""

    detectors: dict[str, Detector]
    levels: dict[ClaimedMetric, ChartLevels]
    unmonitored: dict[ClaimedMetric, str]


def design_levels(
    claims: dict[ClaimedMetric, float],
    lower_bounds: dict[ClaimedMetric, float],
    policy: MonitorPolicy,
) -> tuple[dict[ClaimedMetric, ChartLevels], dict[ClaimedMetric, str]]:
    """Each claimed metric's acceptable and rejectable level, or why it has none.

    A claim without a known lower bound (a stream state from before the bound was kept) is
    charted at its point estimate, as it always was."""
    levels: dict[ClaimedMetric, ChartLevels] = {}
    unmonitored: dict[ClaimedMetric, str] = {}
    for metric, claimed in sorted(claims.items()):
        lower = lower_bounds.get(metric)
        rule = policy.level_policy()
        if lower is None:
            rule = replace(rule, acceptable="point_estimate")
        try:
            levels[metric] = chart_levels(
                metric, claimed, claimed if lower is None else lower, rule
            )
        except UnmonitorableClaim as reason:
            unmonitored[metric] = str(reason)
    return levels, unmonitored


def design_detectors(
    claims: dict[ClaimedMetric, float],
    policy: MonitorPolicy,
    reference_prevalence: float | None = None,
    lower_bounds: dict[ClaimedMetric, float] | None = None,
) -> Design:
    """The detectors a stream has from its start: per claimed metric, designed at its
    acceptable and rejectable levels, a CUSUM, a one-sided claims test (its ``alpha`` held at
    every performance at or above the acceptable level) and the label-free estimate (adjusted
    to each window's prevalence when the prevalence the scores are calibrated at is known);
    and the calibration test. Each test's ARL0 in its own units (or alpha) spends its part of
    the fleet budget when the policy has one. A metric whose chart cannot be designed is left
    unmonitored, with the reason, for the stream to raise; its other metrics still run."""
    detectors: dict[str, Detector] = {
        "calibration_test": WindowedCalibrationTest(
            policy.estimate_window,
            policy.test_arl0("outcomes", reference_prevalence),
            policy.calibration_tolerance,
        )
    }
    levels, unmonitored = design_levels(claims, lower_bounds or {}, policy)
    for metric, level in sorted(levels.items()):
        p0 = 1.0 - level.acceptable
        try:
            unit: Unit = "positives" if metric == "sensitivity" else "negatives"
            arl0 = policy.test_arl0(unit, reference_prevalence)
            designed = labelled_chart(level.acceptable, level.rejectable, arl0)
            charts: dict[str, Detector] = {
                f"{metric}_cusum": BernoulliMultiCUSUM(**designed.settings()),
                f"{metric}_claims_test": BetaBinomialConfidenceSequence(
                    p0, policy.test_alpha(), alternative="greater"
                ),
                f"{metric}_estimate": WindowedPerformanceEstimate(
                    metric,
                    level.rejectable,
                    policy.estimate_window,
                    policy.test_arl0("predictions"),
                    reference_prevalence,
                ),
            }
        except ValueError as error:
            unmonitored[metric] = f"{metric} chart cannot be designed: {error}"
            continue
        detectors.update(charts)
    return Design(detectors, {m: levels[m] for m in levels if m not in unmonitored}, unmonitored)


def design_acquisition_drift(
    reference: dict[str, dict[str, int]], policy: MonitorPolicy
) -> dict[str, WindowedChiSquareDrift]:
    """One chi-square drift test per acquisition dimension the reference knows anything of.

    The dimensions share the policy's ARL0 (Bonferroni): each is tested at ``n`` times it,
    so the stream's acquisition tests together raise a false alarm no more often than one.
    A window with a category the reference never saw (a new scanner model) fires too. Each
    test's reference grows from its passing windows to twenty windows, as the score test's
    (:meth:`StreamMonitor._score_drift`).
    """
    known = {
        dimension: counts
        for dimension, counts in sorted(reference.items())
        if set(counts) - {UNKNOWN_CATEGORY}
    }
    arl0 = policy.test_arl0("predictions") * max(len(known), 1)
    cap = max(reference_cap(policy.score_window), policy.score_reference_cases)
    return {
        f"{dimension}_drift": WindowedChiSquareDrift.from_counts(
            counts,
            policy.score_window,
            arl0,
            fire_on_unseen=True,
            reference_cap=cap,
            unseen_min=policy.unseen_min_cases,
        )
        for dimension, counts in known.items()
    }


def bounded_reference(counts: dict[str, int]) -> dict[str, int]:
    """A dimension's reference with its rarest categories beyond the bound pooled."""
    pooled = counts.get(OTHER_CATEGORY, 0)
    named = sorted(
        ((category, n) for category, n in counts.items() if category != OTHER_CATEGORY),
        key=lambda item: (-item[1], item[0]),
    )
    room = MAX_REFERENCE_CATEGORIES - (pooled > 0 or len(named) > MAX_REFERENCE_CATEGORIES)
    kept = dict(named[:room])
    pooled += sum(n for _, n in named[room:])
    if pooled:
        kept[OTHER_CATEGORY] = pooled
    return kept


@dataclass
class StreamMonitor:
    """Confusion counts and labelled detectors of one (device, version, site, task)."""

    policy: MonitorPolicy = field(default_factory=MonitorPolicy)
    claims: dict[ClaimedMetric, float] = field(default_factory=dict)
    detectors: dict[str, Detector] = field(default_factory=dict)
    predictions: int = 0
    strata: dict[str, list[int]] = field(default_factory=dict)
    """``dimension=stratum`` -> [tp, fn, tn, fp]: compatibility per acquisition stratum."""
    score_reference: list[int] = field(default_factory=lambda: [0] * (len(SCORE_EDGES) + 1))
    true_positives: int = 0
    false_negatives: int = 0
    true_negatives: int = 0
    false_positives: int = 0
    first_case_time: datetime | None = None
    last_case_time: datetime | None = None
    applied: dict[str, tuple[int, int, int]] = field(default_factory=dict)
    """Per join input partition, the last (offset, batch index, rank) applied: replays are
    skipped."""
    statistics: dict[str, tuple[float, float]] = field(default_factory=dict)
    """Each detector's latest (statistic, threshold), for metrics."""
    reader_pairs: list[int] = field(default_factory=lambda: [0, 0, 0, 0])
    """Blinded read pairs (first, second): [pos/pos, pos/neg, neg/pos, neg/neg]."""
    acquisition_reference: dict[str, dict[str, int]] = field(default_factory=dict)
    """dimension -> category -> count over the stream's first predictions."""
    reference_prevalence: float | None = None
    """The prevalence the device version's scores are calibrated at, when its registration
    says so; the label-free estimates are then adjusted to each window's prevalence.

    Only the registration can say it. The stream's own data cannot stand in for it: the
    mean score of its reference window is the prevalence at which EM finds no shift, so
    a site that differed from the start would look unshifted (the bias stays); the
    prevalence of its labelled outcomes is the site's, not the one the scores were
    calibrated at, comes months late from a verification-biased subset, and changes as
    labels arrive, while the detectors' settings must follow from stored state.
    Persisted with the claims, set once with them (:meth:`adopt_claims`)."""
    rebaseline_id: str | None = None
    """The last re-baselining decision applied: the same one published again is skipped."""
    claim_lower_bounds: dict[ClaimedMetric, float] = field(default_factory=dict)
    """Each claim's lower confidence bound, persisted with the claims: the default acceptable
    level. Empty in a state from before it was kept (charted at the point estimate then)."""
    levels: dict[ClaimedMetric, ChartLevels] = field(default_factory=dict)
    """The levels the labelled charts are designed at (follows from the claims and policy)."""
    unmonitored: dict[ClaimedMetric, str] = field(default_factory=dict)
    """Claimed metrics no chart can monitor, with why (follows from the claims and policy)."""
    unmonitored_raised: bool = False
    """Whether the stream's unmonitored_stream alert was raised (it is raised once)."""
    claims_year_start: datetime | None = None
    """Case time at which the claims tests' current surveillance year began."""
    change_starts: dict[str, list[datetime | None]] = field(default_factory=dict)
    """Per labelled chart whose statistic is above zero, each of its CUSUMs' run start: the
    event time of the case after that CUSUM last sat at zero (None: before the state kept
    it). What a signal's ``change_began_at`` is read from; a chart at zero has no entry."""
    alarmed_charts: set[str] = field(default_factory=set)
    """Labelled charts that alarmed since the claims tests last started (a surveillance
    year, or a restart after review): what :meth:`restart_after_review` restarts."""
    claims_restarts: int = 0
    """Claims tests restarted after review over the stream's life (each a new test)."""

    @classmethod
    def for_claims(
        cls,
        claims: dict[ClaimedMetric, float],
        policy: MonitorPolicy,
        reference_prevalence: float | None = None,
        lower_bounds: dict[ClaimedMetric, float] | None = None,
    ) -> StreamMonitor:
        monitor = cls(
            policy=policy,
            claims=dict(claims),
            reference_prevalence=reference_prevalence,
            claim_lower_bounds=dict(lower_bounds or {}),
        )
        monitor.detectors = monitor._design().detectors
        return monitor

    def _design(self) -> Design:
        design = design_detectors(
            self.claims, self.policy, self.reference_prevalence, self.claim_lower_bounds
        )
        self.levels, self.unmonitored = design.levels, design.unmonitored
        return design

    def adopt_claims(
        self,
        claims: dict[ClaimedMetric, float],
        reference_prevalence: float | None = None,
        lower_bounds: dict[ClaimedMetric, float] | None = None,
    ) -> None:
        """Start the labelled detectors once the stream's version has registered claims.

        A stream charted at its point estimates because its state predates the claims'
        lower bounds restarts its claim-based detectors at the acceptable levels once the
        registration gives those bounds (its counts and references are kept)."""
        if claims and not self.claims:
            self.claims = dict(claims)
            self.reference_prevalence = reference_prevalence
            self.claim_lower_bounds = dict(lower_bounds or {})
            for name, detector in self._design().detectors.items():
                self.detectors.setdefault(name, detector)  # keeps the running calibration test
        elif lower_bounds and not self.claim_lower_bounds and claims == self.claims:
            self.claim_lower_bounds = dict(lower_bounds)
            for name, detector in self._design().detectors.items():
                if name != "calibration_test" and name in self.detectors:
                    self.detectors[name] = detector
                    self.statistics.pop(name, None)
                    self.change_starts.pop(name, None)

    def expected_false_alarms_per_year(self) -> float | None:
        """At most what this stream's tests are designed to raise a year in control at the
        plan's volume: a part of the fleet budget per test it runs (the acquisition-drift
        tests share one part). None without a budget."""
        budget = self.policy.budget()
        if budget is None:
            return None
        acquisition = [n for n in self.detectors if n.endswith("_drift") and n != "score_drift"]
        tests = len(self.detectors) - len(acquisition) + bool(acquisition)
        return tests * budget.share_per_test(TESTS_PER_STREAM)

    def unmonitored_signals(self) -> list[Signal]:
        """The stream's one ``unmonitored_stream`` signal, on its first event after a design
        left a claimed metric without a chart: never silently unmonitored."""
        if not self.unmonitored or self.unmonitored_raised:
            return []
        self.unmonitored_raised = True
        metrics = sorted(self.unmonitored)
        result = DetectorResult(
            fired=True, statistic=0.0, threshold=0.0, n_cases=0, n_events=0, run_length=0
        )
        reason = "; ".join(self.unmonitored[metric] for metric in metrics)
        return [Signal(UNMONITORED_STREAM, metrics[0], result, self.claims.get(metrics[0]), reason)]

    @property
    def followup_completeness(self) -> float | None:
        """Share of the stream's predictions that have final truth (verification bias)."""
        return self.outcomes / self.predictions if self.predictions else None

    def already_applied(self, kind: str, join: JoinPosition) -> bool:
        """Whether this emission (or a later one of the same join partition) was applied."""
        last = self.applied.get(f"{kind}|{join.topic}:{join.partition}")
        return last is not None and join.order() <= last

    def _mark_applied(self, kind: str, join: JoinPosition) -> None:
        self.applied[f"{kind}|{join.topic}:{join.partition}"] = join.order()

    def observe_prediction(self, prediction: Prediction, joined_at: JoinPosition) -> list[Signal]:
        """Count a new prediction; build the references, then test each window against them."""
        categories = acquisition_categories(prediction.acquisition)
        return self.observe_score(prediction.score, joined_at, prediction.decision, categories)

    def observe_score(
        self,
        score: float,
        joined_at: JoinPosition,
        decision: str | None = None,
        categories: AcquisitionCategories | None = None,
    ) -> list[Signal]:
        """:meth:`observe_prediction` from what the join routes of a prediction. A record of
        the previous release has no decision nor categories: the tests needing them skip it."""
        self._mark_applied("prediction", joined_at)
        self.predictions += 1
        signals = self.unmonitored_signals()
        if decision is not None:
            called = 1.0 if decision == "positive" else 0.0
            for metric in sorted(self.claims):
                signals += self._update(f"{metric}_estimate", metric, score, called)
        drift = self.detectors.get("score_drift")
        if drift is None:
            self._add_to_references(score, categories)
            return signals
        signals += self._update("score_drift", "score_distribution", score)
        if categories is not None:
            signals += self._update_acquisition(categories)
        return signals

    def rebaseline(self, decision: uuid.UUID, at: JoinPosition) -> bool:
        """Apply a decision on the stream: restart the reference-drift tests (the next
        ``score_reference_cases`` predictions form a new reference) and, when a claims test
        has rejected, the stream's restart after review (:meth:`restart_after_review`).
        Counts and strata are untouched.

        False, changing nothing, for a decision applied already: the record at ``at`` read
        again, or the same decision published again (a new offset, the same id). A decision
        that restarts a claims test changes the labelled state as well as the label-free one
        (:attr:`claims_restarts` says whether it did): the caller writes both.
        """
        if self.already_applied("prediction", at) or str(decision) == self.rebaseline_id:
            return False
        self._mark_applied("prediction", at)
        self.rebaseline_id = str(decision)
        self.score_reference = [0] * len(self.score_reference)
        self.acquisition_reference = {}
        for name in REFERENCE_DRIFT_DETECTORS:
            self.detectors.pop(name, None)
            self.statistics.pop(name, None)
        self.restart_after_review()
        return True

    def restart_after_review(self) -> list[str]:
        """Restart what a reviewed rejection left stuck; the detectors restarted, by name.

        A claims test that rejected stays rejected (it fires once) until its surveillance
        year ends. Once a decision on the stream shows it was reviewed, every claims test
        that rejected starts again from the next case, a new test with the same alpha, and
        every CUSUM that alarmed since the claims tests last started restarts from zero, so
        the cases before the review (the problem already reported) do not carry into the
        charts of what follows. The alpha of a claims test is set so that these restarts
        stay inside the budget: a restart follows a rejection, and under the acceptable level
        each new test rejects with probability at most alpha whatever came before it (its
        cases are new), so a stream's claims test rejects falsely at most ``alpha + alpha^2
        + ... = alpha / (1 - alpha)`` times a surveillance year in expectation, which
        :meth:`FleetBudget.alpha` makes the test's share. Restarting a CUSUM never raises
        its false alarms: from zero it alarms no earlier than from where it was.
        """
        rejected = [
            name
            for name, test in sorted(self.detectors.items())
            if isinstance(test, BetaBinomialConfidenceSequence) and test.verdict == "below claim"
        ]
        if not rejected:
            return []
        restarted = rejected + sorted(self.alarmed_charts & set(self.detectors))
        for name in restarted:
            self.detectors[name].reset()
            self.statistics.pop(name, None)
            self.change_starts.pop(name, None)
        self.alarmed_charts = set()
        self.claims_restarts += len(rejected)
        return restarted

    def _update(
        self, name: str, metric: Metric, x: float, risk: float | None = None
    ) -> list[Signal]:
        detector = self.detectors.get(name)
        if detector is None:
            return []
        result = detector.update(x, risk)
        self.statistics[name] = (result.statistic, result.threshold)
        if not result.fired:
            return []
        claimed = self.claims.get(metric) if metric in ("sensitivity", "specificity") else None
        return [Signal(name, metric, result, claimed)]

    def _update_chart(
        self, name: str, metric: ClaimedMetric, adverse: bool, time: datetime
    ) -> list[Signal]:
        """:meth:`_update` of a labelled chart, following each of its CUSUMs' run start so
        that a signal says when the change began (see :attr:`Signal.change_began_at`)."""
        chart = self.detectors.get(name)
        if not isinstance(chart, BernoulliMultiCUSUM):
            return self._update(name, metric, 1.0 if adverse else 0.0)
        before = chart.run_lengths
        starts = self.change_starts.pop(name, [None] * len(before))
        signals = self._update(name, metric, 1.0 if adverse else 0.0)
        if signals:  # the chart restarted: every run is over
            self.alarmed_charts.add(name)
            run = signals[0].result.run_length
            began = time if run == 1 else None
            for start, previous in zip(starts, before, strict=True):
                began = began or (start if previous + 1 == run else None)
            return [replace(signals[0], change_began_at=began)]
        kept = [
            None if run == 0 else time if run == 1 else start
            for run, start in zip(chart.run_lengths, starts, strict=True)
        ]
        if any(kept):
            self.change_starts[name] = kept
        return signals

    def _update_acquisition(self, categories: AcquisitionCategories) -> list[Signal]:
        signals = []
        for dimension in ACQUISITION_DIMENSIONS:
            drift = self.detectors.get(f"{dimension}_drift")
            if not isinstance(drift, WindowedChiSquareDrift):
                continue
            category = categories.get(dimension, UNKNOWN_CATEGORY)
            if category not in drift.categories and OTHER_CATEGORY in drift.categories:
                category = OTHER_CATEGORY  # pooled in the reference: not a new category
            signals += self._update(f"{dimension}_drift", "acquisition", drift.code(category))
        return signals

    def _add_to_references(self, score: float, categories: AcquisitionCategories | None) -> None:
        bin_index = sum(1 for edge in SCORE_EDGES if score >= edge)
        self.score_reference[bin_index] += 1
        if categories is not None:
            for dimension in ACQUISITION_DIMENSIONS:
                counts = self.acquisition_reference.setdefault(dimension, {})
                category = categories.get(dimension, UNKNOWN_CATEGORY)
                if category not in counts and len(counts) >= 2 * MAX_REFERENCE_CATEGORIES:
                    category = OTHER_CATEGORY  # bounded state while the reference fills
                counts[category] = counts.get(category, 0) + 1
        if sum(self.score_reference) >= self.policy.score_reference_cases:
            self.acquisition_reference = {
                dimension: bounded_reference(counts)
                for dimension, counts in self.acquisition_reference.items()
            }
            self.detectors.update(self._reference_detectors())

    @property
    def outcomes(self) -> int:
        return (
            self.true_positives + self.false_negatives + self.true_negatives + self.false_positives
        )

    def observe(self, outcome: Outcome) -> list[Signal]:
        """Count one new outcome and feed the detectors that chart its kind of case."""
        self._mark_applied("outcome", outcome.joined_at)
        self._count(outcome)
        self._follow_surveillance_year(outcome.prediction_time)
        if outcome.blinded_reads is not None:
            first, second = outcome.blinded_reads
            self.reader_pairs[2 * (first == "negative") + (second == "negative")] += 1
        positive = outcome.label == "positive"
        if positive:
            metric: ClaimedMetric = "sensitivity"
            adverse = outcome.decision == "negative"
        else:
            metric = "specificity"
            adverse = outcome.decision == "positive"
        signals = self.unmonitored_signals()
        signals += self._update_chart(f"{metric}_cusum", metric, adverse, outcome.prediction_time)
        signals += self._update(f"{metric}_claims_test", metric, 1.0 if adverse else 0.0)
        return signals + self._update(
            "calibration_test", "calibration", float(positive), outcome.score
        )

    def _follow_surveillance_year(self, time: datetime) -> None:
        """Restart the claims tests at each new surveillance year of the stream (case time).

        A claims test rejects at most once with probability at most alpha; restarted yearly,
        it spends alpha once a year, as the fleet budget counts it, and a rejection (the
        stream's critical alert) stands for the rest of its year. A late outcome of an earlier
        year counts in the current one."""
        if self.claims_year_start is None:
            self.claims_year_start = time
            return
        years = (time - self.claims_year_start) // SURVEILLANCE_YEAR
        if years < 1:
            return
        self.claims_year_start += years * SURVEILLANCE_YEAR
        self.alarmed_charts = set()
        for metric in self.levels:
            test = self.detectors.get(f"{metric}_claims_test")
            if test is not None:
                test.reset()
                self.statistics.pop(f"{metric}_claims_test", None)

    def _count(self, outcome: Outcome) -> None:
        cell = confusion_cell(outcome)
        if cell == 0:
            self.true_positives += 1
        elif cell == 1:
            self.false_negatives += 1
        elif cell == 2:
            self.true_negatives += 1
        else:
            self.false_positives += 1
        acquisition = outcome.acquisition
        for dimension in STRATUM_DIMENSIONS:
            stratum = getattr(acquisition, dimension) or "unknown"
            key = f"{dimension}={stratum}"
            if key not in self.strata and len(self.strata) >= MAX_STRATA:
                key = f"{dimension}=other"
            self.strata.setdefault(key, [0, 0, 0, 0])[cell] += 1
        time = outcome.prediction_time
        self.first_case_time = min(self.first_case_time or time, time)
        self.last_case_time = max(self.last_case_time or time, time)

    def estimate(
        self, metric: ClaimedMetric, alpha: float = 0.05
    ) -> tuple[float, float, float] | None:
        """Observed value of ``metric`` with its Wilson interval, or None before any case."""
        if metric == "sensitivity":
            hits, n = self.true_positives, self.true_positives + self.false_negatives
        else:
            hits, n = self.true_negatives, self.true_negatives + self.false_positives
        if n == 0:
            return None
        lower, upper = wilson_interval(hits, n, alpha)
        return hits / n, lower, upper

    def reader_agreement(self, alpha: float = 0.05) -> KappaEstimate | None:
        """Cohen's kappa of the blinded read pairs, or None while it is undefined."""
        if sum(self.reader_pairs) < MIN_READ_PAIRS:
            return None
        pos_pos, pos_neg, neg_pos, neg_neg = self.reader_pairs
        try:
            return cohen_kappa_from_table([[pos_pos, pos_neg], [neg_pos, neg_neg]], alpha=alpha)
        except ValueError:  # every read the same label: chance agreement is 1
            return None

    def to_states(self) -> StreamStates:
        """JSON-able states for two changelogged tables, each written when its side changes.

        An outcome rewrites only the labelled part, a batch of predictions only the
        label-free part: each stays small, and each carries the join positions it applied,
        so either is replayed idempotently on its own. Detector settings are not stored:
        they follow from the claims, the policy and the references
        (:meth:`_designed_detectors`); only their running states are.
        """
        return StreamStates(self.labelled_state(), self.label_free_state())

    def state_of(self, kind: Literal["outcome", "prediction"]) -> dict[str, Any]:
        """The one state a new outcome or new predictions changed (see :meth:`to_states`)."""
        return self.labelled_state() if kind == "outcome" else self.label_free_state()

    def _common_state(self, label_free: bool) -> dict[str, Any]:
        return {
            "state_version": STATE_VERSION,
            "policy": list(astuple(self.policy)),
            "claims": dict(self.claims),
            "reference_prevalence": self.reference_prevalence,
            "claim_lower_bounds": dict(self.claim_lower_bounds),
            # Only once raised: most streams never are, and pay nothing for it.
            **({"unmonitored_raised": True} if self.unmonitored_raised else {}),
            "detectors": {
                name: d.to_state()["state"]
                for name, d in self.detectors.items()
                if is_label_free(name) == label_free
            },
            "applied": {
                k: list(v)
                for k, v in self.applied.items()
                if k.startswith("prediction|") == label_free
            },
            "statistics": {
                k: list(v) for k, v in self.statistics.items() if is_label_free(k) == label_free
            },
        }

    def labelled_state(self) -> dict[str, Any]:
        return self._common_state(label_free=False) | {
            "strata": {k: list(v) for k, v in self.strata.items()},
            "counts": [
                self.true_positives,
                self.false_negatives,
                self.true_negatives,
                self.false_positives,
            ],
            "first_case_time": _iso(self.first_case_time),
            "last_case_time": _iso(self.last_case_time),
            "claims_year_start": _iso(self.claims_year_start),
            "reader_pairs": list(self.reader_pairs),
            # Only once a chart alarmed, or a claims test was restarted after review.
            **({"alarmed_charts": sorted(self.alarmed_charts)} if self.alarmed_charts else {}),
            **({"claims_restarts": self.claims_restarts} if self.claims_restarts else {}),
            # Only while a chart is above zero; None where the start predates the state.
            **(
                {
                    "change_starts": {
                        name: [_iso(start) for start in starts]
                        for name, starts in self.change_starts.items()
                    }
                }
                if self.change_starts
                else {}
            ),
        }

    def label_free_state(self) -> dict[str, Any]:
        return self._common_state(label_free=True) | {
            "predictions": self.predictions,
            "score_reference": list(self.score_reference),
            "acquisition_reference": {k: dict(v) for k, v in self.acquisition_reference.items()},
            # Only once re-baselined: most streams never are, and pay nothing for it.
            **({"rebaseline_id": self.rebaseline_id} if self.rebaseline_id else {}),
        }

    @classmethod
    def from_states(
        cls,
        labelled: dict[str, Any] | None,
        label_free: dict[str, Any] | None,
        plan: MonitorPolicy | None = None,
    ) -> StreamMonitor:
        """The monitor of a stream from its two table states (either may be absent).

        A state of version 1 or 2 is a whole stream in the labelled table; once this
        release has written the stream's label-free state, that one is the newer.

        ``plan`` is the policy new streams get (:func:`planned_policy`). A stream whose stored
        policy predates the fleet budget (its layout has no budget: every test then had
        ``arl0_cases`` and the claims tests ``claims_alpha``, whatever the fleet) is moved to
        the plan's budget (:func:`budgeted_policy`); without a plan, or with a plan without a
        budget, it keeps its stored policy. Raises :class:`StateError` when a running state
        cannot be carried into the budgeted design.
        """
        parts = [state for state in (labelled, label_free) if state is not None]
        if not parts:
            raise ValueError("a stream needs at least one of its two states")
        for state in parts:
            if state.get("state_version") not in (1, 2, 3, STATE_VERSION):
                raise ValueError(f"stream state version {state.get('state_version')!r} unknown")
        claims = next((dict(p["claims"]) for p in parts if p["claims"]), {})
        # Added within state version 3: states written before it have none (unadjusted).
        reference_prevalence = next(
            (p["reference_prevalence"] for p in parts if p.get("reference_prevalence")), None
        )
        monitor = cls(
            policy=_policy(parts[0]["policy"], plan),
            claims=claims,
            reference_prevalence=reference_prevalence,
            # Both added within state version 3: none in states written before them.
            claim_lower_bounds=next(
                (dict(p["claim_lower_bounds"]) for p in parts if p.get("claim_lower_bounds")), {}
            ),
            unmonitored_raised=any(p.get("unmonitored_raised", False) for p in parts),
        )
        migrated = monitor.policy != _policy(parts[0]["policy"])
        running: dict[str, Any] = {}
        for state in parts:
            if state["state_version"] < 3 or state is label_free:
                monitor._load_label_free(state)
            if state is labelled:
                monitor._load_labelled(state)
            monitor.applied.update({k: _applied(v) for k, v in state["applied"].items()})
            monitor.statistics.update({k: (v[0], v[1]) for k, v in state["statistics"].items()})
            detectors = state["detectors"]
            if state["state_version"] == 1:  # whole detector states: their running part
                detectors = {name: whole["state"] for name, whole in detectors.items()}
            running.update(detectors)
        # Detectors a later release designs (absent from an older state) start fresh.
        monitor.detectors = monitor._designed_detectors()
        for name, detector_state in running.items():
            if name not in monitor.detectors:
                if name.startswith(tuple(monitor.unmonitored)):
                    continue  # its metric is raised as unmonitored, not the stream refused
                raise ValueError(f"stream state has a detector {name!r} its design lacks")
            designed = monitor.detectors[name].to_state()
            chart = monitor.detectors[name]
            if isinstance(chart, BernoulliMultiCUSUM) and name.endswith("_cusum"):
                metric: ClaimedMetric = "sensitivity" if name.startswith("sens") else "specificity"
                detector_state = migrate_single_cusum(chart, detector_state, monitor.levels[metric])
                if migrated:
                    detector_state = _below_thresholds(chart, detector_state)
            try:
                restored = Detector.from_state({**designed, "state": detector_state})
            except StateError as error:
                if not migrated:
                    raise
                raise StateError(
                    f"{name} of a stream whose policy predates the fleet budget cannot be "
                    f"carried into the budgeted design: {error}"
                ) from error
            monitor.detectors[name] = restored
        monitor._check_change_starts()
        return monitor

    def _check_change_starts(self) -> None:
        """Keep a run start only where its CUSUM is in a run: a start the chart's state does
        not match (a release that did not keep them ran the chart meanwhile) is unknown."""
        kept: dict[str, list[datetime | None]] = {}
        for name, chart in self.detectors.items():
            if not isinstance(chart, BernoulliMultiCUSUM) or not any(chart.run_lengths):
                continue
            starts = self.change_starts.get(name, [])
            if len(starts) != len(chart.run_lengths):
                starts = [None] * len(chart.run_lengths)
            kept[name] = [
                start if run > 0 else None
                for start, run in zip(starts, chart.run_lengths, strict=True)
            ]
        self.change_starts = {name: starts for name, starts in kept.items() if any(starts)}

    def _load_labelled(self, state: dict[str, Any]) -> None:
        tp, fn, tn, fp = state["counts"]
        self.true_positives, self.false_negatives = tp, fn
        self.true_negatives, self.false_positives = tn, fp
        self.strata = {k: list(v) for k, v in state["strata"].items()}
        self.first_case_time = _parse(state["first_case_time"])
        self.last_case_time = _parse(state["last_case_time"])
        # Added within state version 3: a stream from before it starts its year at its first case.
        self.claims_year_start = _parse(state.get("claims_year_start", state["first_case_time"]))
        # Added within state version 1: states written before it have no read pairs.
        self.reader_pairs = list(state.get("reader_pairs", [0, 0, 0, 0]))
        # Added within state version 4: none in states written before them (an alarm before
        # then restarts nothing: the release then kept the claims test rejected all year).
        self.alarmed_charts = set(state.get("alarmed_charts", []))
        self.claims_restarts = state.get("claims_restarts", 0)
        # Added within state version 4: a run under way in an older state began at an
        # unknown time (checked against the charts' runs once they are loaded).
        self.change_starts = {
            name: [_parse(start) for start in starts]
            for name, starts in state.get("change_starts", {}).items()
        }

    def _load_label_free(self, state: dict[str, Any]) -> None:
        self.predictions = state["predictions"]
        self.score_reference = list(state["score_reference"])
        self.acquisition_reference = {
            k: dict(v) for k, v in state.get("acquisition_reference", {}).items()
        }
        # Added within state version 3: states written before it were never re-baselined.
        self.rebaseline_id = state.get("rebaseline_id")

    def _designed_detectors(self) -> dict[str, Detector]:
        """Fresh detectors with the settings this monitor's detectors were built with."""
        detectors = self._design().detectors
        if sum(self.score_reference) >= self.policy.score_reference_cases:
            detectors.update(self._reference_detectors())
        return detectors

    def _reference_detectors(self) -> dict[str, Detector]:
        """The label-free drift tests against the stream's completed reference."""
        detectors: dict[str, Detector] = {"score_drift": self._score_drift()}
        detectors.update(design_acquisition_drift(self.acquisition_reference, self.policy))
        return detectors

    def estimated_performance(self) -> EstimatedPerformance | None:
        """The label-free estimate over the last full window, from the first claim's test."""
        for metric in sorted(self.claims):
            estimate = self.detectors.get(f"{metric}_estimate")
            if isinstance(estimate, WindowedPerformanceEstimate):
                return estimate.last_window()
        return None

    def _score_drift(self) -> WindowedKSDrift:
        """The score-drift test: armed on the stream's first ``score_reference_cases``
        predictions, its critical distance calibrated for that reference (a valid rate
        across the fleet at once), the reference then growing from the windows that pass to
        twenty windows (a valid rate for each stream too: with two windows of reference one
        stream in ten would run under half its ARL0 and one in ten over twice it). A site
        with 40 predictions a day is armed after 13 days and reaches the cap after 125;
        waiting for a 5,000-case reference to arm would leave it unwatched for those 125.
        The growth is the detector's running state; ``score_reference`` stays the first
        reference, from which the detector's settings are designed again on load."""
        return WindowedKSDrift(
            list(SCORE_EDGES),
            self.score_reference,
            self.policy.score_window,
            self.policy.test_arl0("predictions"),
            reference_cap=max(reference_cap(self.policy.score_window), sum(self.score_reference)),
        )


class StreamStates(NamedTuple):
    """A stream's two table states: outcomes' side and predictions' side."""

    labelled: dict[str, Any]
    label_free: dict[str, Any]


BUDGET_FIELDS = (
    "fleet_false_alarms_per_year",
    "fleet_streams",
    "stream_predictions_per_year",
    "followup_completeness",
    "planned_prevalence",
    "fleet_pooled_groups",
)
"""The plan's fields a stream whose policy predates the budget takes (:func:`budgeted_policy`)."""


def predates_budget(stored: list[Any] | dict[str, Any]) -> bool:
    """Whether a stored policy was written before policies had a fleet budget (a layout
    without ``fleet_false_alarms_per_year``; the release before it stored seven fields)."""
    if isinstance(stored, dict):
        return "fleet_false_alarms_per_year" not in stored
    names = [f.name for f in fields(MonitorPolicy)]
    return len(stored) <= names.index("fleet_false_alarms_per_year")


def budgeted_policy(stored: MonitorPolicy, plan: MonitorPolicy) -> MonitorPolicy:
    """A policy from before the budget, moved to the plan's budget and volumes.

    Only what the budget decides changes: every test's ARL0 and the claims tests' alpha,
    which the old layout fixed at ``arl0_cases`` and ``claims_alpha`` for every test of every
    stream. What shaped the stream's running states stays (the drops, so the charts' levels
    and alternatives; the reference size and windows; the acceptable-level rule, whose
    default the old release's states meet by charting at the point estimate until their
    registration gives the claims' bounds). So each running state means under the new design
    what it meant under the old: a CUSUM's sum is the same log-likelihood ratio (kept below
    its new threshold, :func:`_below_thresholds`), a claims test's evidence the same mixture.
    """
    return replace(stored, **{name: getattr(plan, name) for name in BUDGET_FIELDS})


def _policy(stored: list[Any] | dict[str, Any], plan: MonitorPolicy | None = None) -> MonitorPolicy:
    policy = MonitorPolicy(**stored) if isinstance(stored, dict) else MonitorPolicy(*stored)
    # JSON gives lists back; the policy is hashed (design caches), so tuples again
    explicit = tuple((metric, float(level)) for metric, level in policy.explicit_acceptable)
    policy = replace(policy, explicit_acceptable=explicit)
    if plan is not None and plan.budget() is not None and predates_budget(stored):
        return budgeted_policy(policy, plan)
    return policy


def _below_thresholds(chart: BernoulliMultiCUSUM, running: dict[str, Any]) -> dict[str, Any]:
    """A chart's running state with each CUSUM kept below its threshold: a stream moved to a
    design with a lower threshold (:func:`budgeted_policy`) does not alarm on what it had
    summed. Lowering a CUSUM's sum never makes it alarm sooner, so the design's false-alarm
    guarantee holds; a state already below every threshold is returned as it is."""
    return chart.running_state_below_thresholds(running)


def _applied(stored: list[int]) -> tuple[int, int, int]:
    """An applied position as stored: (offset, index, rank), or (offset, rank) as states
    from before batches wrote it (their records held one event: index 0)."""
    if len(stored) == 2:
        return (stored[0], 0, stored[1])
    return (stored[0], stored[1], stored[2])


def _iso(time: datetime | None) -> str | None:
    return time.isoformat() if time else None


def _parse(text: str | None) -> datetime | None:
    return datetime.fromisoformat(text) if text else None
