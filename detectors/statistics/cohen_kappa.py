"""Cohen's kappa for two readers, with the large-sample standard errors of Fleiss et al.

Ground truth for surveillance comes from two rounds of double-blind reads with
adjudication; the agreement of the two readers before adjudication is itself evidence
about the quality of the labels. Cohen's (1960) kappa corrects the observed agreement for
the agreement expected from the readers' marginal rates; the weighted form (Cohen 1968)
gives partial credit to near-misses on an ordinal grade (e.g. retinopathy grades).

Standard errors are those of Fleiss, Cohen & Everitt (1969), "Large sample standard
errors of kappa and weighted kappa", Psychological Bulletin 72(5):323-327: one for the
confidence interval (around the estimate) and one under the null hypothesis of chance
agreement (for the test of kappa = 0).
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt
from scipy.special import ndtr, ndtri

from detectors.base import check_finite_array, check_probability

__all__ = ["KappaEstimate", "agreement_table", "cohen_kappa", "cohen_kappa_from_table"]

Weights = Literal["linear", "quadratic"] | None


@dataclass(frozen=True, slots=True)
class KappaEstimate:
    """A kappa with its uncertainty."""

    kappa: float
    se: float
    """Standard error around the estimate (for the confidence interval)."""
    lower: float
    upper: float
    """Two-sided ``1 - alpha`` confidence interval."""
    se_null: float
    """Standard error under chance agreement (kappa = 0)."""
    z: float
    p_value: float
    """Two-sided p-value of kappa = 0."""
    n_subjects: int


def agreement_table(
    reader_a: Sequence[Hashable],
    reader_b: Sequence[Hashable],
    categories: Sequence[Hashable] | None = None,
) -> npt.NDArray[np.float64]:
    """The K x K table of counts, rows reader A, columns reader B, in ``categories`` order.

    Without ``categories`` the sorted distinct labels of both readers are used.
    """
    if len(reader_a) != len(reader_b) or len(reader_a) == 0:
        raise ValueError("both readers must grade the same, non-empty list of subjects")
    if categories is None:
        categories = sorted(set(reader_a) | set(reader_b))  # type: ignore[type-var]
    index = {c: i for i, c in enumerate(categories)}
    unknown = (set(reader_a) | set(reader_b)) - set(index)
    if unknown:
        raise ValueError(f"labels outside categories: {sorted(map(str, unknown))}")
    table = np.zeros((len(index), len(index)))
    np.add.at(table, ([index[a] for a in reader_a], [index[b] for b in reader_b]), 1.0)
    return table


def _agreement_weights(k: int, weights: Weights) -> npt.NDArray[np.float64]:
    if k < 2:
        return np.ones((k, k))
    distance = np.abs(np.subtract.outer(np.arange(k), np.arange(k))) / (k - 1)
    if weights is None:
        return np.eye(k)
    if weights == "linear":
        return 1.0 - distance
    if weights == "quadratic":
        return 1.0 - distance**2
    raise ValueError(f"weights must be None, 'linear' or 'quadratic', got {weights!r}")


def cohen_kappa_from_table(
    table: npt.ArrayLike, weights: Weights = None, alpha: float = 0.05
) -> KappaEstimate:
    """Cohen's (weighted) kappa from a K x K agreement table of counts.

    Examples
    --------
    Two readers grading 100 fundus photos referable / not referable:

    >>> estimate = cohen_kappa_from_table([[20, 5], [10, 65]])
    >>> round(estimate.kappa, 4), round(estimate.lower, 4), round(estimate.upper, 4)
    (0.625, 0.454, 0.796)
    """
    counts = check_finite_array("table", table)
    if counts.ndim != 2 or counts.shape[0] != counts.shape[1] or (counts < 0).any():
        raise ValueError("the agreement table must be square with non-negative counts")
    alpha = check_probability("alpha", alpha)
    n = float(counts.sum())
    if n <= 0:
        raise ValueError("the agreement table has no subjects")
    w = _agreement_weights(counts.shape[0], weights)
    p = counts / n
    row, col = p.sum(axis=1), p.sum(axis=0)
    observed = float((w * p).sum())
    expected = float((w * np.outer(row, col)).sum())
    if expected >= 1.0:
        raise ValueError("kappa is undefined: chance agreement is 1 (a single category used)")
    kappa = (observed - expected) / (1.0 - expected)
    w_row = w @ col  # mean weight of row category i over reader B's marginal
    w_col = row @ w  # mean weight of column category j over reader A's marginal
    spread = w - (w_row[:, None] + w_col[None, :]) * (1.0 - kappa)
    var = ((p * spread**2).sum() - (kappa - expected * (1.0 - kappa)) ** 2) / (
        n * (1.0 - expected) ** 2
    )
    var_null = ((np.outer(row, col) * (w - (w_row[:, None] + w_col[None, :])) ** 2).sum()) - (
        expected**2
    )
    var_null /= n * (1.0 - expected) ** 2
    se, se_null = math.sqrt(max(var, 0.0)), math.sqrt(max(var_null, 0.0))
    z_crit = float(ndtri(1.0 - alpha / 2.0))
    if se_null > 0:
        z = kappa / se_null
    else:
        z = math.copysign(math.inf, kappa) if kappa != 0 else 0.0
    p_value = float(2.0 * ndtr(-abs(z))) if math.isfinite(z) else 0.0
    return KappaEstimate(
        kappa=kappa,
        se=se,
        lower=max(-1.0, kappa - z_crit * se),
        upper=min(1.0, kappa + z_crit * se),
        se_null=se_null,
        z=float(z),
        p_value=p_value,
        n_subjects=int(round(n)),
    )


def cohen_kappa(
    reader_a: Sequence[Hashable],
    reader_b: Sequence[Hashable],
    weights: Weights = None,
    alpha: float = 0.05,
    categories: Sequence[Hashable] | None = None,
) -> KappaEstimate:
    """Cohen's kappa of two readers' labels on the same subjects.

    Parameters
    ----------
    reader_a, reader_b
        One label per subject from each reader.
    weights
        ``None`` for plain kappa; ``"linear"`` or ``"quadratic"`` for ordinal grades, whose
        order is that of ``categories`` (or the sorted labels).
    alpha
        Two-sided level of the confidence interval.
    categories
        All possible labels in order; needed when a grade may be unused by both readers.

    Examples
    --------
    >>> a = [0, 1, 2, 2, 3, 1, 0, 2, 4, 3]
    >>> b = [0, 1, 2, 3, 3, 1, 1, 2, 4, 4]
    >>> round(cohen_kappa(a, b).kappa, 4), round(cohen_kappa(a, b, "quadratic").kappa, 4)
    (0.625, 0.9102)
    """
    return cohen_kappa_from_table(agreement_table(reader_a, reader_b, categories), weights, alpha)
