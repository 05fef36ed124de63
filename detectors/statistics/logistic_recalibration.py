"""Calibration intercept and slope by logistic recalibration (Cox 1958).

Regress the observed outcome on the logit of the predicted probability,
``logit P(y = 1) = a + b logit(p)``: a calibrated device has slope ``b = 1`` (``b < 1``:
scores too extreme, as after overfitting or a case-mix change) and, with the slope held at
one, intercept ``a = 0`` (calibration-in-the-large: ``a > 0`` means events are more common
than the scores say). Van Calster et al. (2016), "A calibration hierarchy for risk
models", J Clin Epidemiol 74:167-176. Both are fitted by Newton-Raphson; intervals are
Wald intervals from the observed information.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy.special import expit, logit, ndtri

from detectors.base import check_finite_array, check_probability

__all__ = [
    "CalibrationFit",
    "calibration_intercept_slope",
    "check_scores_and_labels",
    "outcomes_separated",
]

_EPS = 1e-9
_NO_FINITE_FIT = (
    "the scores separate the outcomes (every positive scored at or above every negative, "
    "or the reverse), so the calibration slope has no finite maximum-likelihood estimate"
)


@dataclass(frozen=True, slots=True)
class CalibrationFit:
    """Calibration-in-the-large and calibration slope with Wald intervals."""

    intercept: float
    """Calibration-in-the-large ``a`` (slope fixed at 1): 0 when calibrated."""
    intercept_se: float
    intercept_lower: float
    intercept_upper: float
    slope: float
    """Calibration slope ``b``: 1 when calibrated."""
    slope_se: float
    slope_lower: float
    slope_upper: float
    n: int


def check_scores_and_labels(
    scores: npt.ArrayLike, labels: npt.ArrayLike
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """Scores as probabilities in [0, 1] and labels as 0/1, aligned, or :class:`ValueError`."""
    p = check_finite_array("scores", scores).ravel()
    y = check_finite_array("labels", labels).ravel()
    if p.shape != y.shape or p.size == 0:
        raise ValueError(f"need one label per score, got {p.size} scores and {y.size} labels")
    if not ((p >= 0) & (p <= 1)).all():
        raise ValueError("scores must be probabilities in [0, 1]")
    if not np.isin(y, (0.0, 1.0)).all():
        raise ValueError("labels must be 0 or 1")
    return p, y


def _newton(
    x: npt.NDArray[np.float64], offset: npt.NDArray[np.float64], y: npt.NDArray[np.float64]
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """Logistic regression of ``y`` on the columns of ``x`` with an offset: (beta, covariance)."""
    beta = np.zeros(x.shape[1])
    try:
        for _ in range(100):
            mu = expit(x @ beta + offset)
            info = (x * (mu * (1.0 - mu))[:, None]).T @ x
            step = np.linalg.solve(info, x.T @ (y - mu))
            beta = beta + step
            if np.max(np.abs(step)) < 1e-12:
                break
        mu = expit(x @ beta + offset)
        info = (x * (mu * (1.0 - mu))[:, None]).T @ x
        covariance = np.linalg.inv(info)
    except np.linalg.LinAlgError as exc:  # fitted probabilities saturated at 0 or 1
        raise ValueError(_NO_FINITE_FIT + " (nearly: the fit diverges)") from exc
    if not (np.isfinite(beta).all() and np.isfinite(covariance).all()):
        raise ValueError(_NO_FINITE_FIT + " (nearly: the fit diverges)")
    return beta, covariance


def outcomes_separated(scores: npt.NDArray[np.float64], labels: npt.NDArray[np.float64]) -> bool:
    """Whether the scores' order separates the outcomes (completely or with ties at the
    boundary): logistic regression on them then has no finite maximum-likelihood estimate."""
    clipped = np.clip(scores, _EPS, 1.0 - _EPS)  # as fitted: the clip can make ties
    positives, negatives = clipped[labels == 1.0], clipped[labels == 0.0]
    if positives.size == 0 or negatives.size == 0:
        return True
    return bool(positives.min() >= negatives.max() or negatives.min() >= positives.max())


def calibration_intercept_slope(
    scores: npt.ArrayLike, labels: npt.ArrayLike, alpha: float = 0.05
) -> CalibrationFit:
    """Calibration-in-the-large and slope of predicted probabilities against outcomes.

    Scores are clipped to ``[1e-9, 1 - 1e-9]`` before the logit. Needs both outcomes
    among the labels, and scores that do not separate them (every positive scored at or
    above every negative): otherwise the maximum-likelihood fit does not exist and
    :class:`ValueError` says so.

    Examples
    --------
    Scores that are too extreme (true log-odds are 0.7 times the claimed ones):

    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> scores = rng.beta(1, 3, 4000)
    >>> truth = 1 / (1 + np.exp(-0.7 * np.log(scores / (1 - scores))))
    >>> fit = calibration_intercept_slope(scores, rng.random(4000) < truth)
    >>> round(fit.slope, 2), (round(fit.slope_lower, 2), round(fit.slope_upper, 2))
    (0.67, (0.6, 0.74))
    """
    p, y = check_scores_and_labels(scores, labels)
    if y.min() == y.max():
        raise ValueError("calibration needs both outcomes among the labels")
    alpha = check_probability("alpha", alpha)
    if outcomes_separated(p, y):
        raise ValueError(_NO_FINITE_FIT)
    lp = logit(np.clip(p, _EPS, 1.0 - _EPS))
    z = float(ndtri(1.0 - alpha / 2.0))
    ones = np.ones((p.size, 1))
    (a,), cov_a = _newton(ones, lp, y)
    beta, cov = _newton(np.column_stack([ones, lp]), np.zeros_like(lp), y)
    a_se, b_se = math.sqrt(cov_a[0, 0]), math.sqrt(cov[1, 1])
    b = float(beta[1])
    return CalibrationFit(
        intercept=float(a),
        intercept_se=a_se,
        intercept_lower=float(a) - z * a_se,
        intercept_upper=float(a) + z * a_se,
        slope=b,
        slope_se=b_se,
        slope_lower=b - z * b_se,
        slope_upper=b + z * b_se,
        n=int(p.size),
    )
