"""Label-free sensitivity or specificity in tumbling windows, tested against the claim.

The streaming form of the batch statistic
:func:`detectors.statistics.confidence_based_performance_estimation.estimate_performance`
(confidence-based performance estimation, NannyML's CBPE): each case brings its calibrated
score ``p`` and the device's decision, and the window keeps the six sums of
:class:`~detectors.statistics.confidence_based_performance_estimation.ScoreSums` (counts, and
the sums of ``p`` and ``p**2`` over called-positive and called-negative cases), from which the
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

Prior shift
-----------
Given ``reference_prevalence`` (the prevalence the scores are calibrated at), each
window's scores are moved to the window's own EM-estimated prevalence
(:mod:`detectors.statistics.prior_shift`) before the estimate, so that a site whose prevalence
differs from the reference, with the device's sensitivity and specificity unchanged, is
not mistaken for a change. EM needs the scores, not six sums: the window then keeps, per
decision, a histogram of :data:`PRIOR_SHIFT_BINS` equal-width score bins with each bin's
count and sum of scores, and each bin's mean score stands for its cases (the adjustment is
smooth, so the error is second order in the bin width). The test's variance stacks the EM
fixed point with the ratio estimator (sandwich, see
:func:`~detectors.statistics.confidence_based_performance_estimation.prior_shift_sampling_variance`),
so the estimated prevalence's own error is part of it (in the tests' simulations it
widened the intervals by 10-20 %). The price of the adjustment: a change that moves the
positives' scores down (``P(score | y)`` changed, not only the prevalence) partly reads as
fewer positives and is hidden from the adjusted estimate; a change of the decisions at
given scores (a moved threshold) is not. The score-drift test sees the former.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from numbers import Real
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
from scipy.special import ndtri

from detectors.base import (
    Detector,
    DetectorResult,
    TumblingWindow,
    check_finite,
    check_probability,
    check_window,
    dump_window_state,
    load_window_state,
    window_result,
)
from detectors.statistics.confidence_based_performance_estimation import (
    AdjustedScores,
    EstimatedPerformance,
    ScoreSums,
    adjust_for_prior_shift,
    metric_weight_sums,
    performance_from_sums,
    prevalence_variance_shares,
    prior_shift_sampling_variance,
    sampling_variance,
    widen_for_prevalence,
)

__all__ = ["PRIOR_SHIFT_BINS", "WindowedPerformanceEstimate"]

PRIOR_SHIFT_BINS = 50
"""Equal-width score bins per decision of a window's histogram under prior-shift adjustment."""

_METRICS = ("sensitivity", "specificity")


def _checked_case(x: float, risk: float | None) -> tuple[float, int]:
    """A case's score and decision (0 or 1) as :meth:`WindowedPerformanceEstimate.update`
    takes them, or :class:`ValueError` naming what is wrong."""
    score = check_finite(x)
    if not 0.0 <= score <= 1.0:
        raise ValueError(f"x must be the case's calibrated score in [0, 1], got {x!r}")
    if risk is None:
        raise ValueError(
            "WindowedPerformanceEstimate.update needs the device's decision as "
            "risk=1.0 (called positive) or risk=0.0 (called negative)"
        )
    known = type(risk) is float or type(risk) is int or isinstance(risk, Real | np.bool_)
    if not (known and risk in (0, 1)):
        raise ValueError(
            f"risk must be the device's decision, 1.0 (called positive) or 0.0 "
            f"(called negative), got {risk!r}"
        )
    return score, int(risk)


