"""Label-free drift of a score (or continuous feature) in tumbling windows, bounded memory.

The reference is kept as a histogram on fixed bins (a fixed-size summary, built once
from a reference sample with :meth:`WindowedKSDrift.from_reference`); each recent window
of ``window`` cases is binned the same way and compared with the reference by the
two-sample Kolmogorov-Smirnov distance
(:func:`detectors.statistics.kolmogorov_smirnov.binned_ks_statistic`).

Thresholds under repeated testing
---------------------------------
A test is run at the end of every window, forever, so a fixed ``alpha`` per window would
raise false alarms at a rate set by how often one looks. The threshold is instead derived
from the in-control ARL: with non-overlapping windows, each tested at level
``alpha_w = window / arl0``, the number of windows to a false alarm is (nearly) geometric
and the in-control ARL is ``window / alpha_w = arl0`` cases, the same false-alarm currency
as the CUSUMs (and as :mod:`detectors.fleet_false_alarm_budget`).

The critical distance is calibrated for the reference in use, by a parametric bootstrap of
the binned test that includes the reference's own sampling error
(:func:`detectors.reference_calibration.ks_critical_distance`). The asymptotic KS critical
value it replaces assumes continuous data and is far too large on ten bins: with a
500-case reference and 250-case windows at ``arl0 = 5000`` it gave a fleet-average ARL0
near 23,500 cases for a screening device's calibrated scores
(``bench/bench_label_free_arl0.py``), and over 400,000 when the scores crowd into the
lowest decile.

Growing the reference
---------------------
With ``reference_cap``, each window that does not fire joins the reference while it can
take a whole window within ``reference_cap`` cases, and the critical distance follows the
new size: calibrated again by bootstrap each time the reference has doubled and at its
final size, and carried in between by the two-sample scale
(:func:`detectors.reference_calibration.scaled_ks_critical`, as good as calibrating each
size, at a quarter of the bootstraps). The bootstrap makes the rate right on average over
references of any size; the rate of one stream, given its reference, varies with that
reference's error: with a reference of two windows the per-stream ARL0 spans 0.4 to 3
times the target (10th to 90th percentile), at twenty windows 0.8 to 1.2 times. In the
bench, over 200,000 in-control cases a stream, growth included, the streams' ARL0 spans
0.78 to 1.19 times the target and the fleet's is 0.98 times it.

Growing lets a stream arm as soon as its first reference is complete, at the right rate
for the fleet, and converge to its own right rate as the reference grows, instead of
waiting for a long reference to arm (at 40 predictions a day, 125 days for 5,000). The
price: a drift slow enough not to fire any window while the reference grows is partly
learnt as the reference (a firing window is never added), and the test's power rises
slightly as the reference grows. :meth:`reset` returns to the initial reference. This is
not Gandy and Kvaløy's (2013) guarantee, which widens every stream's limit so that nearly
all streams run at least the target: the fleet's ARL0 would then exceed it by as much.

A result reports the last window's distance beside the critical distance that window was
tested against, which a state keeps (the grown reference's, lower, would seem to make a
distance that passed fire).
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Mapping, Sequence
from typing import Any, Self

import numpy as np
import numpy.typing as npt

from detectors.base import (
    Detector,
    DetectorResult,
    TumblingWindow,
    check_finite,
    check_integer,
    check_window,
    positive_or_none,
    window_result,
)
from detectors.reference_calibration import (
    ks_critical_distance,
    recalibrates,
    scaled_ks_critical,
)

__all__ = ["WindowedKSDrift"]


class WindowedKSDrift(TumblingWindow, Detector):
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
    reference_cap
        Grow the reference with each window that does not fire while it can take a whole
        window without exceeding this many cases (None: keep the reference as given).

    Notes
    -----
    ``statistic`` is the KS distance of the last completed window (0 before the first):
    the value the test compares with ``threshold``, the critical distance for a full
    window against the current reference (on a window's last case, the one that window
    was compared with). A partial window's distance is not comparable with it. The
    detector fires only on a window's last case, and then starts the next window.
    ``n_events`` counts the current window's cases that fell in bins empty in the
    reference (values never seen there), a finding in itself.

    Memory: fixed by the number of bins, whatever the number of cases: four sequences of
    ``len(edges) + 1`` numbers and the edges. For 11 bins, about 1,100 bytes per instance
    in process (``detectors.base.state_size_bytes``) and about 450 bytes of JSON state,
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
    0.086
    >>> scores = np.concatenate([rng.beta(2, 5, 1500), rng.beta(2.6, 5, 1000)])
    >>> for i, score in enumerate(scores):
    ...     result = drift.update(float(score))
    ...     if result.fired:
    ...         print(f"drift in the window ending at case {i}, D = {result.statistic:.3f}")
    drift in the window ending at case 1749, D = 0.138
    drift in the window ending at case 1999, D = 0.134
    drift in the window ending at case 2249, D = 0.114
    drift in the window ending at case 2499, D = 0.130

    As the pipeline runs it: armed on a 500-case reference, which grows from the windows
    that pass to 5,000 cases while the critical distance tightens with it:

    >>> rng = np.random.default_rng(2)
    >>> drift = WindowedKSDrift.from_reference(
    ...     rng.beta(2, 5, 500), edges, window=250, arl0=5000, reference_cap=5000)
    >>> round(drift.threshold, 4)
    0.084
    >>> fired = sum(drift.update(float(score)).fired for score in rng.beta(2, 5, 4500))
    >>> fired, sum(drift.reference), round(drift.threshold, 4)
    (0, 5000, 0.0716)
    """

    __slots__ = (
        "edges",
        "reference_counts",
        "window",
        "arl0",
        "reference_cap",
        "_reference",
        "_reference_cdf",
        "_critical",
        "_calibrated",
        "_last_critical",
        "_counts",
        "_n_cases",
        "_n_events",
        "_last",
    )

    _reference: tuple[int, ...]
    """The reference in use: ``reference_counts`` plus the windows it has grown by."""
    _reference_cdf: tuple[float, ...]
    _critical: float | None
    """Calibrated on first use (a restored stream calibrates once, for its grown reference)."""
    _calibrated: tuple[float, int] | None
    """The last bootstrap calibration and the reference size it was for (``None``: none
    yet), carried to the sizes the reference grows to until it has doubled."""
    _last_critical: float | None
    """The critical distance the last completed window was tested against, reported with its
    distance until the next window closes: after the window grew the reference, the new
    reference's value is lower, and beside it a distance that passed would seem to fire."""
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
        reference_cap: int | None = None,
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
        self.reference_cap = (
            None if reference_cap is None else check_integer("reference_cap", reference_cap)
        )
        self.reset()

    @classmethod
    def from_reference(
        cls,
        reference: npt.ArrayLike,
        edges: Sequence[float],
        window: int = 500,
        arl0: float = 20_000.0,
        reference_cap: int | None = None,
    ) -> Self:
        """A detector whose reference histogram is built from reference values."""
        values = np.asarray(reference, dtype=np.float64).ravel()
        if values.size == 0 or not np.isfinite(values).all():
            raise ValueError("the reference needs finite values")
        bins = np.searchsorted(np.asarray(edges, dtype=np.float64), values, side="right")
        counts = np.bincount(bins, minlength=len(edges) + 1)
        return cls(edges, [int(c) for c in counts], window, arl0, reference_cap)

    @property
    def threshold(self) -> float:
        """Critical KS distance for a full window at level ``window / arl0`` (calibrated for
        the current reference)."""
        return self._critical_distance()

    @property
    def reference(self) -> list[int]:
        """The reference histogram in use (grown from ``reference_counts``)."""
        return list(self._reference)

    def _use_reference(self, reference: Sequence[int]) -> None:
        total = sum(reference)
        self._reference = tuple(reference)
        self._reference_cdf = tuple((np.cumsum(reference) / total).tolist())
        self._critical = None

    def _critical_distance(self) -> float:
        if self._critical is None:
            cases = sum(self._reference)
            calibrated = self._calibrated
            if calibrated is None or recalibrates(
                cases, calibrated[1], self.window, self.reference_cap
            ):
                alpha = self.window / self.arl0
                calibrated = ks_critical_distance(self._reference, self.window, alpha), cases
                self._calibrated = calibrated
            self._critical = scaled_ks_critical(*calibrated, cases, self.window)
        return self._critical

    def _distance(self) -> float:
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
        self._n_events += self._reference[b] == 0
        n_cases, n_events, fired = self._n_cases, self._n_events, False
        if n_cases == self.window:
            fired = self._close_window()
        return window_result(fired, self._last, self._reported(), n_cases, n_events)

    def add_untested(self, xs: Sequence[float]) -> DetectorResult:
        """:meth:`update` of each of ``xs`` in turn, at most :meth:`cases_before_test` of them
        (none completes the window, so none fires): the last one's result. Refused whole,
        nothing changed, if :meth:`update` would refuse one of them."""
        values = [check_finite(x) for x in xs]
        self._check_untested(len(values))
        counts, edges, reference = self._counts, self.edges, self._reference
        unseen = 0
        for value in values:
            b = bisect.bisect_right(edges, value)
            counts[b] += 1
            unseen += reference[b] == 0
        self._n_cases += len(values)
        self._n_events += unseen
        return window_result(False, self._last, self._reported(), self._n_cases, self._n_events)

    def update_window(self, counts: Sequence[int]) -> DetectorResult:
        """Test a whole window given as its histogram (a replay or a simulation of many
        windows): the same as feeding its cases one by one, in any order."""
        window = [int(c) for c in counts]
        if len(window) != len(self._counts) or min(window) < 0 or sum(window) != self.window:
            raise ValueError(f"a window is {len(self._counts)} bin counts summing to {self.window}")
        if self._n_cases:
            raise ValueError("update_window needs the current window to be empty")
        self._counts, self._n_cases = window, self.window
        n_events = sum(c for c, r in zip(window, self._reference, strict=True) if r == 0)
        fired = self._close_window()
        return window_result(fired, self._last, self._reported(), self.window, n_events)

    @property
    def last_reported(self) -> tuple[float, float] | None:
        """``(statistic, threshold)`` as its last update reported them, read from its state
        (``None`` before any update since a reset): a stream need not keep a copy."""
        if self._last_critical is None and self._n_cases == 0:
            return None
        return self._last, self._reported()

    def _reported(self) -> float:
        """The threshold beside the last window's distance: the one it was tested against
        (before any window, the current reference's)."""
        return self._critical_distance() if self._last_critical is None else self._last_critical

    def _close_window(self) -> bool:
        """Test the full window, grow the reference with it if it passes, start the next."""
        distance, critical = self._distance(), self._critical_distance()
        fired = distance >= critical
        self._last = round(distance, 12)  # a lattice value: shorter state, same test
        self._last_critical = critical
        total = sum(self._reference)
        if (
            not fired
            and self.reference_cap is not None
            and total + self.window <= self.reference_cap
        ):
            self._use_reference([r + c for r, c in zip(self._reference, self._counts, strict=True)])
        self._start_window()
        return fired

    def _start_window(self) -> None:
        self._counts = [0] * (len(self.edges) + 1)
        self._n_cases = 0
        self._n_events = 0

    def reset(self) -> None:
        self._use_reference(list(self.reference_counts))
        self._start_window()
        self._last = 0.0
        self._last_critical = None
        self._calibrated = None

    def settings(self) -> dict[str, Any]:
        return {
            "edges": list(self.edges),
            "reference_counts": list(self.reference_counts),
            "window": self.window,
            "arl0": self.arl0,
            "reference_cap": self.reference_cap,
        }

    def _dump_state(self) -> dict[str, Any]:
        grown = [r - c for r, c in zip(self._reference, self.reference_counts, strict=True)]
        return {
            "counts": list(self._counts),
            "n_cases": self._n_cases,
            "n_events": self._n_events,
            "last": self._last,
            "last_critical": self._last_critical,
            "grown": grown,
            # Only once grown: the initial reference's calibration is made again on load.
            **({"calibrated": list(self._calibrated)} if any(grown) and self._calibrated else {}),
        }

    def _load_state(self, state: Mapping[str, Any]) -> None:
        counts, n_cases, n_events = state["counts"], state["n_cases"], state["n_events"]
        last = state.get("last", 0.0)  # absent from states written before it was kept
        # Absent before it was kept: the current reference's value is reported until a test.
        last_critical = state.get("last_critical")
        # Absent before, or not grown: the reference in use is calibrated at first use.
        calibrated = state.get("calibrated")
        bins = len(self.edges) + 1
        grown = state.get("grown", [0] * bins)  # absent before the reference could grow
        ok = (
            isinstance(counts, list)
            and len(counts) == bins
            and all(isinstance(c, int) and c >= 0 for c in counts)
            and isinstance(n_cases, int)
            and isinstance(n_events, int)
            and sum(counts) == n_cases < self.window
            and 0 <= n_events <= n_cases
            and isinstance(last, int | float)
            and 0.0 <= last <= 1.0
            and positive_or_none(last_critical)
            and isinstance(grown, list)
            and len(grown) == bins
            and all(isinstance(g, int) and g >= 0 for g in grown)
            and sum(grown) % self.window == 0
            and (
                calibrated is None
                or (
                    isinstance(calibrated, list)
                    and len(calibrated) == 2
                    and isinstance(calibrated[0], int | float)
                    and 0.0 < calibrated[0] <= 1.0
                    and isinstance(calibrated[1], int)
                    and sum(self.reference_counts)
                    <= calibrated[1]
                    <= sum(self.reference_counts) + sum(grown)
                )
            )
            and (
                sum(grown) == 0
                or (
                    self.reference_cap is not None
                    and sum(self.reference_counts) + sum(grown) <= self.reference_cap
                )
            )
        )
        if not ok:
            raise ValueError(f"inconsistent window state: {dict(state)}")
        self._use_reference([r + g for r, g in zip(self.reference_counts, grown, strict=True)])
        if n_events != sum(c for c, r in zip(counts, self._reference, strict=True) if r == 0):
            raise ValueError(f"n_events {n_events} differs from the cases in empty bins: {state}")
        self._counts, self._n_cases, self._n_events = list(counts), n_cases, n_events
        self._last = float(last)
        self._last_critical = None if last_critical is None else float(last_critical)
        self._calibrated = None if calibrated is None else (float(calibrated[0]), calibrated[1])
