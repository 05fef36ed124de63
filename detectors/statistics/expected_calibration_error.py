"""Expected calibration error (ECE) on equal-width probability bins.

``ECE = sum_b (n_b / n) |mean(y in b) - mean(p in b)|`` (Naeini, Cooper & Hauskrecht 2015;
Guo et al. 2017). It is biased upwards in small samples (even a calibrated device has
``ECE > 0``), so compare windows of equal size, or against the ECE expected under
calibration (:func:`expected_calibration_error_under_calibration`).
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from detectors.base import check_integer
from detectors.statistics.logistic_recalibration import check_scores_and_labels

__all__ = ["expected_calibration_error", "expected_calibration_error_under_calibration"]


def _bins(p: npt.NDArray[np.float64], n_bins: int) -> npt.NDArray[np.intp]:
    n_bins = check_integer("n_bins", n_bins, minimum=1)
    # bins [0, 1/B), ..., [(B-1)/B, 1]: the top edge belongs to the last bin
    return np.minimum((p * n_bins).astype(np.intp), n_bins - 1)


def expected_calibration_error(
    scores: npt.ArrayLike, labels: npt.ArrayLike, n_bins: int = 10
) -> float:
    """ECE of probabilities ``scores`` against 0/1 ``labels`` on ``n_bins`` equal-width bins.

    >>> expected_calibration_error([0.1, 0.2, 0.8, 0.9], [0, 0, 1, 0])
    0.35
    """
    p, y = check_scores_and_labels(scores, labels)
    b = _bins(p, n_bins)
    count = np.bincount(b, minlength=n_bins)
    gap = np.abs(np.bincount(b, y, n_bins) - np.bincount(b, p, n_bins))
    return float(round(gap.sum() / count.sum(), 15))


def expected_calibration_error_under_calibration(
    scores: npt.ArrayLike, n_bins: int = 10, n_simulations: int = 1000, seed: int = 0
) -> tuple[float, float]:
    """Mean and 95th percentile of the ECE these scores would show if perfectly calibrated.

    Labels are simulated as ``Bernoulli(score)``; an observed ECE above the percentile is
    evidence of miscalibration beyond the estimator's small-sample bias.
    """
    p, _ = check_scores_and_labels(scores, np.zeros(np.size(scores)))
    n_simulations = check_integer("n_simulations", n_simulations, minimum=1)
    rng = np.random.default_rng(check_integer("seed", seed))
    b = _bins(p, n_bins)
    offsets = np.arange(n_simulations)[:, None] * n_bins
    index = (offsets + b[None, :]).ravel()
    y = (rng.random((n_simulations, p.size)) < p).astype(np.float64)
    total = n_simulations * n_bins
    sum_y = np.bincount(index, y.ravel(), total).reshape(n_simulations, n_bins)
    sum_p = np.bincount(b, p, n_bins)
    ece = np.abs(sum_y - sum_p[None, :]).sum(axis=1) / p.size
    return float(ece.mean()), float(np.quantile(ece, 0.95))
