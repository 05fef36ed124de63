"""AUC with DeLong's variance, a confidence interval, and DeLong's test for two correlated AUCs.

The area under the ROC curve is estimated by the Mann-Whitney statistic: the share of
(positive, negative) case pairs in which the positive case scores higher, ties counted as
one half. Its variance is DeLong, DeLong & Clarke-Pearson's (1988) nonparametric estimator
from the structural components ("placements") of each case, computed with the midrank
algorithm of Sun & Xu (2014) in ``O(n log n)`` per score set instead of ``O(m n)``.

Two score sets on the *same* cases (two device versions on one test database, or a device
and a reader) give correlated AUCs; :func:`delong_test` uses the full DeLong covariance, so
the test of "same AUC" is not the (wrong, conservative) test for independent samples.

Conventions: ``y_true`` is 1 for a positive (e.g. referable) case and 0 for a negative one;
a higher score means "more likely positive".

References
----------
E. R. DeLong, D. M. DeLong, D. L. Clarke-Pearson (1988), "Comparing the areas under two or
more correlated receiver operating characteristic curves: a nonparametric approach",
Biometrics 44(3):837-845.

X. Sun, W. Xu (2014), "Fast implementation of DeLong's algorithm for comparing the areas
under correlated receiver operating characteristic curves", IEEE Signal Processing Letters
21(11):1389-1393.

Y. Qin, L. Hotilovac (2008), "Comparison of non-parametric confidence intervals for the area
under the ROC curve of a continuous-scale diagnostic test", Statistical Methods in Medical
Research 17(2):207-221 (the logit interval's better coverage near AUC = 1).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt
from scipy.special import ndtr, ndtri
from scipy.stats import rankdata

from detectors.base import check_finite_array, check_probability

__all__ = [
    "AUCComparison",
    "AUCEstimate",
    "delong_covariance",
    "delong_test",
    "roc_auc",
    "roc_auc_ci",
]

IntervalMethod = Literal["logit", "normal"]
Alternative = Literal["two-sided", "greater", "less"]


@dataclass(frozen=True, slots=True)
class AUCEstimate:
    """An AUC with DeLong's standard error and a two-sided ``1 - alpha`` interval."""

    auc: float
    variance: float
    """DeLong's variance of the AUC."""
    se: float
    lower: float
    upper: float
    alpha: float
    method: IntervalMethod
    """``"logit"`` (interval on the log-odds of the AUC) or ``"normal"`` (plain Wald)."""
    n_positive: int
    n_negative: int


@dataclass(frozen=True, slots=True)
class AUCComparison:
    """DeLong's test of equal AUCs for two score sets on the same cases."""

    auc_a: float
    auc_b: float
    difference: float
    """``auc_a - auc_b``."""
    se: float
    """DeLong standard error of the difference (includes the covariance of the two AUCs)."""
    z: float
    p_value: float
    """p-value for ``alternative`` (``"greater"``: AUC of A exceeds that of B)."""
    lower: float
    upper: float
    """Two-sided ``1 - alpha`` Wald interval for the difference."""
    correlation: float
    """DeLong estimate of the correlation of the two AUCs (NaN when a variance is zero)."""
    alternative: Alternative
    n_positive: int
    n_negative: int


def _as_labels(y_true: npt.ArrayLike) -> npt.NDArray[np.bool_]:
    labels = np.asarray(y_true)
    if labels.ndim != 1:
        raise ValueError(f"y_true must be one-dimensional, got shape {labels.shape}")
    if labels.dtype != np.bool_:
        if not np.issubdtype(labels.dtype, np.number):
            raise ValueError(f"y_true must hold 0/1 labels, got dtype {labels.dtype}")
        if not np.isin(labels, (0, 1)).all():
            raise ValueError("y_true must hold only 0 (negative) and 1 (positive)")
    positive = labels.astype(bool)
    n_positive = int(positive.sum())
    n_negative = positive.size - n_positive
    if n_positive < 2 or n_negative < 2:
        raise ValueError(
            "DeLong's variance needs at least 2 positive and 2 negative cases, "
            f"got {n_positive} and {n_negative}"
        )
    return positive


def _as_scores(
    y_scores: Sequence[npt.ArrayLike], n: int, names: Sequence[str] = ()
) -> npt.NDArray[np.float64]:
    """The score sets stacked, each checked finite under its argument's name."""
    names = [*names, *(f"y_scores[{i}]" for i in range(len(names), len(y_scores)))]
    checked = [check_finite_array(name, s) for name, s in zip(names, y_scores, strict=False)]
    scores = np.atleast_2d(np.asarray(checked, dtype=np.float64))
    if scores.ndim != 2 or scores.shape[1] != n:
        raise ValueError(f"each score set must have one score per case ({n}), got {scores.shape}")
    return scores


