"""Label-free performance estimation from calibrated scores (confidence-based, like CBPE).

Ground truth arrives months late (pathology, follow-up imaging), if at all. If the
device's scores are calibrated probabilities of the referable condition, each case's
expected contribution to the confusion matrix is known without its label: a case with
score ``p`` and decision ``d`` (``d = 1`` when ``p >= threshold``) adds ``d p`` expected
true positives, ``(1 - d) p`` false negatives, ``d (1 - p)`` false positives and
``(1 - d)(1 - p)`` true negatives. Summed over a window this estimates sensitivity,
specificity and PPV (NannyML's confidence-based performance estimation; Kivimaki et al.
2024, arXiv:2407.08649, analyse it).

Uncertainty: under calibration the labels are independent ``Bernoulli(p_i)``, so the
realised metric on these cases is random around the estimate; its standard error follows
by the delta method for a ratio of sums. It does not include any error in the scores'
calibration itself, which is the method's one assumption: check it on the labelled part
with :func:`check_calibration_assumption` before trusting an estimate.

Prior shift: scores calibrated at the device's reference prevalence are not calibrated
at a site with another prevalence, although the device's sensitivity and specificity
(which are class-conditional) are unchanged there; the plain estimate is then biased by
a few points. Given ``reference_prevalence``, the window's prevalence is estimated by EM
(:mod:`detectors.statistics.prior_shift`, Saerens et al. 2002) and the scores are moved to it by
Bayes' theorem before the sums are taken. The estimated prevalence carries sampling error
of its own: the intervals add its delta-method share, ``(dm / dpi)**2 var(pi_hat)``
(sandwich variance of the EM fixed point), to the conditional variance above. The
adjustment assumes pure prior shift (``P(score | y)`` the same at the site as where the
scores were calibrated) and a correct reference prevalence; a change of the device
itself is what the estimate is there to see, and it also moves the estimated prevalence.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy.special import ndtri

from detectors.base import check_finite, check_finite_array, check_probability
from detectors.statistics.logistic_recalibration import (
    CalibrationFit,
    calibration_intercept_slope,
    check_scores_and_labels,
)
from detectors.statistics.prior_shift import (
    PriorShift,
    adjust_to_prevalence,
    adjusted_posterior_slope,
    estimate_prevalence,
)
from detectors.statistics.spiegelhalter_z_test import spiegelhalter_z_test

__all__ = [
    "AdjustedScores",
    "CalibrationAssumption",
    "EstimatedPerformance",
    "MetricWeightSums",
    "PerformanceEstimate",
    "ScoreSums",
    "check_calibration_assumption",
    "conditional_variance",
    "estimate_performance",
    "metric_weight_sums",
    "adjust_for_prior_shift",
    "performance_from_adjusted",
    "performance_from_sums",
    "prevalence_variance_shares",
    "prior_shift_sampling_variance",
    "widen_for_prevalence",
    "sampling_variance",
    "score_sums",
]


@dataclass(frozen=True, slots=True)
class PerformanceEstimate:
    """One estimated metric with its standard error and Wald interval (clipped to [0, 1])."""

    estimate: float
    se: float
    lower: float
    upper: float


@dataclass(frozen=True, slots=True)
class EstimatedPerformance:
    """Sensitivity, specificity and PPV estimated without labels."""

    sensitivity: PerformanceEstimate
    specificity: PerformanceEstimate
    ppv: PerformanceEstimate
    expected_prevalence: float
    n: int


@dataclass(frozen=True, slots=True)
class CalibrationAssumption:
    """Whether the labelled cases support the calibration the estimate relies on."""

    spiegelhalter_z: float
    spiegelhalter_p_value: float
    fit: CalibrationFit
    holds: bool
    """No evidence against calibration at level ``alpha`` (Bonferroni over three tests)."""


@dataclass(frozen=True, slots=True)
class ScoreSums:
    """The running sums of (score, decision) pairs that every estimate here is built from.

    ``called`` / ``uncalled`` are the sums of the scores ``p`` over the cases decided
    positive / negative, ``called_sq`` / ``uncalled_sq`` the sums of ``p**2``; the
    variance terms ``p (1 - p)`` follow as ``called - called_sq``. Six numbers, so a
    stream can keep them per window in O(1) memory
    (:class:`detectors.windowed_performance_estimate.WindowedPerformanceEstimate`).
    """

    n: int
    n_called: int
    called: float
    uncalled: float
    called_sq: float
    uncalled_sq: float


@dataclass(frozen=True, slots=True)
class MetricWeightSums:
    """Sensitivity or specificity as a ratio ``hit / (hit + miss)`` of summed weights.

    The weight of a case is its score ``p`` for sensitivity (its expected share of the
    positives) and ``1 - p`` for specificity; ``hit`` sums it over the cases the device
    got right in expectation (called positive, resp. negative), ``miss`` over the others.
    ``*_sq`` are the sums of squared weights and ``*_var`` the sums of ``p (1 - p)``.
    """

    hit: float
    miss: float
    hit_sq: float
    miss_sq: float
    hit_var: float
    miss_var: float


def score_sums(scores: npt.ArrayLike, called: npt.ArrayLike) -> ScoreSums:
    """The :class:`ScoreSums` of calibrated ``scores`` with the device's decisions ``called``."""
    p = check_finite_array("scores", scores).ravel()
    d = np.asarray(called, dtype=bool).ravel()
    if p.shape != d.shape:
        raise ValueError("scores and decisions need the same length")
    hit, rest = p[d], p[~d]
    return ScoreSums(
        n=int(p.size),
        n_called=int(d.sum()),
        called=float(hit.sum()),
        uncalled=float(rest.sum()),
        called_sq=float((hit * hit).sum()),
        uncalled_sq=float((rest * rest).sum()),
    )


