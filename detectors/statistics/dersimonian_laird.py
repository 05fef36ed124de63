"""DerSimonian-Laird random-effects meta-analysis of per-site performance.

DerSimonian & Laird (1986), "Meta-analysis in clinical trials", Controlled Clinical Trials
7(3):177-188; I-squared from Higgins & Thompson (2002), Statistics in Medicine 21:1539.
Each site contributes an effect (e.g. the logit of its sensitivity, from
:func:`logit_proportion_effects`) and its within-site variance; the between-site variance
``tau^2`` is the method-of-moments estimate from Cochran's ``Q``, and ``I^2`` is the share
of the variation across sites that is heterogeneity rather than chance: how much a
device's performance depends on where it runs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy.special import expit, ndtri
from scipy.stats import chi2

from detectors.base import check_finite, check_finite_array, check_probability

__all__ = [
    "RandomEffectsMetaAnalysis",
    "dersimonian_laird",
    "i2_interval",
    "logit_proportion_effects",
    "pooled_proportion",
]


@dataclass(frozen=True, slots=True)
class RandomEffectsMetaAnalysis:
    """Pooled effect across sites with its heterogeneity."""

    estimate: float
    """Random-effects pooled effect."""
    se: float
    lower: float
    upper: float
    """Two-sided ``1 - alpha`` Wald interval of the pooled effect."""
    tau2: float
    """Between-site variance (DerSimonian-Laird)."""
    q: float
    """Cochran's Q."""
    q_p_value: float
    """P-value of homogeneity (Q against chi-square on k - 1 df)."""
    i2: float
    """Share of the total variation due to heterogeneity, in [0, 1]."""
    fixed_estimate: float
    """Inverse-variance (fixed-effect) pooled effect."""
    n_sites: int


def logit_proportion_effects(
    successes: npt.ArrayLike, n: npt.ArrayLike, correction: float = 0.5
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """Per-site logit proportions and their variances, ``1/(x + c) + 1/(n - x + c)``.

    A continuity correction ``c`` is added to every site (Haldane-Anscombe) so a site with
    perfect sensitivity has a finite effect.
    """
    x = check_finite_array("successes", successes)
    total = check_finite_array("n", n)
    if not check_finite(correction, "correction") >= 0.0:
        raise ValueError(f"correction must be non-negative, got {correction!r}")
    if x.shape != total.shape or (x < 0).any() or (x > total).any() or (total < 1).any():
        raise ValueError("need 0 <= successes <= n and n >= 1 for every site")
    a, b = x + correction, total - x + correction
    if not ((a > 0).all() and (b > 0).all()):
        raise ValueError("a site with no or all successes needs a positive correction")
    return np.log(a / b), 1.0 / a + 1.0 / b


def dersimonian_laird(
    effects: npt.ArrayLike, variances: npt.ArrayLike, alpha: float = 0.05
) -> RandomEffectsMetaAnalysis:
    """DerSimonian-Laird random-effects pooling of per-site effects.

    Examples
    --------
    Sensitivity at five sites (referable cases found / referable cases):

    >>> effects, variances = logit_proportion_effects([88, 45, 130, 60, 51], [100, 50, 150, 80, 55])
    >>> pooled = dersimonian_laird(effects, variances)
    >>> round(pooled.tau2, 4), round(pooled.i2, 3), round(pooled_proportion(pooled), 3)
    (0.1523, 0.601, 0.859)
    """
    y = check_finite_array("effects", effects)
    v = check_finite_array("variances", variances)
    if y.ndim != 1 or y.shape != v.shape or y.size < 2:
        raise ValueError("need at least two sites with one effect and one variance each")
    if not (v > 0).all():
        raise ValueError("variances must be positive")
    alpha = check_probability("alpha", alpha)
    w = 1.0 / v
    fixed = float((w * y).sum() / w.sum())
    q = float((w * (y - fixed) ** 2).sum())
    df = y.size - 1
    c = float(w.sum() - (w**2).sum() / w.sum())
    tau2 = max(0.0, (q - df) / c)
    w_re = 1.0 / (v + tau2)
    estimate = float((w_re * y).sum() / w_re.sum())
    se = math.sqrt(1.0 / float(w_re.sum()))
    z = float(ndtri(1.0 - alpha / 2.0))
    i2 = max(0.0, (q - df) / q) if q > 0 else 0.0
    return RandomEffectsMetaAnalysis(
        estimate=estimate,
        se=se,
        lower=estimate - z * se,
        upper=estimate + z * se,
        tau2=tau2,
        q=q,
        q_p_value=float(chi2.sf(q, df)),
        i2=i2,
        fixed_estimate=fixed,
        n_sites=int(y.size),
    )


def i2_interval(q: float, sites: int, alpha: float = 0.05) -> tuple[float, float] | None:
    """The test-based two-sided ``1 - alpha`` interval of I² from Cochran's Q on ``sites``
    sites; None where it is undefined (fewer than 2 sites, or 2 sites with Q <= 2).

    Higgins & Thompson (2002), appendix: ``H = sqrt(Q / (k - 1))``, truncated at 1 as I² is
    at 0; an interval ``ln H +- z SE(ln H)`` with ``SE = (ln Q - ln(k - 1)) / (2 (sqrt(2Q) -
    sqrt(2k - 3)))`` when ``Q > k``, else ``sqrt(1 / (2 (k - 2)) (1 - 1 / (3 (k - 2)^2)))``;
    each limit truncated at 1 and mapped to ``I² = (H² - 1) / H²``. As R's ``meta``
    (``isquared``) and ``heterometa`` (``higgins``) compute it: Q below its degrees of
    freedom gives I² = 0, with an upper limit that says how much heterogeneity so few sites
    cannot rule out.

    Examples
    --------
    Q = 20 on 6 sites is I² = 0.75:

    >>> [round(v, 3) for v in i2_interval(q=20.0, sites=6)]
    [0.434, 0.89]

    Q = 3 on 6 sites is I² = 0, yet up to 0.75 is not excluded:

    >>> [round(v, 3) for v in i2_interval(q=3.0, sites=6)]
    [0.0, 0.746]
    """
    q = check_finite(q, "q")
    if q < 0.0:
        raise ValueError(f"q must be non-negative, got {q!r}")
    alpha = check_probability("alpha", alpha)
    k = int(sites)
    if k < 2:
        return None
    if q > k:
        se = 0.5 * (math.log(q) - math.log(k - 1)) / (math.sqrt(2.0 * q) - math.sqrt(2.0 * k - 3.0))
    elif k > 2:
        se = math.sqrt(1.0 / (2.0 * (k - 2)) * (1.0 - 1.0 / (3.0 * (k - 2) ** 2)))
    else:
        return None
    ln_h = max(0.5 * math.log(q / (k - 1)), 0.0) if q > 0 else 0.0
    z = float(ndtri(1.0 - alpha / 2.0))
    h_lower, h_upper = (max(math.exp(ln_h + sign * z * se), 1.0) for sign in (-1.0, 1.0))
    return 1.0 - 1.0 / h_lower**2, 1.0 - 1.0 / h_upper**2


def pooled_proportion(result: RandomEffectsMetaAnalysis) -> float:
    """The pooled effect back on the proportion scale, for logit effects."""
    return float(expit(result.estimate))
