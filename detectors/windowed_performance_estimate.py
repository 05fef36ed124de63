"""Label-free sensitivity or specificity in tumbling windows, tested against the claim.

The streaming form of :func:`detectors.confidence_based_performance_estimation.estimate_performance`
(confidence-based performance estimation, NannyML's CBPE): each case brings its calibrated
score ``p`` and the device's decision, and the window keeps the six sums of
:class:`~detectors.confidence_based_performance_estimation.ScoreSums` (counts, and the
sums of ``p`` and ``p**2`` over called-positive and called-negative cases), from which the
estimates of sensitivity, specificity and PPV follow without a single label.

The test
--------
At a window's last case the monitored metric's estimate ``m`` is compared with the
claimed value ``c`` by the one-sided ``z = (c - m) / se`` at level ``alpha_w = window /
arl0``, so the in-control ARL is at least ``arl0`` cases (the argument of
:mod:`detectors.windowed_ks_drift`).

The ``se`` of the test is *not* the one :func:`estimate_performance` reports. That one is
conditional on the scores: how far the metric realised on these cases' labels strays from
``m``. Under the null the question is how far ``m`` itself strays from ``c`` from one
window's case mix to the next, which is the sampling variance of a ratio estimator,
``sum_i w_i^2 (h_i - r)^2 / (sum_i w_i)^2`` (``w`` the case's weight, ``p`` for
sensitivity and ``1 - p`` for specificity, ``h`` = 1 when the decision is right for the
metric). Simulation with calibrated Beta-distributed scores shows the difference matters:
with the conditional ``se`` the false-alarm rate of the specificity test was 0.13-0.15 per
window at a nominal 0.10 (and 0.019-0.029 at 0.01) for low-prevalence case mixes, while
the sampling ``se`` kept it at or below nominal in every mix tried. The variance is
evaluated both at ``r = m`` (Wald) and at ``r = c`` (score) and the larger is used: the
Wald form alone is conservative but vanishes in degenerate windows, the score form alone
was slightly liberal (skewed ratio), the larger of the two is conservative and positive.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, Literal

from scipy.special import ndtri

from detectors.base import Detector, DetectorResult, check_finite, check_window, window_result
from detectors.confidence_based_performance_estimation import (
    EstimatedPerformance,
    ScoreSums,
    metric_weight_sums,
    performance_from_sums,
    sampling_variance,
)

__all__ = ["WindowedPerformanceEstimate"]

_METRICS = ("sensitivity", "specificity")


class WindowedPerformanceEstimate(Detector):
    """CBPE estimate of sensitivity or specificity per window, one-sided test against a claim.

    Parameters
    ----------
    metric
        ``"sensitivity"`` or ``"specificity"``: the metric tested against ``claimed``.
    claimed
        The claimed (registered) value of the metric, in (0, 1).
    window
        Cases per tumbling window; the test runs when a window is full.
    arl0
        Target in-control ARL in cases; each window is tested at ``window / arl0``.

    Notes
    -----
    ``update(x, risk=decision)``: ``x`` is the case's calibrated score in [0, 1] and
    ``risk`` is *required* and is the device's decision, ``1.0`` when it called the case
    positive and ``0.0`` when negative (not a probability, unlike other detectors with
    ``uses_risk``). The estimate is only as good as the scores' calibration: check it on
    the labelled part with :class:`detectors.windowed_calibration_test.WindowedCalibrationTest`.

    ``statistic`` is the one-sided ``z = (claimed - estimate) / se`` of the last completed
    window (positive when the estimate falls short of the claim; 0 before the first
    window, or when a window had no expected positives, resp. negatives); ``threshold`` is
    the normal critical value at ``window / arl0``; the detector fires only on a window's
    last case, then starts the next window. ``n_cases`` counts the current window's cases
    and ``n_events`` its cases decided positive. :meth:`last_window` gives the last
    completed window's sensitivity, specificity and PPV with 95 % intervals (their ``se``
    is the batch function's, conditional on the scores).

    Memory: six numbers for the current window and five for the last completed one:
    about 530 bytes per instance in process (``detectors.base.state_size_bytes``), at
    most about 200 bytes of ``json.dumps`` of the running state and about 350 with the
    settings.

    Examples
    --------
    Calibrated scores throughout; after case 1500 the device calls positive only from
    0.42 instead of 0.35 (a bad configuration push), so its sensitivity drops from the
    claimed 0.65 to about 0.55:

    >>> import numpy as np
    >>> rng = np.random.default_rng(7)
    >>> scores = rng.beta(0.7, 2.0, 3000)
    >>> cut = np.where(np.arange(3000) < 1500, 0.35, 0.42)
    >>> estimate = WindowedPerformanceEstimate("sensitivity", claimed=0.65, window=500)
    >>> for i, (score, called) in enumerate(zip(scores, scores >= cut)):
    ...     result = estimate.update(float(score), risk=float(called))
    ...     if result.fired:
    ...         print(f"shortfall in the window ending at case {i}, z = {result.statistic:.1f}")
    shortfall in the window ending at case 1999, z = 3.0
    shortfall in the window ending at case 2499, z = 3.3
    shortfall in the window ending at case 2999, z = 5.1
    >>> last = estimate.last_window()
    >>> round(last.sensitivity.estimate, 3), round(last.sensitivity.se, 3)
    (0.501, 0.033)
    """

    uses_risk = True

    __slots__ = (
        "metric",
        "claimed",
        "window",
        "arl0",
        "_critical",
        "_n_cases",
        "_n_called",
        "_sums",
        "_last",
        "_last_z",
    )

    _n_cases: int
    _n_called: int
    _sums: list[float]
    """Sums of ``p`` and ``p**2`` over called and uncalled cases (as in ``ScoreSums``)."""
    _last: list[float]
    """The last completed window's ``[n_called, *sums]``; ``n_called`` is -1 before the first
    (one list throughout, so memory stays flat)."""
    _last_z: float
    """The test's ``z`` of the last completed window (0 before the first)."""

    def __init__(
        self,
        metric: Literal["sensitivity", "specificity"],
        claimed: float,
        window: int = 500,
        arl0: float = 5000.0,
    ) -> None:
        if metric not in _METRICS:
            raise ValueError(f"metric must be 'sensitivity' or 'specificity', got {metric!r}")
        self.metric: Literal["sensitivity", "specificity"] = metric
        if not (isinstance(claimed, int | float) and 0.0 < claimed < 1.0):
            raise ValueError(f"claimed must lie in (0, 1), got {claimed!r}")
        self.claimed = float(claimed)
        self.window, self.arl0 = check_window(window, arl0)
        self._critical = float(ndtri(1.0 - self.window / self.arl0))
        self.reset()

    @property
    def threshold(self) -> float:
        """One-sided normal critical value at level ``window / arl0``."""
        return self._critical

    def _score_sums(self, n_cases: int, n_called: int, sums: list[float]) -> ScoreSums:
        return ScoreSums(n_cases, n_called, *sums)

    def _z(self, n_cases: int, n_called: int, sums: list[float]) -> float:
        w = metric_weight_sums(self.metric, self._score_sums(n_cases, n_called, sums))
        total = w.hit + w.miss
        if total <= 0:
            return 0.0
        estimate = w.hit / total
        variance = max(sampling_variance(w, estimate), sampling_variance(w, self.claimed))
        if variance <= 0:  # only when the squared weights underflow (subnormal scores)
            return 0.0
        return (self.claimed - estimate) * total / math.sqrt(variance)

    def update(self, x: float, /, risk: float | None = None) -> DetectorResult:
        score = check_finite(x)
        if not 0.0 <= score <= 1.0:
            raise ValueError(f"x must be the case's calibrated score in [0, 1], got {x!r}")
        if risk is None:
            raise ValueError(
                "WindowedPerformanceEstimate.update needs the device's decision as "
                "risk=1.0 (called positive) or risk=0.0 (called negative)"
            )
        if not (isinstance(risk, int | float) and risk in (0, 1)):
            raise ValueError(
                f"risk must be the device's decision, 1.0 (called positive) or 0.0 "
                f"(called negative), got {risk!r}"
            )
        called = int(risk)
        square = score * score
        self._n_cases += 1
        self._n_called += called
        self._sums[1 - called] += score
        self._sums[3 - called] += square
        n_cases, n_called, fired = self._n_cases, self._n_called, False
        if n_cases == self.window:
            self._last_z = self._z(n_cases, n_called, self._sums)
            fired = self._last_z >= self._critical
            self._last[:] = [float(n_called), *self._sums]
            self._start_window()
        return window_result(fired, self._last_z, self._critical, n_cases, n_called)

    def last_window(self) -> EstimatedPerformance | None:
        """Sensitivity, specificity and PPV of the last completed window (95 % intervals).

        ``None`` until a window has been completed; a metric whose denominator was
        expected to be empty is ``nan`` with interval [0, 1].
        """
        if self._last[0] < 0:
            return None
        n_called, *sums = self._last
        return performance_from_sums(self._score_sums(self.window, int(n_called), sums), 0.05)

    def _start_window(self) -> None:
        self._n_cases = 0
        self._n_called = 0
        self._sums = [0.0, 0.0, 0.0, 0.0]

    def reset(self) -> None:
        self._start_window()
        self._last = [-1.0, 0.0, 0.0, 0.0, 0.0]
        self._last_z = 0.0

    def settings(self) -> dict[str, Any]:
        return {
            "metric": self.metric,
            "claimed": self.claimed,
            "window": self.window,
            "arl0": self.arl0,
        }

    def _dump_state(self) -> dict[str, Any]:
        last = None if self._last[0] < 0 else [int(self._last[0]), *self._last[1:]]
        return {"open": [self._n_cases, self._n_called, *self._sums], "last": last}

    def _load_state(self, state: Mapping[str, Any]) -> None:
        current, last = state["open"], state["last"]
        if not (isinstance(current, list) and len(current) == 6):
            raise ValueError(f"open must be [n_cases, n_called, 4 sums], got {current!r}")
        n_cases, n_called, *sums = current
        if not (isinstance(n_cases, int) and 0 <= n_cases < self.window):
            raise ValueError(f"n_cases must be an integer in [0, {self.window}), got {n_cases!r}")
        current_sums = _checked_sums(n_cases, n_called, sums)
        last_sums = [-1.0, 0.0, 0.0, 0.0, 0.0]
        if last is not None:
            if not (isinstance(last, list) and len(last) == 5):
                raise ValueError(f"last must be null or [n_called, 4 sums], got {last!r}")
            last_sums = [float(last[0]), *_checked_sums(self.window, last[0], last[1:])]
        self._n_cases, self._n_called, self._sums = n_cases, n_called, current_sums
        self._last = last_sums
        completed = last_sums[0] >= 0
        self._last_z = self._z(self.window, int(last_sums[0]), last_sums[1:]) if completed else 0.0


def _checked_sums(n_cases: int, n_called: Any, sums: list[Any]) -> list[float]:
    """The four sums as floats, or ValueError if they cannot come from ``n_cases`` scores."""
    if not (isinstance(n_called, int) and not isinstance(n_called, bool)):
        raise ValueError(f"n_called must be an integer, got {n_called!r}")
    if not all(isinstance(v, int | float) and not isinstance(v, bool) for v in sums):
        raise ValueError(f"sums must be numbers, got {sums!r}")
    called, uncalled, called_sq, uncalled_sq = (float(v) for v in sums)
    ok = (
        0 <= n_called <= n_cases
        and all(math.isfinite(v) for v in (called, uncalled, called_sq, uncalled_sq))
        and 0.0 <= called_sq <= called <= n_called
        and 0.0 <= uncalled_sq <= uncalled <= n_cases - n_called
    )
    if not ok:
        raise ValueError(f"inconsistent window sums for {n_cases} cases: {n_called}, {sums}")
    return [called, uncalled, called_sq, uncalled_sq]