def metric_weight_sums(metric: str, sums: ScoreSums) -> MetricWeightSums:
    """The sums behind ``metric`` (``"sensitivity"`` or ``"specificity"``)."""
    called_var = sums.called - sums.called_sq
    uncalled_var = sums.uncalled - sums.uncalled_sq
    if metric == "sensitivity":
        return MetricWeightSums(
            sums.called, sums.uncalled, sums.called_sq, sums.uncalled_sq, called_var, uncalled_var
        )
    if metric == "specificity":
        n_uncalled = sums.n - sums.n_called
        # sum (1 - p) and sum (1 - p)^2 over each group, from the sums of p and p^2
        return MetricWeightSums(
            n_uncalled - sums.uncalled,
            sums.n_called - sums.called,
            max(n_uncalled - 2.0 * sums.uncalled + sums.uncalled_sq, 0.0),
            max(sums.n_called - 2.0 * sums.called + sums.called_sq, 0.0),
            uncalled_var,
            called_var,
        )
    raise ValueError(f"metric must be 'sensitivity' or 'specificity', got {metric!r}")


def conditional_variance(w: MetricWeightSums, ratio: float) -> float:
    """Delta-method variance of ``hit_labels / all_labels`` given the scores, times the
    squared denominator: how far the metric realised on these cases' labels strays from
    the estimate ``ratio`` when each label is ``Bernoulli(p)``."""
    return w.hit_var * (1.0 - ratio) ** 2 + w.miss_var * ratio**2


def sampling_variance(w: MetricWeightSums, ratio: float) -> float:
    """Variance of the ratio estimator ``hit / (hit + miss)`` over case mixes, times the
    squared denominator (linearised, with residuals ``weight * (hit - ratio)``)."""
    return w.hit_sq * (1.0 - ratio) ** 2 + w.miss_sq * ratio**2


