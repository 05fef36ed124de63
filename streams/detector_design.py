"""The detectors a stream runs, designed from its claims, its policy and its own reference.

Labelled, per claimed metric at its acceptable and rejectable levels: a multi-chart (GLR)
Bernoulli CUSUM (:func:`labelled_chart`), the anytime-valid claims test and the label-free
estimate; and the calibration test (:func:`design_detectors`). Label-free, once the stream's
first predictions have formed its reference: the score-drift test and a drift test per
acquisition dimension (:func:`design_reference_drift`). Every test's false-alarm rate spends
its part of the fleet budget (:class:`~streams.monitor_policy.MonitorPolicy`).
"""

from __future__ import annotations

import functools
from typing import NamedTuple

from detectors import (
    BernoulliMultiCUSUM,
    BetaBinomialConfidenceSequence,
    Detector,
    WindowedCalibrationTest,
    WindowedChiSquareDrift,
    WindowedKSDrift,
    WindowedPerformanceEstimate,
    multi_cusum_design,
    multi_cusum_resolution,
)
from detectors.bernoulli_glr_cusum import glr_alternatives
from detectors.reference_calibration import reference_cap
from postmarket.claim_levels import ChartLevels
from streams.acquisition import ACQUISITION_DIMENSIONS
from streams.charted_claims import design_levels
from streams.false_alarm_budget import Unit
from streams.monitor_policy import ClaimedMetric, MonitorPolicy

SCORE_EDGES = tuple(i / 10 for i in range(1, 10))
"""Deciles of the score scale: the fixed bins of the score-drift reference."""
UNKNOWN_CATEGORY = "(unknown)"
"""An acquisition dimension the prediction's header did not give."""
OTHER_CATEGORY = "(other)"
"""Reference categories beyond the most frequent MAX_REFERENCE_CATEGORIES of a dimension."""
MAX_REFERENCE_CATEGORIES = 8
"""Categories kept per dimension in the acquisition reference (bounded state)."""
LABEL_FREE_KINDS = ("_drift", "_estimate")
"""Name endings of the detectors that run on predictions, not outcomes."""
REFERENCE_DRIFT_DETECTORS = (
    "score_drift",
    *(f"{dimension}_drift" for dimension in ACQUISITION_DIMENSIONS),
)
"""Every test against the stream's own reference (:func:`design_reference_drift`):
what a re-baselining decision restarts."""


def is_label_free(detector: str) -> bool:
    """Whether a stream detector runs on predictions (placed by prediction count)."""
    return detector.endswith(LABEL_FREE_KINDS)


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
    glr_alternatives`). A sensitivity acceptable at 0.818, less a drop of 0.07:

    >>> [round(miss_rate, 4) for miss_rate in chart_alternatives(0.818, 0.748)]
    [0.1995, 0.2395, 0.392]
    """
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


class Design(NamedTuple):
    """What a stream's claims give it: its detectors, the levels its labelled charts are
    designed at, and the claimed metrics no chart can monitor, with why."""

    detectors: dict[str, Detector]
    levels: dict[ClaimedMetric, ChartLevels]
    unmonitored: dict[ClaimedMetric, str]


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
    (:func:`design_score_drift`).
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


def design_score_drift(score_reference: list[int], policy: MonitorPolicy) -> WindowedKSDrift:
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
        score_reference,
        policy.score_window,
        policy.test_arl0("predictions"),
        reference_cap=max(reference_cap(policy.score_window), sum(score_reference)),
    )


def design_reference_drift(
    score_reference: list[int],
    acquisition_reference: dict[str, dict[str, int]],
    policy: MonitorPolicy,
) -> dict[str, Detector]:
    """The label-free drift tests against a stream's completed reference: what a
    re-baselining decision restarts (:data:`REFERENCE_DRIFT_DETECTORS`)."""
    detectors: dict[str, Detector] = {"score_drift": design_score_drift(score_reference, policy)}
    detectors.update(design_acquisition_drift(acquisition_reference, policy))
    return detectors
