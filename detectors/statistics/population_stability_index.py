"""Population stability index (PSI) between a reference and a recent histogram.

``PSI = sum_i (r_i - q_i) ln(r_i / q_i)`` over shared bins (or categories), with ``q`` the
reference and ``r`` the recent proportions: the symmetrised Kullback-Leibler divergence
``KL(r || q) + KL(q || r)``. Empty bins would make it infinite (a category never seen in
the reference is exactly that case), so a pseudo-count is added to every bin of both
histograms before taking proportions.

The usual industry reading (< 0.1 stable, 0.1-0.25 moderate, > 0.25 major shift) ignores
sample size. Under no drift, with ``n`` reference and ``m`` recent cases over ``B`` bins,
``PSI / (1/n + 1/m)`` is approximately chi-square with ``B - 1`` degrees of freedom
(Yurdakul 2018, *Statistical properties of population stability index*, Western Michigan
University), which :func:`psi_p_value` uses to turn a PSI into a p-value.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
from scipy.stats import chi2

from detectors.base import check_finite, check_finite_array, check_integer

__all__ = ["population_stability_index", "psi_p_value"]


def population_stability_index(
    reference_counts: npt.ArrayLike, recent_counts: npt.ArrayLike, pseudo_count: float = 0.5
) -> float:
    """PSI between two histograms on the same bins.

    Parameters
    ----------
    reference_counts, recent_counts
        Non-negative counts per bin (or category), aligned.
    pseudo_count
        Added to every bin of both histograms so empty bins give a finite PSI.

    Examples
    --------
    >>> round(population_stability_index([500, 300, 200], [300, 300, 400]), 4)
    0.2401
    """
    q = check_finite_array("reference_counts", reference_counts)
    r = check_finite_array("recent_counts", recent_counts)
    if q.shape != r.shape or q.ndim != 1 or q.size < 2:
        raise ValueError(f"need two aligned 1-d histograms of >= 2 bins, got {q.shape}, {r.shape}")
    if (q < 0).any() or (r < 0).any():
        raise ValueError("counts must be non-negative")
    pseudo_count = check_finite(pseudo_count, "pseudo_count")
    if pseudo_count < 0 or (pseudo_count == 0 and ((q == 0).any() or (r == 0).any())):
        raise ValueError("empty bins need a positive pseudo_count")
    q = (q + pseudo_count) / (q + pseudo_count).sum()
    r = (r + pseudo_count) / (r + pseudo_count).sum()
    return float(np.sum((r - q) * np.log(r / q)))


def psi_p_value(psi: float, n_reference: int, n_recent: int, n_bins: int) -> float:
    """Approximate p-value of a PSI under no drift (Yurdakul 2018's chi-square limit).

    >>> round(psi_p_value(0.02, 5000, 500, 10), 4)
    0.4289
    """
    if not check_finite(psi, "psi") >= 0.0:
        raise ValueError(f"psi must be non-negative, got {psi!r}")
    n_reference = check_integer("n_reference", n_reference, minimum=1)
    n_recent = check_integer("n_recent", n_recent, minimum=1)
    n_bins = check_integer("n_bins", n_bins, minimum=2)
    scaled = psi / (1.0 / n_reference + 1.0 / n_recent)
    return float(chi2.sf(scaled, n_bins - 1))
