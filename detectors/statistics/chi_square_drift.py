"""Chi-square test of homogeneity for categorical drift (manufacturer, model, bands).

The reference and the recent window form a 2 x K contingency table over the union of
their categories; Pearson's statistic is compared with chi-square on ``K - 1`` degrees
of freedom (no continuity correction). A category in the recent window that the
reference never saw (a new scanner model, an unregistered kVp band) is not an error: it
is a finding of its own, listed in :attr:`CategoricalDrift.new_categories`, and it also
enters the table (its reference count is zero, its expected count is not).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
from scipy.stats import chi2

from detectors.base import check_integer
from detectors.statistics.population_stability_index import population_stability_index

__all__ = ["CategoricalDrift", "chi_square_drift"]


@dataclass(frozen=True, slots=True)
class CategoricalDrift:
    """Outcome of :func:`chi_square_drift`."""

    statistic: float
    """Pearson's chi-square statistic of the 2 x K table."""
    dof: int
    p_value: float
    psi: float
    """Population stability index over the same categories (pseudo-count 0.5)."""
    new_categories: tuple[str, ...]
    """Categories seen in the recent window and never in the reference: a finding."""
    vanished_categories: tuple[str, ...]
    """Categories of the reference absent from the recent window."""
    n_reference: int
    n_recent: int


def chi_square_drift(
    reference_counts: Mapping[str, int], recent_counts: Mapping[str, int]
) -> CategoricalDrift:
    """Compare the category mix of a recent window with the reference.

    Parameters
    ----------
    reference_counts, recent_counts
        Cases per category (e.g. ``{"GE": 412, "Siemens": 377}``); zero counts are allowed.

    Examples
    --------
    A new scanner model appears in the recent window:

    >>> reference = {"GE Revolution": 600, "Siemens Force": 400}
    >>> recent = {"GE Revolution": 50, "Siemens Force": 40, "uCT 960+": 10}
    >>> drift = chi_square_drift(reference, recent)
    >>> drift.new_categories, drift.dof, drift.p_value < 1e-6
    (('uCT 960+',), 2, True)
    """
    for name, counts in (("reference_counts", reference_counts), ("recent_counts", recent_counts)):
        for category, count in counts.items():
            check_integer(f"{name}[{category!r}]", count)
    reference_counts = {k: int(v) for k, v in reference_counts.items()}
    recent_counts = {k: int(v) for k, v in recent_counts.items()}
    categories = sorted(set(reference_counts) | set(recent_counts))
    ref = np.array([reference_counts.get(c, 0) for c in categories], dtype=np.float64)
    rec = np.array([recent_counts.get(c, 0) for c in categories], dtype=np.float64)
    n_ref, n_rec = int(ref.sum()), int(rec.sum())
    if n_ref == 0 or n_rec == 0:
        raise ValueError("both the reference and the recent window need cases")
    new = tuple(c for c in categories if reference_counts.get(c, 0) == 0 and recent_counts[c] > 0)
    vanished = tuple(
        c for c in categories if reference_counts.get(c, 0) > 0 and recent_counts.get(c, 0) == 0
    )
    seen = (ref + rec) > 0
    ref, rec = ref[seen], rec[seen]
    dof = int(seen.sum()) - 1
    if dof == 0:
        statistic, p_value = 0.0, 1.0
    else:
        table = np.vstack([ref, rec])
        expected = table.sum(axis=1, keepdims=True) * table.sum(axis=0) / table.sum()
        statistic = float(((table - expected) ** 2 / expected).sum())
        p_value = float(chi2.sf(statistic, dof))
    psi = population_stability_index(ref, rec) if ref.size >= 2 else 0.0
    return CategoricalDrift(statistic, dof, p_value, psi, new, vanished, n_ref, n_rec)
