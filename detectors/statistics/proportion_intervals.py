"""Fixed-sample confidence intervals for a proportion, for reports.

These are valid for a sample size fixed in advance and looked at once. Monitoring a
stream and looking after every case needs the anytime-valid
:class:`detectors.beta_binomial_confidence_sequence.BetaBinomialConfidenceSequence`.
"""

from __future__ import annotations

import math

from scipy.special import betaincinv, ndtri

from detectors.base import check_integer, check_probability

__all__ = ["clopper_pearson_interval", "wilson_interval"]


def _check(successes: int, n: int, alpha: float) -> tuple[int, int, float]:
    """``(successes, n, alpha)`` as Python numbers (numpy integers accepted), or ValueError."""
    successes = check_integer("successes", successes)
    n = check_integer("n", n, minimum=1)
    if successes > n:
        raise ValueError(f"need 0 <= successes <= n, got {successes}, {n}")
    return successes, n, check_probability("alpha", alpha)


def wilson_interval(successes: int, n: int, alpha: float = 0.05) -> tuple[float, float]:
    """Wilson score interval (Wilson 1927) with two-sided coverage ``1 - alpha``.

    >>> [round(v, 4) for v in wilson_interval(87, 100)]
    [0.7902, 0.9224]
    """
    successes, n, alpha = _check(successes, n, alpha)
    z = float(ndtri(1.0 - alpha / 2.0))
    p_hat = successes / n
    denominator = 1.0 + z * z / n
    centre = (p_hat + z * z / (2.0 * n)) / denominator
    half = z * math.sqrt(p_hat * (1.0 - p_hat) / n + z * z / (4.0 * n * n)) / denominator
    return max(0.0, centre - half), min(1.0, centre + half)


def clopper_pearson_interval(successes: int, n: int, alpha: float = 0.05) -> tuple[float, float]:
    """Clopper-Pearson "exact" interval: coverage at least ``1 - alpha`` for every proportion.

    >>> [round(v, 4) for v in clopper_pearson_interval(87, 100)]
    [0.788, 0.9289]
    """
    successes, n, alpha = _check(successes, n, alpha)
    lower = 0.0 if successes == 0 else float(betaincinv(successes, n - successes + 1, alpha / 2))
    upper = (
        1.0 if successes == n else float(betaincinv(successes + 1, n - successes, 1 - alpha / 2))
    )
    return lower, upper
