"""Spiegelhalter's z-test of calibration for probabilistic predictions.

Spiegelhalter (1986), "Probabilistic prediction in patient management and clinical
trials", Statistics in Medicine 5(5):421-433. Under perfect calibration (each label is
``Bernoulli(p_i)``) the Brier score has known mean and variance; its standardised value

    z = sum (y_i - p_i)(1 - 2 p_i) / sqrt(sum (1 - 2 p_i)^2 p_i (1 - p_i))

is approximately standard normal. Large ``|z|`` means the scores are not calibrated on
these cases. It needs no binning, so it works on the small labelled part of a stream.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt
from scipy.special import ndtr

from detectors.statistics.logistic_recalibration import check_scores_and_labels

__all__ = ["spiegelhalter_z_test"]


def spiegelhalter_z_test(scores: npt.ArrayLike, labels: npt.ArrayLike) -> tuple[float, float]:
    """Spiegelhalter's ``z`` and its two-sided p-value under perfect calibration.

    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> scores = rng.beta(1, 3, 2000)
    >>> z, p = spiegelhalter_z_test(scores, rng.random(2000) < scores)
    >>> round(z, 2), round(p, 2)
    (-0.49, 0.62)
    """
    p, y = check_scores_and_labels(scores, labels)
    variance = float(np.sum((1.0 - 2.0 * p) ** 2 * p * (1.0 - p)))
    if variance <= 0:
        raise ValueError("the test needs scores strictly between 0 and 1 (other than 0.5)")
    z = float(np.sum((y - p) * (1.0 - 2.0 * p))) / math.sqrt(variance)
    return z, float(2.0 * ndtr(-abs(z)))