class WindowedPerformanceEstimate(TumblingWindow, Detector):
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
    reference_prevalence
        The prevalence the scores are calibrated at (the device's reference). Given, each
        window's scores are adjusted to its EM-estimated prevalence first (see "Prior
        shift" in the module's notes); ``None`` (default) takes the scores as calibrated
        at the site.

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
    about 620 bytes per instance in process (``detectors.base.state_size_bytes``), at
    most about 200 bytes of ``json.dumps`` of the running state and about 380 with the
    settings. With ``reference_prevalence`` the current window's histogram adds
    ``4 * PRIOR_SHIFT_BINS`` numbers (about 2 kB in process, at most about 4.5 kB of
    JSON), and the last window its estimated prevalence and the prevalence's variance
    shares. With the adjustment :meth:`last_window` widens each interval by the estimated
    prevalence's share of the error (delta method), and its ``expected_prevalence`` is
    the EM estimate.

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
        "reference_prevalence",
        "_histogram",
        "_last_shift",
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
    _histogram: npt.NDArray[np.float64] | None
    """With ``reference_prevalence``: the current window's ``[row, (count, sum), bin]``,
    row 0 the called cases and row 1 the others (the order of ``_sums``)."""
    _last_shift: list[float | None] | None
    """With ``reference_prevalence``: the last window's ``[prevalence, z, and the
    variance shares of sensitivity, specificity and PPV]`` (None where infinite: the
    prevalence was not identified); prevalence -1 before the first window (one list
    throughout, as ``_last``). None without ``reference_prevalence``."""

    def __init__(
        self,
        metric: Literal["sensitivity", "specificity"],
        claimed: float,
        window: int = 500,
        arl0: float = 5000.0,
        reference_prevalence: float | None = None,
    ) -> None:
        if metric not in _METRICS:
            raise ValueError(f"metric must be 'sensitivity' or 'specificity', got {metric!r}")
        self.metric: Literal["sensitivity", "specificity"] = metric
        self.claimed = check_probability("claimed", claimed)
        self.window, self.arl0 = check_window(window, arl0)
        self._critical = float(ndtri(1.0 - self.window / self.arl0))
        self.reference_prevalence = (
            None
            if reference_prevalence is None
            else check_probability("reference_prevalence", reference_prevalence)
        )
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

    @staticmethod
    def _adjusted(
        histogram: npt.NDArray[np.float64], reference_prevalence: float
    ) -> AdjustedScores:
        """A window's histogram bins moved to their EM-estimated prevalence."""
        counts, sums = histogram[:, 0, :], histogram[:, 1, :]
        filled = counts > 0
        means = np.clip(sums[filled] / counts[filled], 0.0, 1.0)
        called = np.broadcast_to(np.array([[True], [False]]), counts.shape)[filled]
        return adjust_for_prior_shift(means, called, reference_prevalence, counts[filled])

    def _adjusted_z(self, adjusted: AdjustedScores, sums: ScoreSums) -> float:
        w = metric_weight_sums(self.metric, sums)
        total = w.hit + w.miss
        if total <= 0:
            return 0.0
        estimate = w.hit / total
        variance = max(
            prior_shift_sampling_variance(self.metric, adjusted, estimate),
            prior_shift_sampling_variance(self.metric, adjusted, self.claimed),
        )
        if not (math.isfinite(variance) and variance > 0):  # prevalence not identified
            return 0.0
        return (self.claimed - estimate) * total / math.sqrt(variance)

    def _close_adjusted_window(
        self, histogram: npt.NDArray[np.float64], reference_prevalence: float
    ) -> None:
        adjusted = self._adjusted(histogram, reference_prevalence)
        sums = adjusted.sums
        self._last_z = self._adjusted_z(adjusted, sums)
        shares = prevalence_variance_shares(adjusted, performance_from_sums(sums, 0.05))
        self._last[:] = [
            float(sums.n_called),
            sums.called,
            sums.uncalled,
            sums.called_sq,
            sums.uncalled_sq,
        ]
        finite = [v if math.isfinite(v) else None for v in shares]
        if self._last_shift is not None:
            self._last_shift[:] = [adjusted.shift.prevalence, self._last_z, *finite]

    def update(self, x: float, /, risk: float | None = None) -> DetectorResult:
        score, called = _checked_case(x, risk)
        self._add(score, called)
        n_cases, n_called, fired = self._n_cases, self._n_called, False
        if n_cases == self.window:
            if self._histogram is None or self.reference_prevalence is None:
                self._last_z = self._z(n_cases, n_called, self._sums)
                self._last[:] = [float(n_called), *self._sums]
            else:
                self._close_adjusted_window(self._histogram, self.reference_prevalence)
            fired = self._last_z >= self._critical
            self._start_window()
        return window_result(fired, self._last_z, self._critical, n_cases, n_called)

    def add_untested(self, xs: Sequence[float], risks: Sequence[float]) -> DetectorResult:
        """:meth:`update` of each score of ``xs`` with the decision of ``risks`` in turn, at
        most :meth:`cases_before_test` of them (none completes the window, so none fires):
        the last one's result. Refused whole, nothing changed, if :meth:`update` would refuse
        one of them."""
        if len(xs) != len(risks):
            raise ValueError(f"{len(xs)} scores with {len(risks)} decisions")
        cases = [_checked_case(x, risk) for x, risk in zip(xs, risks, strict=True)]
        self._check_untested(len(cases))
        for score, called in cases:
            self._add(score, called)
        return window_result(False, self._last_z, self._critical, self._n_cases, self._n_called)

    def _add(self, score: float, called: int) -> None:
        """One case into the open window (the same float sums in the same order as ever)."""
        square = score * score
        self._n_cases += 1
        self._n_called += called
        self._sums[1 - called] += score
        self._sums[3 - called] += square
        if self._histogram is not None:
            column = min(int(score * PRIOR_SHIFT_BINS), PRIOR_SHIFT_BINS - 1)
            self._histogram[1 - called, 0, column] += 1.0
            self._histogram[1 - called, 1, column] += score

    def last_window(self) -> EstimatedPerformance | None:
        """Sensitivity, specificity and PPV of the last completed window (95 % intervals).

        ``None`` until a window has been completed; a metric whose denominator was
        expected to be empty is ``nan`` with interval [0, 1].
        """
        if self._last[0] < 0:
            return None
        n_called, *sums = self._last
        estimated = performance_from_sums(self._score_sums(self.window, int(n_called), sums), 0.05)
        if self._last_shift is None:
            return estimated
        _, _, *shares = self._last_shift
        variances = [math.inf if v is None else v for v in shares]
        return widen_for_prevalence(estimated, (variances[0], variances[1], variances[2]))

    def _start_window(self) -> None:
        self._n_cases = 0
        self._n_called = 0
        self._sums = [0.0, 0.0, 0.0, 0.0]
        if self.reference_prevalence is not None:
            self._histogram = np.zeros((2, 2, PRIOR_SHIFT_BINS))
        else:
            self._histogram = None

    def reset(self) -> None:
        self._start_window()
        self._last = [-1.0, 0.0, 0.0, 0.0, 0.0]
        self._last_z = 0.0
        no_shift: list[float | None] = [-1.0, 0.0, None, None, None]
        self._last_shift = None if self.reference_prevalence is None else no_shift

    def settings(self) -> dict[str, Any]:
        return {
            "metric": self.metric,
            "claimed": self.claimed,
            "window": self.window,
            "arl0": self.arl0,
            "reference_prevalence": self.reference_prevalence,
        }

    def _dump_state(self) -> dict[str, Any]:
        state = dump_window_state(self._n_cases, self._n_called, self._sums, self._last)
        if self._histogram is not None:
            counts, sums = self._histogram[:, 0, :], self._histogram[:, 1, :]
            state["histogram"] = {
                "counts": counts.astype(np.int64).tolist(),
                "sums": sums.tolist(),
            }
            shift = self._last_shift
            state["last_prior_shift"] = None if self._last[0] < 0 or shift is None else list(shift)
        return state

    def _load_state(self, state: Mapping[str, Any]) -> None:
        n_cases, n_called, sums, last = load_window_state(
            state, self.window, 4, _checked_sums, events="n_called"
        )
        histogram = last_shift = None
        if self.reference_prevalence is not None:
            histogram = _checked_histogram(state["histogram"], n_cases, n_called, sums)
            last_shift = _checked_last_shift(state["last_prior_shift"], completed=last[0] >= 0)
        self._n_cases, self._n_called, self._sums, self._last = n_cases, n_called, sums, last
        self._histogram, self._last_shift = histogram, last_shift
        if last_shift is not None and last[0] >= 0:
            self._last_z = float(last_shift[1] or 0.0)
        elif last[0] >= 0:
            self._last_z = self._z(self.window, int(last[0]), last[1:])
        else:
            self._last_z = 0.0


def _checked_histogram(
    stored: Any, n_cases: int, n_called: int, sums: list[float]
) -> npt.NDArray[np.float64]:
    """The window's histogram as an array, or ValueError if it disagrees with its sums."""
    if not isinstance(stored, dict) or set(stored) != {"counts", "sums"}:
        raise ValueError(f"histogram must be {{counts, sums}}, got {stored!r}")
    shape = (2, PRIOR_SHIFT_BINS)
    counts = np.asarray(stored["counts"], dtype=np.float64)
    bin_sums = np.asarray(stored["sums"], dtype=np.float64)
    if counts.shape != shape or bin_sums.shape != shape:
        raise ValueError(f"histogram counts and sums must be 2 rows of {PRIOR_SHIFT_BINS} bins")
    edges = np.arange(PRIOR_SHIFT_BINS) / PRIOR_SHIFT_BINS
    ok = (
        bool(np.all(np.isfinite(bin_sums)))
        and bool(np.all(counts == np.round(counts)))
        and bool(np.all(counts >= 0))
        and int(counts.sum()) == n_cases
        and int(counts[0].sum()) == n_called
        and bool(np.all(bin_sums >= edges * counts - 1e-9 * counts))
        and bool(np.all(bin_sums <= (edges + 1.0 / PRIOR_SHIFT_BINS) * counts + 1e-9 * counts))
        and bool(np.allclose(bin_sums.sum(axis=1), sums[:2], rtol=1e-9, atol=1e-9))
    )
    if not ok:
        raise ValueError(f"histogram inconsistent with the window's {n_cases} cases: {stored!r}")
    return np.stack([counts, bin_sums], axis=1)


def _checked_last_shift(stored: Any, *, completed: bool) -> list[float | None]:
    """The last window's ``[prevalence, z, 3 variance shares]``, or ValueError."""
    if stored is None and not completed:
        return [-1.0, 0.0, None, None, None]
    if not (isinstance(stored, list) and len(stored) == 5 and completed):
        raise ValueError(f"last_prior_shift must match last: got {stored!r}")
    prevalence, z, *shares = stored
    numbers = [prevalence, z, *(v for v in shares if v is not None)]
    if not all(
        isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v) for v in numbers
    ):
        raise ValueError(f"last_prior_shift must hold finite numbers, got {stored!r}")
    if not 0.0 <= prevalence <= 1.0 or any(v is not None and v < 0 for v in shares):
        raise ValueError(f"last_prior_shift out of range: {stored!r}")
    return [float(prevalence), float(z), *(None if v is None else float(v) for v in shares)]


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
