"""Critical values of the windowed drift tests, calibrated for the reference actually used.

A windowed drift test compares each window of ``w`` cases with a reference histogram of
``n`` cases and fires when a distance reaches a critical value set for a per-window level
``alpha_w = w / arl0``. Taken from an asymptotic distribution, that critical value is wrong
in both directions at once for the references the pipeline builds:

* the Kolmogorov-Smirnov distribution assumes continuous data; on ten fixed bins (fewer
  in effect, when the scores crowd into the lowest deciles) the binned distance is far
  smaller, so the test is very conservative (an in-control ARL several times the target);
* the chi-square distribution assumes large expected counts in every cell; rare categories
  make Pearson's statistic heavy-tailed, so the test is liberal;
* both ignore that ``n`` is finite and random.

:func:`ks_critical_distance` and :func:`chi_square_critical_value` take the critical value
from a parametric bootstrap of the test as it is run: ``R* ~ Multinomial(n, p)`` and
``W* ~ Multinomial(w, p)`` with ``p`` the reference's own proportions, the statistic of each
pair computed exactly as the detector computes it, and the smallest value whose bootstrap
exceedance probability is at most ``alpha_w``. Drawing a new reference for each replicate
puts the reference's own sampling error in the null distribution, so the rate is the
*unconditional* one, averaged over the references a fleet of streams draws (the rate the
fleet budget counts); see Efron and Tibshirani (1993), *An Introduction to the Bootstrap*,
ch. 16, and for the two-sample KS on discrete data Praestgaard (1995), Scand. J. Statist.
22: 305-322.

The rate given one reference (what one stream lives with) still varies with that
reference's error, the more the smaller ``n`` is against ``w``: at ``n = 2 w`` one
stream in ten runs more than twice as long as the target and one in ten less than half as
long. No critical value fixes that; only a longer reference does (Jones, Champ and Rigdon
2004, Technometrics 46: 293-301, for estimated control limits), or a guarantee that holds
for most references by widening every stream's limit (Gandy and Kvaløy 2013, Scand. J.
Statist. 40: 647-668), which lengthens the fleet's ARL0 by as much. The detectors therefore
grow their reference from their own in-control windows up to :data:`REFERENCE_WINDOWS`
windows (``reference_cap``), calibrating again as it doubles and at its final size, the
last calibration carried between (:func:`recalibrates`), so a stream arms as soon as its
first reference is complete, at the right unconditional rate, and its own rate converges to
the target as the reference grows.

Every critical value is deterministic given its inputs (the generator is seeded from the
counts, window and level), so a stream restored from its state compares with exactly the
value it compared with before.

A calibration takes 5-50 ms (the multinomial draws; more replicates at a smaller level),
about five times while a reference grows from 2 windows to 20 (the chi-square test's
sometimes more: :meth:`detectors.WindowedChiSquareDrift._carries`); a restored stream reads
its test's last one from its state once grown, not again.
Calibrating a grown reference ahead on a background thread (numpy's draws release the GIL)
was measured slower end to end: in a replay of 300,000 predictions through a worker, 94-97 s
against 86-87 s, as one thread cannot keep up with 40 streams growing together and takes
the core the broker and the replay use.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence

import numpy as np
import numpy.typing as npt

__all__ = [
    "REFERENCE_WINDOWS",
    "bootstrap_draws",
    "chi_square_critical_value",
    "chi_square_statistics",
    "ks_critical_distance",
    "ks_distances",
    "multinomial_draws",
    "recalibrates",
    "reference_cap",
    "scaled_ks_critical",
    "sparse_pooling",
]

REFERENCE_WINDOWS = 20
"""Windows of reference a drift test grows its reference to (its ``reference_cap``).

