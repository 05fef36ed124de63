"""Funnel-plot control limits for a site's proportion against the fleet's.

Spiegelhalter (2005), "Funnel plots for comparing institutional performance", Statistics
in Medicine 24(8):1185-1202. A site with ``n`` cases is compared with the fleet's target
proportion ``theta``: the ``p``-limit is the ``p`` quantile of ``Binomial(n, theta) / n``,
interpolated between the integers (his section 4.1) so the limits form a smooth funnel:
with ``r`` the smallest count whose CDF reaches ``p``,

    limit = (r - a) / n,    a = (F(r) - p) / (F(r) - F(r - 1)).

Limits at ``p = 0.025 / 0.975`` and ``0.001 / 0.999`` are the usual "2 SD" and "3 SD"
funnels. Sites are judged one at a time against a target treated as known; with many
sites, use the 3 SD funnel or adjust (see :mod:`detectors.statistics.holm_bonferroni`).
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import numpy.typing as npt
from scipy.stats import binom

from detectors.base import check_finite_array, check_integer, check_probability

__all__ = ["funnel_plot_limits", "site_funnel_position"]

Position = Literal["below", "inside", "above"]


def funnel_plot_limits(
    target: float, n: npt.ArrayLike, coverage: float = 0.998
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """Exact binomial funnel limits (lower, upper) for proportions on ``n`` cases.

    Parameters
    ----------
    target
        The fleet's proportion (e.g. its pooled sensitivity), in (0, 1).
    n
        Case counts at which to draw the funnel (any shape).
    coverage
        Central probability between the limits: 0.95 ("2 SD") or 0.998 ("3 SD").

    Examples
    --------
    Fleet sensitivity 0.87; 95 % and 99.8 % limits for a site with 120 referable cases:

    >>> [round(float(v[0]), 4) for v in funnel_plot_limits(0.87, [120], coverage=0.95)]
    [0.8026, 0.9232]
    >>> [round(float(v[0]), 4) for v in funnel_plot_limits(0.87, [120], coverage=0.998)]
    [0.7625, 0.9508]
    """
    target = check_probability("target", target)
    coverage = check_probability("coverage", coverage)
    cases = check_finite_array("n", n)
    if (cases < 1).any() or not np.allclose(cases, np.round(cases)):
        raise ValueError("n must be positive integers")
    tail = (1.0 - coverage) / 2.0
    return _limit(target, cases, tail), _limit(target, cases, 1.0 - tail)


def _limit(target: float, n: npt.NDArray[np.float64], p: float) -> npt.NDArray[np.float64]:
    r = binom.ppf(p, n, target)
    at_r = binom.cdf(r, n, target)
    below_r = binom.cdf(r - 1, n, target)
    with np.errstate(divide="ignore", invalid="ignore"):
        a = np.where(at_r > below_r, (at_r - p) / (at_r - below_r), 0.0)
    limit: npt.NDArray[np.float64] = np.clip((r - a) / n, 0.0, 1.0)
    return limit


def site_funnel_position(
    successes: int, n: int, target: float, coverage: float = 0.998
) -> Position:
    """Whether a site's observed proportion falls below, inside or above the funnel.

    >>> site_funnel_position(88, 120, target=0.87)
    'below'
    """
    successes = check_integer("successes", successes)
    n = check_integer("n", n, minimum=1)
    if successes > n:
        raise ValueError(f"need 0 <= successes <= n, got {successes}, {n}")
    lower, upper = funnel_plot_limits(target, [n], coverage)
    proportion = successes / n
    if proportion < lower[0]:
        return "below"
    if proportion > upper[0]:
        return "above"
    return "inside"
