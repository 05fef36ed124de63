"""Two-sample Kolmogorov-Smirnov test for label-free drift of scores and continuous features.

The statistic is the largest distance between the two empirical distribution functions;
its p-value uses the asymptotic two-sided distribution of ``sqrt(en) D`` with
``en = n m / (n + m)`` (Kolmogorov's distribution, through :data:`scipy.stats.kstwo` at
``round(en)`` as in Hodges 1958), which is accurate for the window sizes monitored here
(hundreds of cases) and conservative when values are tied or binned.

:func:`binned_ks_statistic` computes the same distance from two histograms on shared
bins, so a reference can be kept as a fixed-size summary instead of its raw values; on
binned data it never exceeds the raw-data statistic.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy.stats import kstwo

from detectors.base import check_finite, check_finite_array, check_integer, check_probability

__all__ = ["KSResult", "binned_ks_statistic", "ks_critical_value", "ks_p_value", "ks_two_sample"]


@dataclass(frozen=True, slots=True)
class KSResult:
    """Outcome of a two-sample KS comparison."""

    statistic: float
    """Largest distance between the two empirical CDFs, in [0, 1]."""
    p_value: float
    """Asymptotic two-sided p-value."""
    n_reference: int
    n_recent: int


def _effective_n(n_reference: int, n_recent: int) -> float:
    n_reference = check_integer("n_reference", n_reference, minimum=1)
    n_recent = check_integer("n_recent", n_recent, minimum=1)
    return round(n_reference * n_recent / (n_reference + n_recent))


def ks_p_value(statistic: float, n_reference: int, n_recent: int) -> float:
    """Asymptotic two-sided p-value of a two-sample KS distance."""
    if not 0.0 <= check_finite(statistic, "statistic") <= 1.0:
        raise ValueError(f"statistic must be a KS distance in [0, 1], got {statistic!r}")
    en = max(1, _effective_n(n_reference, n_recent))
    return float(np.clip(kstwo.sf(statistic, en), 0.0, 1.0))


def ks_critical_value(alpha: float, n_reference: int, n_recent: int) -> float:
    """The distance at which the asymptotic two-sided test rejects at level ``alpha``.

    >>> round(ks_critical_value(0.05, 5000, 500), 4)
    0.0633
    """
    alpha = check_probability("alpha", alpha)
    en = max(1, _effective_n(n_reference, n_recent))
    return float(kstwo.isf(alpha, en))


def ks_two_sample(reference: npt.ArrayLike, recent: npt.ArrayLike) -> KSResult:
    """Two-sample KS test of a recent window against a reference sample.

    Parameters
    ----------
    reference, recent
        Finite values (scores, a continuous acquisition feature).

    Examples
    --------
    Scores whose mean moved by a fifth of a standard deviation:

    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> result = ks_two_sample(rng.normal(0, 1, 2000), rng.normal(0.2, 1, 500))
    >>> round(result.statistic, 3), round(result.p_value, 4)
    (0.079, 0.0137)
    """
    a = np.sort(check_finite_array("reference", reference).ravel())
    b = np.sort(check_finite_array("recent", recent).ravel())
    if a.size == 0 or b.size == 0:
        raise ValueError("both samples need at least one value")
    pooled = np.concatenate([a, b])
    cdf_a = np.searchsorted(a, pooled, side="right") / a.size
    cdf_b = np.searchsorted(b, pooled, side="right") / b.size
    statistic = float(np.max(np.abs(cdf_a - cdf_b)))
    return KSResult(statistic, ks_p_value(statistic, a.size, b.size), int(a.size), int(b.size))


def binned_ks_statistic(reference_counts: npt.ArrayLike, recent_counts: npt.ArrayLike) -> float:
    """KS distance between two histograms on the same ordered bins.

    >>> binned_ks_statistic([50, 30, 20], [20, 30, 50])
    0.3
    """
    a = check_finite_array("reference_counts", reference_counts)
    b = check_finite_array("recent_counts", recent_counts)
    if a.shape != b.shape or a.ndim != 1:
        raise ValueError(f"counts must be 1-d of the same length, got {a.shape} and {b.shape}")
    if (a < 0).any() or (b < 0).any() or a.sum() <= 0 or b.sum() <= 0:
        raise ValueError("counts must be non-negative with a positive total")
    distance = np.abs(np.cumsum(a) / a.sum() - np.cumsum(b) / b.sum())
    return float(round(distance.max(), 15))
