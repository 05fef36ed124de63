"""Fleiss' kappa for many readers per subject, with a null test and a bootstrap interval.

Fleiss (1971), "Measuring nominal scale agreement among many raters", Psychological
Bulletin 76(5):378-382: for ``N`` subjects each graded by ``n`` readers into ``K``
categories, with ``n_ij`` readers putting subject ``i`` in category ``j``,

    P_i = (sum_j n_ij^2 - n) / (n (n - 1)),    p_j = sum_i n_ij / (N n),
    kappa = (mean(P_i) - sum_j p_j^2) / (1 - sum_j p_j^2).

The standard error under no agreement beyond chance is Fleiss, Nee & Landis (1979),
Psychological Bulletin 86(5):974-977. No closed form is standard for the interval around
a non-zero kappa, so the interval is a percentile bootstrap over subjects (the unit that
was sampled), seeded for reproducibility.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt
from scipy.special import ndtr

from detectors.base import check_finite_array, check_integer, check_probability
from detectors.statistics.cohen_kappa import KappaEstimate

__all__ = ["fleiss_kappa"]


def _kappa(per_subject_agreement: npt.NDArray[np.float64], p: npt.NDArray[np.float64]) -> float:
    chance = float((p**2).sum(axis=-1))
    return (float(per_subject_agreement.mean()) - chance) / (1.0 - chance)


def fleiss_kappa(
    counts: npt.ArrayLike, alpha: float = 0.05, n_bootstrap: int = 2000, seed: int = 0
) -> KappaEstimate:
    """Fleiss' kappa of an ``N x K`` table of reader counts per subject and category.

    Parameters
    ----------
    counts
        ``counts[i, j]``: readers who put subject ``i`` in category ``j``; every subject
        must have the same number of readers (at least two).
    alpha
        Two-sided level of the bootstrap interval.
    n_bootstrap, seed
        Bootstrap resamples of subjects and the seed of their generator.

    Examples
    --------
    The 10 subjects x 14 raters example of Fleiss' kappa (kappa = 0.210):

    >>> table = [[0, 0, 0, 0, 14], [0, 2, 6, 4, 2], [0, 0, 3, 5, 6], [0, 3, 9, 2, 0],
    ...          [2, 2, 8, 1, 1], [7, 7, 0, 0, 0], [3, 2, 6, 3, 0], [2, 5, 3, 2, 2],
    ...          [6, 5, 2, 1, 0], [0, 2, 2, 3, 7]]
    >>> estimate = fleiss_kappa(table)
    >>> round(estimate.kappa, 3), round(estimate.se_null, 4)
    (0.21, 0.017)
    """
    table = check_finite_array("counts", counts)
    if table.ndim != 2 or table.shape[0] < 1 or table.shape[1] < 2 or (table < 0).any():
        raise ValueError("counts must be an N x K table (K >= 2) of non-negative counts")
    if not np.allclose(table, np.round(table)):
        raise ValueError("counts must be integers")
    raters = table.sum(axis=1)
    if not (raters == raters[0]).all() or raters[0] < 2:
        raise ValueError("every subject needs the same number of readers, at least two")
    alpha = check_probability("alpha", alpha)
    n_bootstrap = check_integer("n_bootstrap", n_bootstrap, minimum=1)
    seed = check_integer("seed", seed)
    n_subjects, n = table.shape[0], float(raters[0])
    agreement = ((table**2).sum(axis=1) - n) / (n * (n - 1.0))
    p = table.sum(axis=0) / (n_subjects * n)
    pq = p * (1.0 - p)
    if pq.sum() <= 0:
        raise ValueError("kappa is undefined: every reading is in one category")
    kappa = _kappa(agreement, p)
    se_null = float(
        math.sqrt(2.0)
        / (pq.sum() * math.sqrt(n_subjects * n * (n - 1.0)))
        * math.sqrt(max(pq.sum() ** 2 - (pq * (1.0 - 2.0 * p)).sum(), 0.0))
    )
    z = kappa / se_null if se_null > 0 else 0.0

    rng = np.random.default_rng(seed)
    draws = rng.integers(0, n_subjects, size=(n_bootstrap, n_subjects))
    boot = np.empty(n_bootstrap)
    chunk = max(1, 2_000_000 // (n_subjects * table.shape[1]))  # bounds the memory used
    for start in range(0, n_bootstrap, chunk):
        rows = draws[start : start + chunk]
        boot_p = table[rows].sum(axis=1) / (n_subjects * n)
        chance = (boot_p**2).sum(axis=1)
        with np.errstate(divide="ignore", invalid="ignore"):
            boot[start : start + chunk] = (agreement[rows].mean(axis=1) - chance) / (1.0 - chance)
    boot = boot[np.isfinite(boot)]
    lower, upper = np.quantile(boot, [alpha / 2.0, 1.0 - alpha / 2.0])
    return KappaEstimate(
        kappa=kappa,
        se=float(boot.std(ddof=1)) if boot.size > 1 else 0.0,
        lower=float(lower),
        upper=float(upper),
        se_null=se_null,
        z=z,
        p_value=float(2.0 * ndtr(-abs(z))),
        n_subjects=n_subjects,
    )
