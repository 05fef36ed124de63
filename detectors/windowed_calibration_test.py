"""Calibration-in-the-large of labelled cases in tumbling windows, bounded memory.

Each window of ``window`` labelled cases is tested for calibration-in-the-large: under
calibration each label is ``Bernoulli(p)`` for its score ``p``, so the observed minus the
expected number of positives has mean 0 and variance ``sum p (1 - p)``, and

    z = sum (y - p) / sqrt(sum p (1 - p))

is approximately standard normal. A score of exactly 0 or 1 enters the variance as if it were
:data:`SCORE_FLOOR` inside [0, 1]: a calibrated score of exactly 0 never comes with a positive
label, so such a case is the strongest evidence of miscalibration there is, and with no
variance at all it would otherwise count for nothing (``z = 0``). Each window is tested
two-sided at ``window / arl0``, so the in-control ARL is at least ``arl0`` cases (see
:mod:`detectors.windowed_ks_drift` for the argument).

With a ``tolerance`` ``d > 0`` the tested hypothesis is composite, "the window's positive
rate is within ``d`` of its mean score", as the labelled charts test "performance at or
above the acceptable level": a site whose prevalence differs from the one the scores were
calibrated at, or whose labelled cases are a verification-biased subset, is off by a few
points without anything having gone wrong. The statistic is then
``(|O - E| - d n) / sqrt(sum p (1 - p) + d n)``, floored at 0, against the one-sided
critical value: at a gap of exactly ``d`` one tail is the whole error and each label's
variance ``(p + d)(1 - p - d)`` is at most ``p (1 - p) + d``; further inside the hypothesis
the chance of a false alarm only falls.

This is also the check of the one assumption of label-free performance estimation
(:mod:`detectors.windowed_performance_estimate`, CBPE): its estimates are only as good as
the scores' calibration, and the labelled part of the stream is where that can be seen.
It tests the mean only; a miscalibration that tilts the slope while keeping the mean
(scores too extreme on both sides) is for
:func:`detectors.statistics.confidence_based_performance_estimation.check_calibration_assumption`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from scipy.special import ndtri

from detectors.base import (
    Detector,
    DetectorResult,
    StateError,
    check_binary,
    check_finite,
    check_window,
    dump_window_state,
    load_window_state,
    window_result,
)

__all__ = ["SCORE_FLOOR", "CalibrationInTheLarge", "WindowedCalibrationTest"]

SCORE_FLOOR = 1e-6
"""Distance from 0 and 1 at which a score enters the variance ``p (1 - p)``: devices round
their outputs (a float32 sigmoid is exactly 1.0 beyond a logit of about 17), and a
calibrated score of one in a million is already "never"."""
_FLOOR_VARIANCE = SCORE_FLOOR * (1.0 - SCORE_FLOOR)


@dataclass(frozen=True, slots=True)
class CalibrationInTheLarge:
    """Observed and expected rate of positives in one window, and the test's ``z``."""

    n: int
    observed_rate: float
    """Share of the window's cases with a positive label."""
    expected_rate: float
    """Mean score of the window's cases."""
    z: float
    """``sum (y - p) / sqrt(sum p (1 - p))``, scores kept :data:`SCORE_FLOOR` inside [0, 1]."""


def _z(n_events: int, expected: float, variance: float) -> float:
    if variance <= 0.0:
        return 0.0
    return (n_events - expected) / math.sqrt(variance)


