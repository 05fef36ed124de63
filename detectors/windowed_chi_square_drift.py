"""Label-free drift of a categorical feature in tumbling windows, bounded memory.

For manufacturer, scanner model, slice-thickness band, kVp band: the reference is a
count per known category, each window of ``window`` cases is counted the same way plus
one bucket for categories the reference never saw, and the window is compared with the
reference by Pearson's chi-square test of homogeneity (as
:func:`detectors.statistics.chi_square_drift.chi_square_drift`, which names the new categories).
Each window is tested at ``window / arl0``, so the in-control ARL is ``arl0`` cases (see
:mod:`detectors.windowed_ks_drift` for the argument, and for ``reference_cap``, the
reference growing from the windows that pass).

Categories the reference expects fewer than five times in a window share one column of
the test (:func:`detectors.reference_calibration.sparse_pooling`, Cochran's rule), so a
rare scanner model's count of one or two cases does not decide the statistic; with no
sparse category the statistic is exactly Pearson's. The critical value is calibrated for
the reference in use by a parametric bootstrap of the test as it is run
(:func:`detectors.reference_calibration.chi_square_critical_value`), not read from the
chi-square distribution: with sparse categories Pearson's statistic is far from it, and
the reference's own sampling error (500 cases against 250-case windows) adds to the
window's. A growing reference is calibrated again as it doubles, at its final size and
when its pooling changes, the last value carried between. With the fixed 500-case
reference and asymptotic critical values the per-stream ARL0 spanned 0.5 to 16 times the
target (10th to 90th percentile, mixes of 2 to 8 categories,
``bench/bench_label_free_arl0.py``); calibrated, pooled and grown to twenty windows, 0.75
to 1.5 times, 1.0 on the fleet's average.

A category never seen in the reference is not an error: :meth:`WindowedChiSquareDrift.code`
maps it to the "unseen" bucket, ``n_events`` counts such cases in the window, and its zero
reference count makes the window's statistic large, so a new scanner model appearing in a
window is reported by that window's result. (With so small an expected count the
chi-square p-value is only indicative; the count of unseen cases is the finding.) With
``fire_on_unseen`` the window fires on any unseen case, whatever the statistic: a single
study on a scanner model never seen at the site is something to look at, not to average.
That rule has no level: a category present at the site but rare enough to be missing
from the reference fires it whenever it comes back. A category at 0.2 % of a site's
studies is missing from a 500-case reference at one site in three, and then fires two
windows in five (an ARL0 near 650 cases); in the bench, 9 % of streams raised 80 % of the
acquisition alarms that way. A window holding an unseen category never joins the
reference (the detector knows no name to add), so a growing reference does not cure it:
that needs the stream layer to add the category, by name, once it has been reported.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from detectors.base import (
    Detector,
    DetectorResult,
    TumblingWindow,
    check_integer,
    check_window,
    positive_or_none,
    window_result,
)
from detectors.reference_calibration import (
    MIN_EXPECTED,
    chi_square_critical_value,
    recalibrates,
    sparse_pooling,
)

__all__ = ["WindowedChiSquareDrift"]


class WindowedChiSquareDrift(TumblingWindow, Detector):
    """Chi-square test of each window's category mix against the reference mix.

    Parameters
    ----------
    categories
        The reference's categories, in a fixed order; codes ``0 .. K-1``. Code ``K``
        stands for any category not in this list.
    reference_counts
        Reference cases per category (``K`` non-negative integers, positive total).
    window
        Cases per tumbling window; the test runs when a window is full.
    arl0
        Target in-control ARL in cases; each window is tested at ``window / arl0``.
    fire_on_unseen
        Also fire at the end of a window that holds categories the reference lacks.
    unseen_min
        With ``fire_on_unseen``: how many cases of such categories a window needs to fire.
        One (the default) fires on a single study; a few keep a category too rare to be in
        the reference from firing whenever it comes back, while a new scanner taking a
        share of the studies still fires in its first window: a category at share ``q``
        is missing from a reference of ``n`` cases with probability ``(1 - q)^n``, and
        brings ``w q`` cases to a window of ``w``, so at 5 of 250 (``q`` near 2 %) a
        500-case reference lacks it one time in 20,000.
    reference_cap
        Grow the reference with each window that does not fire and holds no unseen
        category, while it can take a whole window without exceeding this many cases
        (None: keep the reference as given).

    Notes
    -----
    ``update`` takes a category code (use :meth:`code` to get one from a name).
    ``statistic`` is Pearson's chi-square of the last completed window against the
    reference, sparse categories pooled (0 before the first), ``threshold`` its critical
    value for the current reference (on a window's last case, the one that window was
    compared with); a partial window's chi-square is not comparable with it. The detector
    fires only on a window's last case; ``n_events`` counts the current window's cases in
    categories the reference lacks.

    Memory: fixed by the number of categories: for 5 categories about 1,050 bytes per
    instance in process (``detectors.base.state_size_bytes``) and about 400 bytes of
    JSON state, settings included.

    Examples
    --------
    >>> drift = WindowedChiSquareDrift(
    ...     ["GE", "Siemens", "Philips"], [500, 350, 150], window=100, arl0=5000)
    >>> stream = ["GE"] * 50 + ["Siemens"] * 35 + ["Philips"] * 14 + ["United Imaging"]
    >>> for name in stream:
    ...     result = drift.update(drift.code(name))
    >>> result.fired, result.n_events, round(result.statistic, 1)
    (True, 1, 10.1)
    """

    __slots__ = (
        "categories",
        "reference_counts",
        "window",
        "arl0",
        "fire_on_unseen",
        "reference_cap",
        "unseen_min",
        "_index",
        "_reference",
        "_columns",
        "_critical",
        "_calibrated",
        "_last_critical",
        "_counts",
        "_n_cases",
        "_last",
    )

    _reference: tuple[int, ...]
    """The reference in use: ``reference_counts`` plus the windows it has grown by."""
    _columns: tuple[int, ...]
    """Each code's column in the test (:func:`detectors.reference_calibration.sparse_pooling`)."""
    _critical: float | None
    """The critical value for the reference in use, worked out on first use."""
    _calibrated: tuple[float, int] | None
    """The last bootstrap calibration and the reference size it was for, made with the
    pooling in use (``None``: none yet, or the pooling has changed since)."""
    _last_critical: float | None
    """The critical value the last completed window was tested against, reported with its
    statistic until the next window closes (see :class:`detectors.WindowedKSDrift`)."""
    _counts: list[int]
    _n_cases: int
    _last: tuple[float, int]
    """The last completed window's statistic and degrees of freedom."""

    def __init__(
        self,
        categories: Sequence[str],
        reference_counts: Sequence[int],
        window: int = 500,
        arl0: float = 20_000.0,
        fire_on_unseen: bool = False,
        reference_cap: int | None = None,
        unseen_min: int = 1,
    ) -> None:
        self.fire_on_unseen = bool(fire_on_unseen)
        self.unseen_min = check_integer("unseen_min", unseen_min, minimum=1)
        self.categories = [str(c) for c in categories]
        if len(set(self.categories)) != len(self.categories) or not self.categories:
            raise ValueError("categories must be distinct and non-empty")
        self.reference_counts = [int(c) for c in reference_counts]
        if len(self.reference_counts) != len(self.categories):
            raise ValueError("reference_counts needs one count per category")
        if min(self.reference_counts) < 0 or sum(self.reference_counts) == 0:
            raise ValueError("reference_counts must be non-negative with a positive total")
        self.window, self.arl0 = check_window(window, arl0)
        self.reference_cap = (
            None if reference_cap is None else check_integer("reference_cap", reference_cap)
        )
        self._index = {c: i for i, c in enumerate(self.categories)}
        self.reset()

    @classmethod
    def from_counts(
        cls,
        reference: Mapping[str, int],
        window: int = 500,
        arl0: float = 20_000.0,
        fire_on_unseen: bool = False,
        reference_cap: int | None = None,
        unseen_min: int = 1,
    ) -> WindowedChiSquareDrift:
        """A detector from a ``{category: count}`` reference (categories sorted by name)."""
        names = sorted(reference)
        counts = [reference[n] for n in names]
        return cls(names, counts, window, arl0, fire_on_unseen, reference_cap, unseen_min)

    def code(self, category: str) -> int:
        """The code of a category name; any name not in the reference gets ``K``."""
        return self._index.get(category, len(self.categories))

    @property
    def threshold(self) -> float:
        """Critical chi-square for a full window at level ``window / arl0`` (calibrated for
        the current reference)."""
        return self._critical_value()

    @property
    def reference(self) -> list[int]:
        """The reference counts in use (grown from ``reference_counts``)."""
        return list(self._reference)

    @property
    def columns(self) -> list[int]:
        """Each code's column in the test (sparse categories share one; the last code's,
        unseen categories', is the last column)."""
        return list(self._columns)

    def _use_reference(self, reference: Sequence[int]) -> None:
        self._reference = tuple(reference)
        columns = sparse_pooling(reference, self.window)
        self._columns = (*columns, max(columns) + 1)  # unseen categories: a column apart
        self._critical = None

    def _critical_value(self) -> float:
        if self._critical is None:
            cases, calibrated = sum(self._reference), self._calibrated
            pooled = [c for c in self._pooled(self._reference) if c > 0]
            if calibrated is None or not self._carries(calibrated[1], cases, pooled):
                alpha = self.window / self.arl0
                calibrated = chi_square_critical_value(pooled, self.window, alpha), cases
                self._calibrated = calibrated
            self._critical = calibrated[0]
        return self._critical

    def _carries(self, calibrated_cases: int, cases: int, pooled: Sequence[int]) -> bool:
        """Whether the calibration made for ``calibrated_cases`` serves the reference grown
        to ``cases`` (``pooled``: its columns' counts), as it is, with no bootstrap: until
        the reference doubles and before its final size, as the KS test's
        (:func:`detectors.reference_calibration.recalibrates`), if every column is expected
        at least :data:`~detectors.reference_calibration.MIN_EXPECTED` times in a window.

        Pearson's statistic is already scaled for both sample sizes (its limit law does not
        depend on the reference's), so the value carries unscaled. Measured on 90 streams
        of 2 to 8 categories, Dirichlet(2) shares and up to two at 0.2-2 %, grown from 2
        windows of 250 to 20 (``bench/bench_label_free_arl0.py``, each rate from 100,000
        bootstrap replicates), at the 1,141 sizes where the value was carried: its rate is
        1.01 times ``alpha`` on average (10th-90th percentile 0.87-1.15, range 0.74-1.32),
        a fresh calibration's 1.00 (0.88-1.13, 0.72-1.35); 6.2 calibrations a stream
        instead of 19. A column expected fewer times (a rare category that pooling could
        not join to another) makes a statistic of a few cases' lattice, which one more case
        in the reference moves: carried there, rates reached 4 times ``alpha``, so such a
        reference is calibrated at every size."""
        if cases == calibrated_cases:
            return True
        if recalibrates(cases, calibrated_cases, self.window, self.reference_cap):
            return False
        return min(pooled) * self.window >= MIN_EXPECTED * sum(pooled)

    def _pooled(self, counts: Sequence[int]) -> list[int]:
        """Counts per pooled column (sparse categories share one, unseen ones the last)."""
        pooled = [0] * (self._columns[-1] + 1)
        for column, count in zip(self._columns, counts, strict=False):
            pooled[column] += count
        return pooled

    def _chi_square(self) -> tuple[float, int]:
        n_ref, n_win = sum(self._reference), self._n_cases
        total = n_ref + n_win
        statistic, columns = 0.0, 0
        pooled_reference, pooled_window = self._pooled(self._reference), self._pooled(self._counts)
        for ref, win in zip(pooled_reference, pooled_window, strict=True):
            column = ref + win
            if column == 0:
                continue
            columns += 1
            expected_ref, expected_win = n_ref * column / total, n_win * column / total
            statistic += (ref - expected_ref) ** 2 / expected_ref
            statistic += (win - expected_win) ** 2 / expected_win
        return statistic, max(columns - 1, 0)

    def update(self, x: float, /, risk: float | None = None) -> DetectorResult:
        code = self._checked_code(x)
        self._check_risk(risk)
        self._counts[code] += 1
        self._n_cases += 1
        n_cases, unseen, fired = self._n_cases, self._counts[len(self.categories)], False
        if n_cases == self.window:
            fired = self._close_window()
        return window_result(fired, self._last[0], self._reported(), n_cases, unseen)

    def _checked_code(self, x: float) -> int:
        k = len(self.categories)
        if isinstance(x, float) and x.is_integer():
            x = int(x)
        if not (isinstance(x, int) and 0 <= x <= k):
            raise ValueError(f"x must be a category code in 0..{k} (see code()), got {x!r}")
        return x

    def add_untested(self, xs: Sequence[float]) -> DetectorResult:
        """:meth:`update` of each of ``xs`` (category codes) in turn, at most
        :meth:`cases_before_test` of them (none completes the window, so none fires): the
        last one's result. Refused whole, nothing changed, if :meth:`update` would refuse
        one of them."""
        codes = [self._checked_code(x) for x in xs]
        self._check_untested(len(codes))
        counts = self._counts
        for code in codes:
            counts[code] += 1
        self._n_cases += len(codes)
        unseen = counts[len(self.categories)]
        return window_result(False, self._last[0], self._reported(), self._n_cases, unseen)

    def update_window(self, counts: Sequence[int]) -> DetectorResult:
        """Test a whole window given as its counts per code (``K + 1`` of them, the last
        for unseen categories): the same as feeding its cases one by one, in any order."""
        window = [int(c) for c in counts]
        if len(window) != len(self._counts) or min(window) < 0 or sum(window) != self.window:
            raise ValueError(f"a window is {len(self._counts)} counts summing to {self.window}")
        if self._n_cases:
            raise ValueError("update_window needs the current window to be empty")
        self._counts, self._n_cases = window, self.window
        fired = self._close_window()
        return window_result(fired, self._last[0], self._reported(), self.window, window[-1])

    @property
    def last_reported(self) -> tuple[float, float] | None:
        """``(statistic, threshold)`` as its last update reported them, read from its state
        (``None`` before any update since a reset): a stream need not keep a copy."""
        if self._last_critical is None and self._n_cases == 0:
            return None
        return self._last[0], self._reported()

    def _reported(self) -> float:
        """The threshold beside the last window's statistic: the one it was tested against
        (before any window, the current reference's)."""
        return self._critical_value() if self._last_critical is None else self._last_critical

    def _close_window(self) -> bool:
        """Test the full window, grow the reference with it if it passes, start the next."""
        statistic, dof = self._chi_square()
        self._last = (round(statistic, 6), dof)  # shorter state, same test
        unseen, critical = self._counts[-1], self._critical_value()
        self._last_critical = critical
        fired = statistic >= critical or (self.fire_on_unseen and unseen >= self.unseen_min)
        cap = self.reference_cap
        if not fired and not unseen and cap is not None:
            if sum(self._reference) + self.window <= cap:
                columns = self._columns
                self._use_reference(
                    [r + c for r, c in zip(self._reference, self._counts, strict=False)]
                )
                if self._columns != columns:
                    self._calibrated = None
        self._start_window()
        return fired

    def _start_window(self) -> None:
        self._counts = [0] * (len(self.categories) + 1)
        self._n_cases = 0

    def reset(self) -> None:
        self._use_reference(list(self.reference_counts))
        self._calibrated = None
        self._start_window()
        self._last = (0.0, len(self.categories) - 1)
        self._last_critical = None

    def settings(self) -> dict[str, Any]:
        return {
            "categories": list(self.categories),
            "reference_counts": list(self.reference_counts),
            "window": self.window,
            "arl0": self.arl0,
            "fire_on_unseen": self.fire_on_unseen,
            "reference_cap": self.reference_cap,
            "unseen_min": self.unseen_min,
        }

    def _dump_state(self) -> dict[str, Any]:
        grown = [r - c for r, c in zip(self._reference, self.reference_counts, strict=True)]
        return {
            "counts": list(self._counts),  # their sum: the window's cases so far
            "last": list(self._last),
            "last_critical": self._last_critical,
            "grown": grown,
            **self._calibration_state(any(grown)),
        }

    def _calibration_state(self, grown: bool) -> dict[str, Any]:
        """The last calibration, once the reference has grown (the initial reference's is
        made again on load); as its size alone when its value is the last window's
        ``last_critical``, as it mostly is (a stream state has little room)."""
        calibrated = self._calibrated
        if calibrated is None or not grown:
            return {}
        if calibrated[0] == self._last_critical:
            return {"calibrated": calibrated[1]}
        return {"calibrated": list(calibrated)}

    def _load_state(self, state: Mapping[str, Any]) -> None:
        counts = state["counts"]
        k = len(self.categories)
        # Absent from states written before they were kept.
        last = state.get("last", [0.0, k - 1])
        grown = state.get("grown", [0] * k)
        last_critical = state.get("last_critical")  # as "last": the current reference's then
        ok = (
            isinstance(counts, list)
            and len(counts) == k + 1
            and all(isinstance(c, int) and c >= 0 for c in counts)
            # Kept before as "n_cases" too.
            and state.get("n_cases", sum(counts)) == sum(counts) < self.window
            and isinstance(last, list)
            and len(last) == 2
            and isinstance(last[0], int | float)
            and math.isfinite(last[0])
            and last[0] >= 0
            and isinstance(last[1], int)
            and 0 <= last[1] <= k
            and positive_or_none(last_critical)
            and isinstance(grown, list)
            and len(grown) == k
            and all(isinstance(g, int) and g >= 0 for g in grown)
            and sum(grown) % self.window == 0
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
        calibrated = self._calibration_of(state.get("calibrated"), last_critical, sum(grown))
        self._use_reference([r + g for r, g in zip(self.reference_counts, grown, strict=True)])
        self._counts, self._n_cases = list(counts), sum(counts)
        self._last = (float(last[0]), last[1])
        self._last_critical = None if last_critical is None else float(last_critical)
        self._calibrated = calibrated

    def _calibration_of(
        self, kept: Any, last_critical: float | None, grown: int
    ) -> tuple[float, int] | None:
        """The calibration a state kept (:meth:`_calibration_state`), or :class:`ValueError`.
        None when it kept none (before, or not grown): the reference in use is calibrated
        at first use."""
        if kept is None:
            return None
        value, cases = kept if isinstance(kept, list) and len(kept) == 2 else (last_critical, kept)
        initial = sum(self.reference_counts)
        if not (
            value is not None
            and positive_or_none(value)
            and isinstance(cases, int)
            and not isinstance(cases, bool)
            and initial <= cases <= initial + grown
        ):
            raise ValueError(f"inconsistent calibration in a window state: {kept!r}")
        return float(value), cases
