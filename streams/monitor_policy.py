"""How hard a stream is watched: its tests' false-alarm rates, from the fleet's budget.

A :class:`MonitorPolicy` sets every test a stream runs (its in-control ARL in its own
units, the claims tests' alpha) and the levels its labelled charts are designed at; with a
surveillance plan's budget (:mod:`streams.false_alarm_budget`) each test spends an equal part
of the stream's share of it. :func:`planned_policy` is the policy new streams get.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Literal

from postmarket.claim_levels import AcceptableRule, LevelPolicy
from streams.false_alarm_budget import FleetBudget, Unit

if TYPE_CHECKING:
    from postmarket.config import Settings

ClaimedMetric = Literal["sensitivity", "specificity"]
CHARTED_METRICS: tuple[ClaimedMetric, ...] = ("sensitivity", "specificity")
TESTS_PER_STREAM = 3 * len(CHARTED_METRICS) + 3
"""Tests a stream runs when both metrics are claimed (per metric a multi-chart CUSUM, which
spends one test's part between its alternatives, a claims test and
the label-free estimate; the calibration, score-drift and acquisition-drift tests): each
spends an equal part of the stream's share of the fleet budget. A stream with fewer claims
spends less than its share."""
SURVEILLANCE_YEAR = timedelta(days=365)
"""The claims tests' year: each restarts at its stream's next one (case time)."""


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
    the estimate is also adjusted to each window's prevalence
    (:mod:`detectors.statistics.prior_shift`); the tolerance stays, as the adjustment reads a
    fall of the positives' scores as fewer positives."""
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