def _ratio(numerator: float, denominator: float, variance: float, z: float) -> PerformanceEstimate:
    if denominator <= 0:
        return PerformanceEstimate(math.nan, math.nan, 0.0, 1.0)
    estimate = numerator / denominator
    se = math.sqrt(max(variance, 0.0)) / denominator
    return PerformanceEstimate(
        estimate, se, max(0.0, estimate - z * se), min(1.0, estimate + z * se)
    )


def _metric(w: MetricWeightSums, z: float) -> PerformanceEstimate:
    total = w.hit + w.miss
    ratio = w.hit / total if total > 0 else 0.0
    return _ratio(w.hit, total, conditional_variance(w, ratio), z)


def performance_from_sums(sums: ScoreSums, alpha: float = 0.05) -> EstimatedPerformance:
    """Sensitivity, specificity and PPV estimated from a window's :class:`ScoreSums`.

    The one implementation behind :func:`estimate_performance` and the streaming
    detector; ``alpha`` is the two-sided level of the intervals.
    """
    z = float(ndtri(1.0 - check_probability("alpha", alpha) / 2.0))
    sensitivity = metric_weight_sums("sensitivity", sums)
    return EstimatedPerformance(
        sensitivity=_metric(sensitivity, z),
        specificity=_metric(metric_weight_sums("specificity", sums), z),
        ppv=_ratio(sums.called, float(sums.n_called), sensitivity.hit_var, z),
        expected_prevalence=(sums.called + sums.uncalled) / sums.n if sums.n else math.nan,
        n=sums.n,
    )


@dataclass(frozen=True, slots=True)
class AdjustedScores:
    """Scores moved to their EM-estimated prevalence, with what the variances need.

    ``posteriors`` are the adjusted scores, ``slopes`` their derivatives with respect to
    the prevalence, ``called`` the device's decisions and ``weights`` the case counts
    (1 per case, or a histogram bin's count when ``posteriors`` stand for bin means).
    """

    shift: PriorShift
    posteriors: npt.NDArray[np.float64]
    slopes: npt.NDArray[np.float64]
    called: npt.NDArray[np.bool_]
    weights: npt.NDArray[np.float64]

    @property
    def sums(self) -> ScoreSums:
        """The :class:`ScoreSums` of the adjusted scores."""
        q, d, c = self.posteriors, self.called, self.weights
        return ScoreSums(
            n=int(round(float(c.sum()))),
            n_called=int(round(float(c[d].sum()))),
            # (c q) q <= c q term by term and both sum in the same order, so the sums keep
            # sum c q**2 <= sum c q <= sum c exactly (stored states are checked for it)
            called=float((c[d] * q[d]).sum()),
            uncalled=float((c[~d] * q[~d]).sum()),
            called_sq=float((c[d] * q[d] * q[d]).sum()),
            uncalled_sq=float((c[~d] * q[~d] * q[~d]).sum()),
        )


def adjust_for_prior_shift(
    scores: npt.ArrayLike,
    called: npt.ArrayLike,
    reference_prevalence: float,
    weights: npt.ArrayLike | None = None,
) -> AdjustedScores:
    """Scores calibrated at ``reference_prevalence`` moved to their EM-estimated prevalence.

    ``weights`` are case counts (for histogram bins); the decisions ``called`` stay the
    device's own (made on the raw scores).
    """
    p = np.asarray(scores, dtype=np.float64).ravel()
    d = np.asarray(called, dtype=bool).ravel()
    if p.shape != d.shape:
        raise ValueError("scores and decisions need the same length")
    c = np.ones(p.size) if weights is None else np.asarray(weights, dtype=np.float64).ravel()
    shift = estimate_prevalence(p, reference_prevalence, c)
    return AdjustedScores(
        shift=shift,
        posteriors=adjust_to_prevalence(p, shift.reference_prevalence, shift.prevalence),
        slopes=adjusted_posterior_slope(p, shift.reference_prevalence, shift.prevalence),
        called=d,
        weights=c,
    )