At 20 windows the per-stream in-control ARL stays within half to twice the target for
nine streams in ten in ``bench/bench_label_free_arl0.py``; at 2 (the first 500 of 250-case
windows) it does not (see the bench's results)."""

MIN_DRAWS = 4_000
MAX_DRAWS = 20_000
EXCEEDANCES = 100
"""Bootstrap replicates are ``EXCEEDANCES / alpha`` within the bounds above (4,000 at the
score test's 0.05, 8,000 at an acquisition test's 0.0125): about 100 replicates or more
beyond the critical value, so its tail rate has a Monte Carlo error of 10 % or less, small
against the spread of the per-stream rates, and the calibration takes milliseconds."""

IntCounts = npt.NDArray[np.int64]


def bootstrap_draws(alpha: float) -> int:
    """Bootstrap replicates used to calibrate a test at level ``alpha``."""
    return int(min(MAX_DRAWS, max(MIN_DRAWS, math.ceil(EXCEEDANCES / alpha))))


def multinomial_draws(
    rng: np.random.Generator, n: int, p: npt.NDArray[np.float64], size: int
) -> IntCounts:
    """``size`` draws of ``Multinomial(n, p)`` as rows, by conditional binomials (vectorised
    across rows: several times faster than ``Generator.multinomial`` for many rows)."""
    out = np.zeros((size, p.size), dtype=np.int64)
    left = np.full(size, n, dtype=np.int64)
    rest = 1.0
    for k in range(p.size - 1):
        if p[k] > 0.0 and rest > 0.0:
            out[:, k] = rng.binomial(left, min(1.0, p[k] / rest))
            left -= out[:, k]
        rest -= p[k]
    out[:, -1] = left
    return out


def ks_distances(reference: IntCounts, windows: IntCounts) -> npt.NDArray[np.float64]:
    """Binned KS distance of each row of ``windows`` against the matching (or single) row of
    ``reference``, in the detector's arithmetic."""
    reference_cdf = np.cumsum(reference, axis=-1) / reference.sum(axis=-1, keepdims=True)
    window_cdf = np.cumsum(windows, axis=-1) / windows.sum(axis=-1, keepdims=True)
    distances: npt.NDArray[np.float64] = np.abs(window_cdf - reference_cdf).max(axis=-1)
    return distances


def chi_square_statistics(reference: IntCounts, windows: IntCounts) -> npt.NDArray[np.float64]:
    """Pearson's chi-square of each ``(reference, window)`` 2 x K table, over the columns
    either side holds (as :class:`detectors.WindowedChiSquareDrift` computes it)."""
    reference = np.broadcast_to(reference, windows.shape)
    n_reference = reference.sum(axis=-1, keepdims=True)
    n_window = windows.sum(axis=-1, keepdims=True)
    column = reference + windows
    share = np.divide(column, n_reference + n_window)
    expected_reference, expected_window = n_reference * share, n_window * share
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = (reference - expected_reference) ** 2 / expected_reference + (
            windows - expected_window
        ) ** 2 / expected_window
    statistics: npt.NDArray[np.float64] = np.where(column > 0, terms, 0.0).sum(axis=-1)
    return statistics


DECIMALS = 6
"""Critical values are rounded down to this many decimals: a statistic equal to the
bootstrap value in exact arithmetic, but summed in another order, still reaches it (and
the value stays short in stored states)."""


def _critical(statistics: npt.NDArray[np.float64], alpha: float) -> float:
    """The bootstrap value ``v`` whose rate ``P*(S >= v)`` is nearest ``alpha`` on the log
    scale (the scale of the ARL), rounded down to :data:`DECIMALS`.

    A statistic of few categories takes few values, and the rate jumps between them (with
    two categories, by a fifth at ``alpha = 0.0125``): the value with the rate just below
    ``alpha`` would make every such test conservative, and the fleet's ARL0 too long; the
    nearest errs either way, and about as often."""
    values, counts = np.unique(statistics, return_counts=True)
    exceed = np.cumsum(counts[::-1])[::-1] / statistics.size  # P*(S >= values[i])
    # Above the largest value, no replicate exceeds: count that as half of one.
    rates = np.append(exceed, 0.5 / statistics.size)
    nearest = int(np.argmin(np.abs(np.log(rates / alpha))))
    if nearest < values.size:
        value = float(values[nearest])
    else:
        value = float(values[-1]) + 10.0**-DECIMALS
    scale: int = 10**DECIMALS
    return float(max(math.floor(value * scale), 1) / scale)


def _generator(counts: Sequence[int], window: int, alpha: float) -> np.random.Generator:
    entropy = [window, int(round(alpha * 2**52)), *counts]
    return np.random.default_rng(np.random.SeedSequence(entropy))


def _check(counts: Sequence[int], window: int, alpha: float) -> IntCounts:
    reference = np.asarray(counts, dtype=np.int64)
    if reference.ndim != 1 or reference.size < 1 or (reference < 0).any() or reference.sum() < 1:
        raise ValueError(f"reference counts must be non-negative with a positive total: {counts}")
    if window < 1 or not 0.0 < alpha < 1.0:
        raise ValueError(f"need window >= 1 and alpha in (0, 1), got {window}, {alpha}")
    return reference


Statistic = Callable[[IntCounts, IntCounts], npt.NDArray[np.float64]]
"""``(references, windows) -> statistics``, one per row: what a detector computes."""


@functools.lru_cache(maxsize=8192)
def _bootstrap_critical(
    statistic: Statistic, counts: tuple[int, ...], window: int, alpha: float
) -> float:
    """The critical value of ``statistic`` by parametric bootstrap (cached per reference)."""
    reference = _check(counts, window, alpha)
    n, p = int(reference.sum()), reference / reference.sum()
    rng, draws = _generator(counts, window, alpha), bootstrap_draws(alpha)
    values = statistic(
        multinomial_draws(rng, n, p, draws), multinomial_draws(rng, window, p, draws)
    )
    return _critical(values, alpha)


def ks_critical_distance(reference_counts: Sequence[int], window: int, alpha: float) -> float:
    """Binned KS distance at which a window of ``window`` cases is rejected at level ``alpha``
    against a reference histogram of ``reference_counts`` (parametric bootstrap, cached).

    A 500-case reference of scores on the deciles, windows of 250 at 0.05 (the asymptotic
    KS critical value, for continuous data, is 0.104):

    >>> round(ks_critical_distance([40, 110, 120, 90, 60, 40, 20, 12, 5, 2, 1], 250, 0.05), 4)
    0.086
    """
    counts = tuple(int(c) for c in reference_counts)
    return _bootstrap_critical(ks_distances, counts, int(window), float(alpha))


def chi_square_critical_value(reference_counts: Sequence[int], window: int, alpha: float) -> float:
    """Pearson chi-square at which a window's category mix is rejected at level ``alpha``
    against a reference of ``reference_counts`` (parametric bootstrap, cached).

    Four scanner models, one of them rare (chi-square on 3 degrees of freedom: 10.86):

    >>> round(chi_square_critical_value([300, 150, 45, 5], 250, 0.0125), 2)
    10.47
    """
    counts = tuple(int(c) for c in reference_counts)
    return _bootstrap_critical(chi_square_statistics, counts, int(window), float(alpha))


def recalibrates(cases: int, calibrated_cases: int, window: int, cap: int | None) -> bool:
    """Whether a drift test's reference, grown to ``cases``, is calibrated afresh by
    bootstrap: once it holds twice the cases of the reference last calibrated
    (``calibrated_cases``), and at its final size (it cannot take another window within
    ``cap``), the value used from then on. In between, the last calibration is carried
    (the KS test's by :func:`scaled_ks_critical`; the chi-square test's as it is, see
    :meth:`detectors.WindowedChiSquareDrift._carries`): 5 bootstraps instead of 19 for a
    reference growing from 2 windows to 20, each 5-50 ms.

    >>> calibrated, sizes = 500, []
    >>> for cases in range(750, 5001, 250):
    ...     if recalibrates(cases, calibrated, 250, 5000):
    ...         calibrated = cases
    ...         sizes.append(cases)
    >>> sizes
    [1000, 2000, 4000, 5000]
    """
    return cases >= 2 * calibrated_cases or (cap is not None and cases + window > cap)


def scaled_ks_critical(critical: float, calibrated_cases: int, cases: int, window: int) -> float:
    """The KS critical distance calibrated for a reference of ``calibrated_cases`` carried to
    a reference of ``cases`` with about the same proportions, by the two-sample scale
    ``sqrt(1 / n + 1 / w)``: ``sqrt(n w / (n + w)) D`` has a limit law that does not depend
    on ``n`` (Kolmogorov; for binned data too, with the bins' own limit). Measured at the
    sizes between calibrations (references of 3 to 19 windows of 250; Beta(2, 5),
    Beta(0.5, 8) and a screening device's calibrated scores on deciles; ``alpha`` 0.05 and
    0.005; each rate from 40,000 bootstrap replicates): the carried value's rate is 0.98
    times ``alpha`` on average (0.76-1.38), a fresh calibration's 1.01 times (0.80-1.27:
    its own Monte Carlo error and the statistic's lattice); the last calibration's value
    used unscaled would be conservative, 0.84 times on average.

    >>> scaled_ks_critical(0.104, 1000, 1500, 250)
    0.100473
    """
    if cases == calibrated_cases:
        return critical
    shrink = math.sqrt((1 / cases + 1 / window) / (1 / calibrated_cases + 1 / window))
    scale: int = 10**DECIMALS
    return float(max(math.floor(critical * shrink * scale), 1) / scale)


def reference_cap(window: int, windows: int = REFERENCE_WINDOWS) -> int:
    """Cases a drift test's reference grows to: ``windows`` windows of ``window`` cases.

    >>> reference_cap(250)
    5000
    """
    return int(windows) * int(window)


MIN_EXPECTED = 5.0
"""Expected window count below which a category is pooled (Cochran's rule)."""


def sparse_pooling(reference_counts: Sequence[int], window: int) -> list[int]:
    """The pooled column of each category for a chi-square test of ``window`` cases.

    Categories expected fewer than :data:`MIN_EXPECTED` times in a window share one column
    (Cochran 1954, Biometrics 10: 417-451): Pearson's statistic of a sparse cell is a count
    of a few cases, so its tail follows the reference's estimate of that cell's share,
    which a small reference gets wrong by half, and a stream's rate with it (one stream in
    ten ran more than twice its ARL0 at a 5,000-case reference without pooling, against
    1.5 times with it). If the pooled column is still sparse it joins the smallest other
    category, unless that would leave one column (nothing to test). A rare category's
    surge still moves its column.

    >>> sparse_pooling([400, 60, 20, 12, 8], 250)  # expected 200, 30, 10, 6 and 4
    [0, 1, 2, 3, 3]
    >>> sparse_pooling([300, 150, 45, 3, 2], 250)
    [0, 1, 2, 2, 2]
    >>> sparse_pooling([495, 3, 2], 250)
    [0, 1, 1]
    """
    total = sum(reference_counts)
    expected = [window * c / total for c in reference_counts]
    sparse = [i for i, e in enumerate(expected) if e < MIN_EXPECTED]
    common = [i for i, e in enumerate(expected) if e >= MIN_EXPECTED]
    target = {i: i for i in range(len(expected))}
    if len(sparse) > 1 or (sparse and common):
        pooled_expected = sum(expected[i] for i in sparse)
        if pooled_expected < MIN_EXPECTED and len(common) > 1:
            into = min(common, key=lambda i: (expected[i], i))
        else:
            into = sparse[0]
        target.update({i: into for i in sparse})
    columns: dict[int, int] = {}
    return [columns.setdefault(target[i], len(columns)) for i in range(len(expected))]
