"""Label-free drift of a categorical feature in tumbling windows, bounded memory.

For manufacturer, scanner model, slice-thickness band, kVp band: the reference is a
count per known category, each window of ``window`` cases is counted the same way plus
one bucket for categories the reference never saw, and the window is compared with the
reference by Pearson's chi-square test of homogeneity (as
:func:`detectors.chi_square_drift.chi_square_drift`, which names the new categories).
Each window is tested at ``window / arl0``, so the in-control ARL is at least ``arl0``
cases (see :mod:`detectors.windowed_ks_drift` for the argument).

A category never seen in the reference is not an error: :meth:`WindowedChiSquareDrift.code`
maps it to the "unseen" bucket, ``n_events`` counts such cases in the window, and its zero
reference count makes the window's statistic large, so a new scanner model appearing in a
window is reported by that window's result. (With so small an expected count the
chi-square p-value is only indicative; the count of unseen cases is the finding.) With
``fire_on_unseen`` the window fires on any unseen case, whatever the statistic: a single
study on a scanner model never seen at the site is something to look at, not to average.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from scipy.stats import chi2

from detectors.base import Detector, DetectorResult, check_window, window_result

__all__ = ["WindowedChiSquareDrift"]


class WindowedChiSquareDrift(Detector):
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
        Also fire at the end of a window that holds any category the reference lacks.

    Notes
    -----
    ``update`` takes a category code (use :meth:`code` to get one from a name).
    ``statistic`` is Pearson's chi-square of the last completed window against the
    reference (0 before the first), ``threshold`` its chi-square critical value on the
    degrees of freedom of the categories that window and the reference hold (before the
    first window, on the reference's); a partial window's chi-square is not comparable
    with it. The detector fires only on a window's last case; ``n_events`` counts the
    current window's cases in categories the reference lacks.

    Memory: fixed by the number of categories: for 5 categories about 850 bytes per
    instance in process (``detectors.base.state_size_bytes``) and about 290 bytes of
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
        "_index",
        "_n_reference",
        "_critical",
        "_counts",
        "_n_cases",
        "_last",
    )

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
    ) -> None:
        self.fire_on_unseen = bool(fire_on_unseen)
        self.categories = [str(c) for c in categories]
        if len(set(self.categories)) != len(self.categories) or not self.categories:
            raise ValueError("categories must be distinct and non-empty")
        self.reference_counts = [int(c) for c in reference_counts]
        if len(self.reference_counts) != len(self.categories):
            raise ValueError("reference_counts needs one count per category")
        if min(self.reference_counts) < 0 or sum(self.reference_counts) == 0:
            raise ValueError("reference_counts must be non-negative with a positive total")
        self.window, self.arl0 = check_window(window, arl0)
        self._index = {c: i for i, c in enumerate(self.categories)}
        self._n_reference = sum(self.reference_counts)
        alpha = self.window / self.arl0
        self._critical = [0.0] + [float(chi2.isf(alpha, d)) for d in range(1, len(categories) + 1)]
        self.reset()

    @classmethod
    def from_counts(
        cls,
        reference: Mapping[str, int],
        window: int = 500,
        arl0: float = 20_000.0,
        fire_on_unseen: bool = False,
    ) -> WindowedChiSquareDrift:
        """A detector from a ``{category: count}`` reference (categories sorted by name)."""
        names = sorted(reference)
        return cls(names, [reference[n] for n in names], window, arl0, fire_on_unseen)

    def code(self, category: str) -> int:
        """The code of a category name; any name not in the reference gets ``K``."""
        return self._index.get(category, len(self.categories))

    def _chi_square(self) -> tuple[float, int]:
        n_ref, n_win = self._n_reference, self._n_cases
        total = n_ref + n_win
        statistic, columns = 0.0, 0
        for ref, win in zip([*self.reference_counts, 0], self._counts, strict=True):
            column = ref + win
            if column == 0:
                continue
            columns += 1
            expected_ref, expected_win = n_ref * column / total, n_win * column / total
            statistic += (ref - expected_ref) ** 2 / expected_ref
            statistic += (win - expected_win) ** 2 / expected_win
        return statistic, max(columns - 1, 0)

    def update(self, x: float, /, risk: float | None = None) -> DetectorResult:
        k = len(self.categories)
        if isinstance(x, float) and x.is_integer():
            x = int(x)
        if not (isinstance(x, int) and 0 <= x <= k):
            raise ValueError(f"x must be a category code in 0..{k} (see code()), got {x!r}")
        self._check_risk(risk)
        self._counts[x] += 1
        self._n_cases += 1
        n_cases, unseen, fired = self._n_cases, self._counts[k], False
        if n_cases == self.window:
            statistic, dof = self._chi_square()
            self._last = (statistic, dof)
            # One column (every case in one category) leaves nothing to test but unseen ones.
            exceeds = dof > 0 and statistic >= self._critical[dof]
            fired = exceeds or (self.fire_on_unseen and unseen > 0)
            self._start_window()
        return window_result(
            fired, self._last[0], self._critical[max(self._last[1], 1)], n_cases, unseen
        )

    def _start_window(self) -> None:
        self._counts = [0] * (len(self.categories) + 1)
        self._n_cases = 0

    def reset(self) -> None:
        self._start_window()
        self._last = (0.0, len(self.categories) - 1)

    def settings(self) -> dict[str, Any]:
        return {
            "categories": list(self.categories),
            "reference_counts": list(self.reference_counts),
            "window": self.window,
            "arl0": self.arl0,
            "fire_on_unseen": self.fire_on_unseen,
        }

    def _dump_state(self) -> dict[str, Any]:
        return {"counts": list(self._counts), "n_cases": self._n_cases, "last": list(self._last)}

    def _load_state(self, state: Mapping[str, Any]) -> None:
        counts, n_cases = state["counts"], state["n_cases"]
        # Absent from states written before it was kept.
        last = state.get("last", [0.0, len(self.categories) - 1])
        ok = (
            isinstance(counts, list)
            and len(counts) == len(self.categories) + 1
            and all(isinstance(c, int) and c >= 0 for c in counts)
            and isinstance(n_cases, int)
            and sum(counts) == n_cases < self.window
            and isinstance(last, list)
            and len(last) == 2
            and isinstance(last[0], int | float)
            and math.isfinite(last[0])
            and last[0] >= 0
            and isinstance(last[1], int)
            and 0 <= last[1] <= len(self.categories)
        )
        if not ok:
            raise ValueError(f"inconsistent window state: {dict(state)}")
        self._counts, self._n_cases = list(counts), n_cases
        self._last = (float(last[0]), last[1])