def _metric_terms(
    metric: str, adjusted: AdjustedScores
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """Per case: the metric's weight, its derivative in the prevalence, and ``hit``."""
    q, dq, d = adjusted.posteriors, adjusted.slopes, adjusted.called.astype(np.float64)
    if metric == "sensitivity":
        return q, dq, d
    if metric == "specificity":
        return 1.0 - q, -dq, 1.0 - d
    raise ValueError(f"metric must be 'sensitivity' or 'specificity', got {metric!r}")


def prior_shift_sampling_variance(metric: str, adjusted: AdjustedScores, ratio: float) -> float:
    """:func:`sampling_variance` of the adjusted estimate, the prevalence's error included.

    The estimate and the EM prevalence are solved jointly from ``sum_i c_i (q_i - pi) = 0``
    and ``sum_i c_i w_i (h_i - r) = 0``; the stacked sandwich gives the variance of ``r``
    times the squared denominator as ``sum_i c_i (w_i (h_i - r) - k (q_i - pi))**2`` with
    ``k = sum c w' (h - r) / sum c (q' - 1)``. ``inf`` when the scores cannot identify
    the prevalence.
    """
    w, dw, hit = _metric_terms(metric, adjusted)
    c, pi = adjusted.weights, adjusted.shift.prevalence
    information = float(np.dot(c, adjusted.slopes - 1.0))
    if not information < -1e-12 * float(c.sum()):
        return math.inf
    k = float(np.dot(c, dw * (hit - ratio))) / information
    influence = w * (hit - ratio) - k * (adjusted.posteriors - pi)
    return float(np.dot(c, influence**2))


def _squared(value: float) -> float:
    """``value**2``, infinite rather than an OverflowError when a slope over a vanishing
    denominator is astronomically large (scores of 1e-100: the share is then unbounded)."""
    return value * value


def prevalence_variance_shares(
    adjusted: AdjustedScores, estimated: EstimatedPerformance
) -> tuple[float, float, float]:
    """``(dm / dpi)**2 var(pi_hat)`` for sensitivity, specificity and PPV."""
    q, dq, c = adjusted.posteriors, adjusted.slopes, adjusted.weights
    d = adjusted.called.astype(np.float64)
    information = float(np.dot(c, 1.0 - dq))
    if adjusted.shift.prevalence in (0.0, 1.0) or information <= 1e-12 * float(c.sum()):
        return math.inf, math.inf, math.inf
    variance = float(np.dot(c, (q - adjusted.shift.prevalence) ** 2)) / information**2
    # d/dpi of sum(c w hit) / sum(c w) is (sum(c w' hit) - m sum(c w')) / sum(c w), with
    # w' = q' for sensitivity and -q' for specificity; PPV's denominator (the called
    # cases) does not move with pi.
    slope_total, slope_called = float(np.dot(c, dq)), float(np.dot(c, dq * d))
    derivatives = (
        (estimated.sensitivity.estimate, slope_called, float(np.dot(c, q)), slope_total),
        (
            estimated.specificity.estimate,
            slope_called - slope_total,
            float(np.dot(c, 1.0 - q)),
            -slope_total,
        ),
        (estimated.ppv.estimate, slope_called, float(np.dot(c, d)), 0.0),
    )
    shares = [
        _squared((hit_slope - m * all_slope) / denominator) * variance
        if math.isfinite(m) and denominator > 0
        else 0.0
        for m, hit_slope, denominator, all_slope in derivatives
    ]
    return shares[0], shares[1], shares[2]


def _widened(estimate: PerformanceEstimate, extra: float, z: float) -> PerformanceEstimate:
    if not math.isfinite(estimate.estimate):
        return estimate
    if not math.isfinite(extra):
        return PerformanceEstimate(estimate.estimate, math.inf, 0.0, 1.0)
    se = math.sqrt(estimate.se**2 + extra)
    return PerformanceEstimate(
        estimate.estimate,
        se,
        max(0.0, estimate.estimate - z * se),
        min(1.0, estimate.estimate + z * se),
    )


def performance_from_adjusted(
    adjusted: AdjustedScores, alpha: float = 0.05
) -> EstimatedPerformance:
    """:func:`performance_from_sums` of prior-shift-adjusted scores, with intervals widened
    by the estimated prevalence's share of the error (``inf`` se, interval [0, 1], when the
    prevalence is not identified or on the boundary)."""
    estimated = performance_from_sums(adjusted.sums, alpha)
    return widen_for_prevalence(estimated, prevalence_variance_shares(adjusted, estimated), alpha)


def widen_for_prevalence(
    estimated: EstimatedPerformance, shares: tuple[float, float, float], alpha: float = 0.05
) -> EstimatedPerformance:
    """``estimated`` with each metric's variance increased by its prevalence share."""
    z = float(ndtri(1.0 - alpha / 2.0))
    return EstimatedPerformance(
        sensitivity=_widened(estimated.sensitivity, shares[0], z),
        specificity=_widened(estimated.specificity, shares[1], z),
        ppv=_widened(estimated.ppv, shares[2], z),
        expected_prevalence=estimated.expected_prevalence,
        n=estimated.n,
    )


def estimate_performance(
    scores: npt.ArrayLike,
    threshold: float = 0.5,
    alpha: float = 0.05,
    reference_prevalence: float | None = None,
) -> EstimatedPerformance:
    """Estimate sensitivity, specificity and PPV at ``threshold`` from calibrated scores.

    Parameters
    ----------
    scores
        Calibrated probabilities that each case is referable (positive).
    threshold
        The device's operating threshold: a case is called positive when its score is at
        or above it.
    alpha
        Two-sided level of the intervals. A metric whose denominator is expected to be
        empty (no positives expected, no positive decisions) is ``nan`` with interval [0, 1].
    reference_prevalence
        The prevalence the scores are calibrated at. Given, the scores are first moved to
        their EM-estimated prevalence (see the module's notes on prior shift) and the
        intervals include that estimate's error; ``expected_prevalence`` is then the EM
        estimate. ``None``: the scores are taken as calibrated where they are.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> scores = rng.beta(0.6, 1.8, 5000)
    >>> estimated = estimate_performance(scores, threshold=0.3)
    >>> labels = rng.random(5000) < scores  # revealed later
    >>> calls = scores >= 0.3
    >>> round(estimated.sensitivity.estimate, 3), round(estimated.sensitivity.se, 3)
    (0.72, 0.011)
    >>> round(float(calls[labels].mean()), 3)
    0.714
    """
    p, _ = check_scores_and_labels(scores, np.zeros(np.size(scores)))
    threshold = check_finite(threshold, "threshold")
    alpha = check_probability("alpha", alpha)
    if reference_prevalence is None:
        return performance_from_sums(score_sums(p, p >= threshold), alpha)
    return performance_from_adjusted(
        adjust_for_prior_shift(p, p >= threshold, reference_prevalence), alpha
    )


def check_calibration_assumption(
    scores: npt.ArrayLike, labels: npt.ArrayLike, alpha: float = 0.05
) -> CalibrationAssumption:
    """Test the calibration the label-free estimate relies on, on the labelled cases.

    Three tests, each at ``alpha / 3``: Spiegelhalter's z, calibration-in-the-large = 0 and
    calibration slope = 1
    (:func:`detectors.statistics.logistic_recalibration.calibration_intercept_slope`).
    """
    p, y = check_scores_and_labels(scores, labels)
    z, p_value = spiegelhalter_z_test(p, y)
    fit = calibration_intercept_slope(p, y, alpha / 3.0)
    holds = (
        p_value >= alpha / 3.0
        and fit.intercept_lower <= 0.0 <= fit.intercept_upper
        and fit.slope_lower <= 1.0 <= fit.slope_upper
    )
    return CalibrationAssumption(z, p_value, fit, holds)
