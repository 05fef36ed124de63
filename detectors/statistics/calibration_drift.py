"""Calibration drift: intercept, slope and ECE of consecutive windows of labelled cases.

For reports and for the stream layer's periodic jobs: the cases of a stream (in event-time
order) are cut into consecutive windows of ``window`` cases and each window's calibration
is summarised (:mod:`detectors.statistics.logistic_recalibration`,
:mod:`detectors.statistics.expected_calibration_error`). A window whose intercept or slope interval
excludes 0 or 1 is flagged. With many windows, flags at ``alpha`` accumulate; for a
sequential alarm on calibration-in-the-large feed the residuals ``y - p`` to
:class:`detectors.normal_cusum.NormalCUSUM` instead.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from detectors.base import check_integer, check_probability
from detectors.statistics.expected_calibration_error import expected_calibration_error
from detectors.statistics.logistic_recalibration import (
    CalibrationFit,
    calibration_intercept_slope,
    check_scores_and_labels,
    outcomes_separated,
)

__all__ = ["WindowCalibration", "calibration_over_windows"]


@dataclass(frozen=True, slots=True)
class WindowCalibration:
    """Calibration of one window of cases."""

    start: int
    """Index of the window's first case."""
    n: int
    observed_rate: float
    expected_rate: float
    """Mean label and mean score."""
    ece: float
    fit: CalibrationFit | None
    """Intercept and slope, or ``None`` if the window has a single outcome or its scores
    separate the outcomes (no finite fit)."""
    miscalibrated: bool
    """The intercept interval excludes 0 or the slope interval excludes 1."""


def calibration_over_windows(
    scores: npt.ArrayLike,
    labels: npt.ArrayLike,
    window: int,
    alpha: float = 0.05,
    n_bins: int = 10,
) -> list[WindowCalibration]:
    """Calibration of each complete window of ``window`` consecutive cases.

    Examples
    --------
    Scores calibrated for 2000 cases, then events become 1.5 times as likely in odds:

    >>> import numpy as np
    >>> rng = np.random.default_rng(3)
    >>> scores = rng.beta(1, 4, 4000)
    >>> odds = scores / (1 - scores) * np.where(np.arange(4000) < 2000, 1.0, 1.5)
    >>> labels = rng.random(4000) < odds / (1 + odds)
    >>> for w in calibration_over_windows(scores, labels, window=1000):
    ...     print(w.start, round(w.fit.intercept, 2), w.miscalibrated)
    0 0.01 False
    1000 -0.06 False
    2000 0.53 True
    3000 0.41 True
    """
    p, y = check_scores_and_labels(scores, labels)
    window = check_integer("window", window, minimum=2)
    alpha = check_probability("alpha", alpha)
    n_bins = check_integer("n_bins", n_bins, minimum=1)
    out = []
    for start in range(0, p.size - window + 1, window):
        wp, wy = p[start : start + window], y[start : start + window]
        fittable = wy.min() != wy.max() and not outcomes_separated(wp, wy)
        fit = calibration_intercept_slope(wp, wy, alpha) if fittable else None
        flagged = fit is not None and (
            not fit.intercept_lower <= 0.0 <= fit.intercept_upper
            or not fit.slope_lower <= 1.0 <= fit.slope_upper
        )
        out.append(
            WindowCalibration(
                start=start,
                n=window,
                observed_rate=float(np.mean(wy)),
                expected_rate=float(np.mean(wp)),
                ece=expected_calibration_error(wp, wy, n_bins),
                fit=fit,
                miscalibrated=flagged,
            )
        )
    return out