def _placements(
    positive: npt.NDArray[np.bool_], scores: npt.NDArray[np.float64]
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """AUCs and DeLong's placements by midranks (Sun & Xu 2014), one row per score set.

    ``v10[k, i]``: share of negatives scored below positive ``i`` (ties one half);
    ``v01[k, j]``: share of positives scored above negative ``j`` (ties one half).
    """
    m = int(positive.sum())
    n = positive.size - m
    pos, neg = scores[:, positive], scores[:, ~positive]
    rank_all = rankdata(scores, axis=1)  # midranks among all cases
    rank_pos = rankdata(pos, axis=1)  # midranks among positives
    rank_neg = rankdata(neg, axis=1)  # midranks among negatives
    v10 = (rank_all[:, positive] - rank_pos) / n
    v01 = 1.0 - (rank_all[:, ~positive] - rank_neg) / m
    aucs = (rank_all[:, positive].sum(axis=1) - m * (m + 1) / 2.0) / (m * n)
    return aucs, v10, v01


def delong_covariance(
    y_true: npt.ArrayLike, *y_scores: npt.ArrayLike
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """AUCs of one or more score sets on the same cases and their DeLong covariance matrix.

    Parameters
    ----------
    y_true
        1 for a positive case, 0 for a negative one; at least 2 of each.
    *y_scores
        One or more score sets, each with one finite score per case.

    Returns
    -------
    aucs
        The Mann-Whitney AUC of each score set, shape ``(k,)``.
    covariance
        DeLong's covariance matrix of the AUCs, ``S10 / m + S01 / n``, shape ``(k, k)``,
        where ``S10`` and ``S01`` are the sample covariances (divisor ``m - 1``, ``n - 1``)
        of the positive and negative placements.

    Examples
    --------
    >>> aucs, cov = delong_covariance([0, 0, 1, 1, 0, 1], [0.1, 0.4, 0.35, 0.8, 0.2, 0.9])
    >>> round(float(aucs[0]), 4), round(float(cov[0, 0]), 5)
    (0.8889, 0.02469)
    """
    if not y_scores:
        raise ValueError("give at least one score set")
    positive = _as_labels(y_true)
    scores = _as_scores(y_scores, positive.size)
    aucs, v10, v01 = _placements(positive, scores)
    m, n = v10.shape[1], v01.shape[1]
    s10 = np.atleast_2d(np.cov(v10))
    s01 = np.atleast_2d(np.cov(v01))
    return aucs, s10 / m + s01 / n


def roc_auc(y_true: npt.ArrayLike, y_score: npt.ArrayLike) -> float:
    """The Mann-Whitney AUC (empirical ROC area, ties counted one half).

    >>> roc_auc([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8])
    0.75
    """
    positive = np.asarray(y_true).astype(bool)
    if positive.ndim != 1 or positive.all() or not positive.any():
        raise ValueError("y_true must be one-dimensional with both positives and negatives")
    if not np.isin(np.asarray(y_true), (0, 1)).all():
        raise ValueError("y_true must hold only 0 (negative) and 1 (positive)")
    scores = _as_scores([y_score], positive.size, ["y_score"])[0]
    m = int(positive.sum())
    n = positive.size - m
    ranks = rankdata(scores)
    return float((ranks[positive].sum() - m * (m + 1) / 2.0) / (m * n))


def _check_alpha(alpha: float) -> float:
    return check_probability("alpha", alpha)


def roc_auc_ci(
    y_true: npt.ArrayLike,
    y_score: npt.ArrayLike,
    alpha: float = 0.05,
    method: IntervalMethod = "logit",
) -> AUCEstimate:
    """AUC with DeLong's standard error and a two-sided ``1 - alpha`` confidence interval.

    Parameters
    ----------
    y_true
        1 for a positive case, 0 for a negative one; at least 2 of each.
    y_score
        One finite score per case, higher meaning more likely positive.
    alpha
        One minus the coverage.
    method
        ``"logit"`` (default): the Wald interval for ``logit(AUC)`` with the delta-method
        standard error ``se / (AUC (1 - AUC))``, mapped back; it stays inside (0, 1) and
        covers better than the plain interval when the AUC is near 1, as medical devices'
        AUCs are. ``"normal"``: the plain Wald interval ``AUC +- z se`` clipped to [0, 1]
        (what R's pROC reports as the DeLong interval).

    Notes
    -----
    When every positive outscores every negative (AUC = 1) or the reverse, DeLong's
    variance is 0 and both intervals collapse to the point; a one-sided exact bound needs
    another method.

    Examples
    --------
    A device scoring 120 referable and 380 non-referable cases:

    >>> import numpy as np
    >>> rng = np.random.default_rng(7)
    >>> y = np.r_[np.ones(120), np.zeros(380)]
    >>> score = np.r_[rng.normal(1.8, 1.0, 120), rng.normal(0.0, 1.0, 380)]
    >>> est = roc_auc_ci(y, score)
    >>> round(est.auc, 4), round(est.se, 4), round(est.lower, 4), round(est.upper, 4)
    (0.9141, 0.014, 0.8823, 0.9379)
    """
    alpha = _check_alpha(alpha)
    if method not in ("logit", "normal"):
        raise ValueError(f"method must be 'logit' or 'normal', got {method!r}")
    positive = _as_labels(y_true)
    _as_scores([y_score], positive.size, ["y_score"])
    aucs, cov = delong_covariance(positive.astype(np.int8), y_score)
    auc = float(aucs[0])
    variance = max(float(cov[0, 0]), 0.0)
    se = math.sqrt(variance)
    z = float(ndtri(1.0 - alpha / 2.0))
    if se == 0.0 or auc in (0.0, 1.0):
        lower = upper = auc
    elif method == "logit":
        centre = math.log(auc / (1.0 - auc))
        half = z * se / (auc * (1.0 - auc))
        lower = 1.0 / (1.0 + math.exp(-(centre - half)))
        upper = 1.0 / (1.0 + math.exp(-(centre + half)))
    else:
        lower, upper = max(0.0, auc - z * se), min(1.0, auc + z * se)
    n_positive = int(positive.sum())
    return AUCEstimate(
        auc=auc,
        variance=variance,
        se=se,
        lower=lower,
        upper=upper,
        alpha=alpha,
        method=method,
        n_positive=n_positive,
        n_negative=positive.size - n_positive,
    )


def delong_test(
    y_true: npt.ArrayLike,
    y_score_a: npt.ArrayLike,
    y_score_b: npt.ArrayLike,
    alpha: float = 0.05,
    alternative: Alternative = "two-sided",
) -> AUCComparison:
    """DeLong's test that two score sets on the same cases have the same AUC.

    ``z = (AUC_a - AUC_b) / sqrt(var_a + var_b - 2 cov_ab)`` is referred to the standard
    normal. Use it to compare two device versions (or a device and a reader) scored on the
    same test database; for AUCs from disjoint case sets the covariance is zero and the
    two variances of :func:`roc_auc_ci` simply add.

    Parameters
    ----------
    y_true
        1 for a positive case, 0 for a negative one; at least 2 of each.
    y_score_a, y_score_b
        The two score sets, one score per case in the same case order.
    alpha
        One minus the coverage of the interval for the difference.
    alternative
        ``"two-sided"``, ``"greater"`` (A's AUC exceeds B's) or ``"less"``.

    Examples
    --------
    Version 2 of a device against version 1 on the same 400 cases:

    >>> import numpy as np
    >>> rng = np.random.default_rng(11)
    >>> y = np.r_[np.ones(100), np.zeros(300)]
    >>> latent = rng.normal(0.0, 1.0, 400)  # case difficulty, shared by both versions
    >>> v1 = 1.2 * y + latent + rng.normal(0.0, 0.6, 400)
    >>> v2 = 1.4 * y + latent + rng.normal(0.0, 0.6, 400)
    >>> result = delong_test(y, v2, v1, alternative="greater")
    >>> round(result.auc_a, 4), round(result.auc_b, 4), round(result.correlation, 2)
    (0.8164, 0.7612, 0.72)
    >>> round(result.difference, 4), round(result.z, 2), round(result.p_value, 4)
    (0.0552, 2.67, 0.0038)
    """
    alpha = _check_alpha(alpha)
    if alternative not in ("two-sided", "greater", "less"):
        raise ValueError(f"alternative must be two-sided, greater or less, got {alternative!r}")
    positive = _as_labels(y_true)
    _as_scores([y_score_a, y_score_b], positive.size, ["y_score_a", "y_score_b"])
    aucs, cov = delong_covariance(positive.astype(np.int8), y_score_a, y_score_b)
    auc_a, auc_b = float(aucs[0]), float(aucs[1])
    difference = auc_a - auc_b
    variance = max(float(cov[0, 0] + cov[1, 1] - 2.0 * cov[0, 1]), 0.0)
    se = math.sqrt(variance)
    if se > 0.0:
        z = difference / se
    else:  # identical rankings: no evidence either way unless the AUCs differ
        z = 0.0 if difference == 0.0 else math.copysign(math.inf, difference)
    if alternative == "two-sided":
        p_value = float(2.0 * ndtr(-abs(z)))
    elif alternative == "greater":
        p_value = float(ndtr(-z))
    else:
        p_value = float(ndtr(z))
    z_crit = float(ndtri(1.0 - alpha / 2.0))
    var_a, var_b = float(cov[0, 0]), float(cov[1, 1])
    correlation = (
        float(cov[0, 1]) / math.sqrt(var_a * var_b) if var_a > 0 and var_b > 0 else math.nan
    )
    n_positive = int(positive.sum())
    return AUCComparison(
        auc_a=auc_a,
        auc_b=auc_b,
        difference=difference,
        se=se,
        z=float(z),
        p_value=min(1.0, p_value),
        lower=difference - z_crit * se,
        upper=difference + z_crit * se,
        correlation=correlation,
        alternative=alternative,
        n_positive=n_positive,
        n_negative=positive.size - n_positive,
    )
