"""Label-free drift of a score (or continuous feature) in tumbling windows, bounded memory.

The reference is kept as a histogram on fixed bins (a fixed-size summary, built once
from a reference sample with :meth:`WindowedKSDrift.from_reference`); each recent window
of ``window`` cases is binned the same way and compared with the reference by the
two-sample Kolmogorov-Smirnov distance (:func:`detectors.kolmogorov_smirnov.binned_ks_statistic`).

Thresholds under repeated testing
---------------------------------
A test is run at the end of every window, forever, so a fixed ``alpha`` per window would
raise false alarms at a rate set by how often one looks. The threshold is instead derived
from the in-control ARL: with non-overlapping windows, each tested at level
``alpha_w = window / arl0``, the number of windows to a false alarm is (nearly) geometric
and the in-control ARL is at least ``window / alpha_w = arl0`` cases, the same false-alarm
currency as the CUSUMs (and as :mod:`detectors.fleet_false_alarm_budget`). The
asymptotic KS distribution is conservative on binned data, which errs towards a longer
ARL0; a reference estimated from ``n`` cases correlates the windows' tests slightly
(keep ``n`` at ten or more windows). When several features are tested per window, adjust
their p-values with :func:`detectors.holm_bonferroni.holm_adjusted_p_values`.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Mapping, Sequence
from typing import Any, Self

import numpy as np
import numpy.typing as npt

from detectors.base import Detector, DetectorResult, check_finite, check_window, window_result
from detectors.kolmogorov_smirnov import ks_critical_value

__all__ = ["WindowedKSDrift"]


class WindowedKSDrift(Detector):
    """KS test of each window of ``window`` scores against a binned reference.

    Parameters
    ----------
    edges
        Increasing interior bin edges; the bins are ``(-inf, e0), [e0, e1), ..., [e_last,
        inf)``, so every finite value falls in one.
    reference_counts
        Reference cases per bin (``len(edges) + 1`` non-negative integers).
    window
        Cases per tumbling window; the test runs when a window is full.
    arl0
        Target in-control ARL in cases; each window is tested at ``window / arl0``.

    Notes
    -----
    ``statistic`` is the KS distance of the last completed window (0 before the first):
    the value the test compares with ``threshold``, the critical distance for a full
    window. A partial window's distance is not comparable with it, and computing it on
    every case would cost more than the rest of the update. The detector fires only on a
    window's last case, and then starts the next window. ``n_events`` counts the current
    window's cases that fell in bins empty in the reference (values never seen there), a
    finding in itself.

    Memory: fixed by the number of bins, whatever the number of cases: three lists of
    ``len(edges) + 1`` numbers and the edges. For 11 bins, about 1,100 bytes per instance
    in process (``detectors.base.state_size_bytes``) and about 340 bytes of JSON state,
    settings included.

    Examples
    --------
    Reference scores from a Beta(2, 5); after case 1500 the scores shift upwards:

    >>> import numpy as np
    >>> rng = np.random.default_rng(1)
    >>> edges = [i / 10 for i in range(1, 10)]
    >>> drift = WindowedKSDrift.from_reference(
    ...     rng.beta(2, 5, 5000), edges=edges, window=250, arl0=20_000)
    >>> round(drift.threshold, 4)
    0.1025
    >>> scores = np.concatenate([rng.beta(2, 5, 1500), rng.beta(2.6, 5, 1000)])
    >>> for i, score in enumerate(scores):
    ...     result = drift.update(float(score))
    ...     if result.fired:
    ...         print(f"drift in the window ending at case {i}, D = {result.statistic:.3f}")
    drift in the window ending at case 1749, D = 0.138
    drift in the window ending at case 1999, D = 0.134
    drift in the window ending at case 2249, D = 0.114
    drift in the window ending at case 2499, D = 0.130
    """

    __slots__ = (
        "edges",
        "reference_counts",
        "window",
        "arl0",
        "_reference_cdf",
        "_empty",
        "_critical",
        "_counts",
        "_n_cases",
        "_n_events",
        "_last",
    )

    _counts: list[int]
    _n_cases: int
    _n_events: int
    _last: float

    def __init__(
        self,
        edges: Sequence[float],
        reference_counts: Sequence[int],
        window: int = 500,
        arl0: float = 20_000.0,
    ) -> None:
        self.edges = [float(e) for e in edges]
        if not all(math.isfinite(e) for e in self.edges) or any(
            b <= a for a, b in zip(self.edges, self.edges[1:], strict=False)
        ):
            raise ValueError("edges must be finite and strictly increasing")
        self.reference_counts = [int(c) for c in reference_counts]
        if len(self.reference_counts) != len(self.edges) + 1:
            raise ValueError("reference_counts needs len(edges) + 1 bins")
        if min(self.reference_counts) < 0 or sum(self.reference_counts) == 0:
            raise ValueError("reference_counts must be non-negative with a positive total")
        self.window, self.arl0 = check_window(window, arl0)
        total = sum(self.reference_counts)
        self._reference_cdf = (np.cumsum(self.reference_counts) / total).tolist()
        self._empty = [c == 0 for c in self.reference_counts]
        self._critical = ks_critical_value(self.window / self.arl0, total, self.window)
        self.reset()

    @classmethod
    def from_reference(
        cls,
        reference: npt.ArrayLike,
        edges: Sequence[float],
        window: int = 500,
        arl0: float = 20_000.0,
    ) -> Self:
        """A detector whose reference histogram is built from reference values."""
        values = np.asarray(reference, dtype=np.float64).ravel()
        if values.size == 0 or not np.isfinite(values).all():
            raise ValueError("the reference needs finite values")
        bins = np.searchsorted(np.asarray(edges, dtype=np.float64), values, side="right")
        counts = np.bincount(bins, minlength=len(edges) + 1)
        return cls(edges, [int(c) for c in counts], window, arl0)

    @property
    def threshold(self) -> float:
        """Critical KS distance for a full window at level ``window / arl0``."""
        return self._critical

    def _distance(self) -> float:
        if self._n_cases == 0:
            return 0.0
        running, distance = 0, 0.0
        for count, reference in zip(self._counts, self._reference_cdf, strict=True):
            running += count
            distance = max(distance, abs(running / self._n_cases - reference))
        return distance

    def update(self, x: float, /, risk: float | None = None) -> DetectorResult:
        value = check_finite(x)
        self._check_risk(risk)
        b = bisect.bisect_right(self.edges, value)
        self._counts[b] += 1
        self._n_cases += 1
        self._n_events += self._empty[b]
        n_cases, n_events, fired = self._n_cases, self._n_events, False
        if n_cases == self.window:
            self._last = self._distance()
            fired = self._last >= self._critical
            self._start_window()
        return window_result(fired, self._last, self._critical, n_cases, n_events)

    def _start_window(self) -> None:
        self._counts = [0] * (len(self.edges) + 1)
        self._n_cases = 0
        self._n_events = 0

    def reset(self) -> None:
        self._start_window()
        self._last = 0.0

    def settings(self) -> dict[str, Any]:
        return {
            "edges": list(self.edges),
            "reference_counts": list(self.reference_counts),
            "window": self.window,
            "arl0": self.arl0,
        }

    def _dump_state(self) -> dict[str, Any]:
        return {
            "counts": list(self._counts),
            "n_cases": self._n_cases,
            "n_events": self._n_events,
            "last": self._last,
        }

    def _load_state(self, state: Mapping[str, Any]) -> None:
        counts, n_cases, n_events = state["counts"], state["n_cases"], state["n_events"]
        last = state.get("last", 0.0)  # absent from states written before it was kept
        ok = (
            isinstance(counts, list)
            and len(counts) == len(self.edges) + 1
            and all(isinstance(c, int) and c >= 0 for c in counts)
            and isinstance(n_cases, int)
            and isinstance(n_events, int)
            and sum(counts) == n_cases < self.window
            and 0 <= n_events <= n_cases
            and isinstance(last, int | float)
            and 0.0 <= last <= 1.0
        )
        if not ok:
            raise ValueError(f"inconsistent window state: {dict(state)}")
        self._counts, self._n_cases, self._n_events = list(counts), n_cases, n_events
        self._last = float(last)