class WindowedCalibrationTest(Detector):
    """Two-sided test of calibration-in-the-large for each window of labelled cases.

    Parameters
    ----------
    window
        Cases per tumbling window; the test runs when a window is full.
    arl0
        Target in-control ARL in cases; each window is tested at ``window / arl0``.

    Notes
    -----
    ``update(x, risk=score)``: ``x`` is 1 when the case's truth label is positive and 0
    otherwise; ``risk`` is required and is the case's score (its predicted probability of
    a positive label).

    ``statistic`` is ``|z|`` (less the tolerance, see the module docstring) of the last
    completed window (0 before the first); a window of
    scores all exactly 0 or 1 gives nearly 0 when every label agrees with its score and a
    very large ``|z|`` when one does not. ``threshold`` is the two-sided normal critical
    value at ``window / arl0``; the detector fires only on a window's last case, then starts
    the next window. ``n_cases`` counts the window's cases and ``n_events`` its positive
    labels. :meth:`last_window` gives the last completed window's observed and expected
    rate and signed ``z``.

    Memory: four numbers for the current window and three for the last completed one:
    about 410 bytes per instance in process (``detectors.base.state_size_bytes``), about
    120 bytes of ``json.dumps`` of the running state and about 230 with the settings.

    Examples
    --------
    Calibrated scores for 1000 cases, then the odds of a positive label are 1.6 times
    what the scores say (prevalence rose, the device did not follow):

    >>> import numpy as np
    >>> rng = np.random.default_rng(3)
    >>> scores = rng.beta(1.0, 4.0, 2000)
    >>> odds = np.where(np.arange(2000) < 1000, 1.0, 1.6) * scores / (1 - scores)
    >>> labels = rng.random(2000) < odds / (1 + odds)
    >>> test = WindowedCalibrationTest(window=500, arl0=5000)
    >>> for i, (label, score) in enumerate(zip(labels, scores)):
    ...     result = test.update(int(label), risk=float(score))
    ...     if result.fired:
    ...         print(f"miscalibrated in the window ending at {i}, |z| = {result.statistic:.1f}")
    miscalibrated in the window ending at 1499, |z| = 4.9
    miscalibrated in the window ending at 1999, |z| = 4.7
    >>> last = test.last_window()
    >>> round(last.observed_rate, 3), round(last.expected_rate, 3)
    (0.29, 0.212)
    """

    uses_risk = True

    __slots__ = (
        "window",
        "arl0",
        "tolerance",
        "_critical",
        "_n_cases",
        "_n_events",
        "_sums",
        "_last",
        "_last_statistic",
    )

    _n_cases: int
    _n_events: int
    _sums: list[float]
    """Sum of scores and of ``p (1 - p)`` in the current window."""
    _last: list[float]
    """The last completed window's ``[n_events, sum p, sum p (1 - p)]``; ``n_events`` is -1
    before the first (one list throughout, so memory stays flat)."""
    _last_statistic: float
    """``|z|`` of the last completed window (0 before the first)."""

    def __init__(self, window: int = 500, arl0: float = 5000.0, tolerance: float = 0.0) -> None:
        self.window, self.arl0 = check_window(window, arl0)
        self.tolerance = check_finite(tolerance, "tolerance")
        if not 0.0 <= self.tolerance < 1.0:
            raise ValueError(f"tolerance must lie in [0, 1), got {tolerance!r}")
        sides = 1.0 if self.tolerance > 0.0 else 2.0
        self._critical = float(ndtri(1.0 - self.window / self.arl0 / sides))
        self.reset()

    @property
    def threshold(self) -> float:
        """Normal critical value at level ``window / arl0``: two-sided, or one-sided beyond a
        tolerance."""
        return self._critical

    def update(self, x: float, /, risk: float | None = None) -> DetectorResult:
        label = check_binary(x)
        score = self._require_risk(risk)
        self._n_cases += 1
        self._n_events += label
        self._sums[0] += score
        self._sums[1] += max(score * (1.0 - score), _FLOOR_VARIANCE)
        n_cases, n_events, fired = self._n_cases, self._n_events, False
        if n_cases == self.window:
            excess = abs(n_events - self._sums[0]) - self.tolerance * n_cases
            # at a gap d a label's variance (p + d)(1 - p - d) is at most p (1 - p) + d
            variance = self._sums[1] + self.tolerance * n_cases
            self._last_statistic = max(excess, 0.0) / math.sqrt(variance)
            fired = self._last_statistic >= self._critical
            self._last[:] = [float(n_events), *self._sums]
            self._start_window()
        return window_result(fired, self._last_statistic, self._critical, n_cases, n_events)

    def last_window(self) -> CalibrationInTheLarge | None:
        """The last completed window's observed and expected rate and ``z`` (None before)."""
        if self._last[0] < 0:
            return None
        n_events, expected, variance = self._last
        return CalibrationInTheLarge(
            n=self.window,
            observed_rate=n_events / self.window,
            expected_rate=expected / self.window,
            z=_z(int(n_events), expected, variance),
        )

    def _start_window(self) -> None:
        self._n_cases = 0
        self._n_events = 0
        self._sums = [0.0, 0.0]

    def reset(self) -> None:
        self._start_window()
        self._last = [-1.0, 0.0, 0.0]
        self._last_statistic = 0.0

    def settings(self) -> dict[str, Any]:
        return {"window": self.window, "arl0": self.arl0, "tolerance": self.tolerance}

    def _dump_state(self) -> dict[str, Any]:
        return dump_window_state(self._n_cases, self._n_events, self._sums, self._last)

    @classmethod
    def _upgrade_state(
        cls, version: int, settings: Mapping[str, Any], running: Mapping[str, Any]
    ) -> Mapping[str, Any]:
        """Version 1 summed ``p (1 - p)`` without the floor. The open window's sum is raised
        to at least the floor of each of its cases: exact when none or all of its scores lay
        within :data:`SCORE_FLOOR` of 0 or 1, off by less than that per case otherwise. The
        last window's test already ran and keeps the statistic it had."""
        current = running.get("open")
        if not (isinstance(current, list) and len(current) == 4):
            raise StateError(f"version-1 open must be [n_cases, n_events, 2 sums]: {current!r}")
        n_cases, n_events, expected, variance = current
        if not (isinstance(n_cases, int) and isinstance(variance, int | float)):
            raise StateError(f"version-1 open window is malformed: {current!r}")
        floored = max(float(variance), n_cases * _FLOOR_VARIANCE)
        return {**running, "open": [n_cases, n_events, expected, floored]}

    def _load_state(self, state: Mapping[str, Any]) -> None:
        n_cases, n_events, sums, last = load_window_state(state, self.window, 2, _checked_sums)
        self._n_cases, self._n_events, self._sums, self._last = n_cases, n_events, sums, last
        completed = last[0] >= 0
        self._last_statistic = abs(_z(int(last[0]), *last[1:])) if completed else 0.0


def _checked_sums(n_cases: int, n_events: Any, sums: list[Any]) -> list[float]:
    """The two sums as floats, or ValueError if they cannot come from ``n_cases`` cases."""
    if not (isinstance(n_events, int) and not isinstance(n_events, bool)):
        raise ValueError(f"n_events must be an integer, got {n_events!r}")
    if not all(isinstance(v, int | float) and not isinstance(v, bool) for v in sums):
        raise ValueError(f"sums must be numbers, got {sums!r}")
    expected, variance = (float(v) for v in sums)
    # p (1 - p) <= min(p, 1 - p); the floor adds at most its own term per case, rounding less
    slack = n_cases * _FLOOR_VARIANCE + 1e-9 * n_cases
    ok = (
        0 <= n_events <= n_cases
        and math.isfinite(expected)
        and math.isfinite(variance)
        and 0.0 <= expected <= n_cases
        and 0.0 <= variance <= min(0.25 * n_cases, expected + slack, n_cases - expected + slack)
    )
    if not ok:
        raise ValueError(f"inconsistent window sums for {n_cases} cases: {n_events}, {sums}")
    return [expected, variance]
