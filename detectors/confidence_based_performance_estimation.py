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
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy.special import ndtri

from detectors.logistic_recalibration import (
    CalibrationFit,
    calibration_intercept_slope,
    check_scores_and_labels,
)
from detectors.spiegelhalter_z_test import spiegelhalter_z_test

__all__ = [
    "CalibrationAssumption",
    "EstimatedPerformance",
    "PerformanceEstimate",
    "check_calibration_assumption",
    "estimate_performance",
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


def _ratio(numerator: float, denominator: float, variance: float, z: float) -> PerformanceEstimate:
    if denominator <= 0:
        return PerformanceEstimate(math.nan, math.nan, 0.0, 1.0)
    estimate = numerator / denominator
    se = math.sqrt(max(variance, 0.0)) / denominator
    return PerformanceEstimate(
        estimate, se, max(0.0, estimate - z * se), min(1.0, estimate + z * se)
    )


def estimate_performance(
    scores: npt.ArrayLike, threshold: float = 0.5, alpha: float = 0.05
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
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must lie in (0, 1), got {alpha}")
    z = float(ndtri(1.0 - alpha / 2.0))
    d = (p >= threshold).astype(np.float64)
    v = p * (1.0 - p)
    tp, positives = float((d * p).sum()), float(p.sum())
    tn, negatives = float(((1 - d) * (1 - p)).sum()), float((1 - p).sum())
    sens = tp / positives if positives > 0 else 0.0
    spec = tn / negatives if negatives > 0 else 0.0
    # Var of a ratio A/B of sums of the same Bernoulli labels (delta method)
    var_sens = float((d * v).sum()) * (1 - sens) ** 2 + float(((1 - d) * v).sum()) * sens**2
    var_spec = float(((1 - d) * v).sum()) * (1 - spec) ** 2 + float((d * v).sum()) * spec**2
    return EstimatedPerformance(
        sensitivity=_ratio(tp, positives, var_sens, z),
        specificity=_ratio(tn, negatives, var_spec, z),
        ppv=_ratio(tp, float(d.sum()), float((d * v).sum()), z),
        expected_prevalence=positives / p.size,
        n=int(p.size),
    )


def check_calibration_assumption(
    scores: npt.ArrayLike, labels: npt.ArrayLike, alpha: float = 0.05
) -> CalibrationAssumption:
    """Test the calibration the label-free estimate relies on, on the labelled cases.

    Three tests, each at ``alpha / 3``: Spiegelhalter's z, calibration-in-the-large = 0 and
    calibration slope = 1 (:func:`detectors.logistic_recalibration.calibration_intercept_slope`).
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
