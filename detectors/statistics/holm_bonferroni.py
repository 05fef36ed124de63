"""Holm's step-down adjustment: many drift tests in one window, one family-wise error.

Each window compares several features at once (score, manufacturer, model, slice-thickness
band, kVp band); testing each at ``alpha`` would raise a false alarm on some feature far
more often than ``alpha``. Holm (1979) holds the family-wise error rate at ``alpha`` under
any dependence between the tests and is uniformly more powerful than Bonferroni.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from detectors.base import check_finite_array

__all__ = ["holm_adjusted_p_values"]


def holm_adjusted_p_values(p_values: npt.ArrayLike) -> npt.NDArray[np.float64]:
    """Holm-adjusted p-values, in the input order; reject where ``adjusted <= alpha``.

    >>> holm_adjusted_p_values([0.01, 0.04, 0.03, 0.2]).round(3).tolist()
    [0.04, 0.09, 0.09, 0.2]
    """
    p = check_finite_array("p_values", p_values)
    if p.ndim != 1 or ((p < 0) | (p > 1)).any():
        raise ValueError("p-values must be a 1-d array of numbers in [0, 1]")
    order = np.argsort(p, kind="stable")
    m = p.size
    stepped = np.maximum.accumulate((m - np.arange(m)) * p[order])
    adjusted = np.empty(m)
    adjusted[order] = np.minimum(stepped, 1.0)
    return adjusted
