"""The test-based interval of I² (Higgins & Thompson 2002), against R's ``meta`` package
(``isquared`` and ``calcH`` in ``R/meta-het.R``, transcribed below line by line), and the
point estimate statsmodels reports lying inside it."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from scipy.stats import norm
from statsmodels.stats.meta_analysis import combine_effects  # type: ignore[import-untyped]

from detectors.statistics import dersimonian_laird, i2_interval


def meta_isquared(q: float, df: int, level: float = 0.95) -> tuple[float, float]:
    """R meta's ``isquared(Q, df, level)``: ``calcH`` then ``(x^2 - 1) / x^2``."""
    k = df + 1
    h = math.sqrt(q / (k - 1))
    if q > k:
        selog_h = 0.5 * (math.log(q) - math.log(k - 1)) / (math.sqrt(2 * q) - math.sqrt(2 * k - 3))
    else:
        selog_h = math.sqrt(1 / (2 * (k - 2)) * (1 - 1 / (3 * (k - 2) ** 2)))
    z = norm.ppf(1 - (1 - level) / 2)
    centre = math.log(max(h, 1.0))
    lower, upper = (
        max(math.exp(centre - z * selog_h), 1.0),
        max(math.exp(centre + z * selog_h), 1.0),
    )
    return (lower**2 - 1) / lower**2, (upper**2 - 1) / upper**2


@pytest.mark.parametrize("sites", [3, 4, 6, 10, 25])
@pytest.mark.parametrize("q", [0.0, 0.7, 2.0, 3.0, 5.9, 6.0, 6.5, 12.0, 40.0, 250.0])
def test_i2_interval_equals_r_meta_isquared(q: float, sites: int) -> None:
    assert i2_interval(q, sites) == pytest.approx(meta_isquared(q, sites - 1), abs=1e-12)


def test_i2_interval_at_90_percent_equals_r_meta_isquared() -> None:
    assert i2_interval(20.0, 6, alpha=0.10) == pytest.approx(
        meta_isquared(20.0, 5, level=0.90), abs=1e-12
    )


def test_two_sites_have_an_interval_only_when_q_exceeds_two() -> None:
    assert i2_interval(1.5, 2) is None
    assert i2_interval(9.0, 2) == pytest.approx(meta_isquared(9.0, 1), abs=1e-12)


def test_one_site_has_no_interval() -> None:
    assert i2_interval(0.0, 1) is None


def test_q_below_its_degrees_of_freedom_leaves_heterogeneity_not_excluded() -> None:
    lower, upper = i2_interval(1.0, 5)  # type: ignore[misc]
    assert lower == 0.0
    assert upper > 0.5


@pytest.mark.parametrize("q", [-1.0, math.nan, math.inf])
def test_an_impossible_q_is_refused(q: float) -> None:
    with pytest.raises(ValueError, match="q"):
        i2_interval(q, 5)


@given(
    effects=st.lists(st.floats(-3.0, 3.0), min_size=3, max_size=12),
    seed=st.integers(0, 2**16),
)
def test_the_interval_holds_the_i2_of_statsmodels_q(effects: list[float], seed: int) -> None:
    variances = np.random.default_rng(seed).uniform(0.01, 0.5, len(effects))
    q = max(0.0, float(combine_effects(np.array(effects), variances, method_re="dl").q))
    df = len(effects) - 1
    interval = i2_interval(q, len(effects))
    assert interval is not None
    lower, upper = interval
    estimate = max(0.0, (q - df) / q) if q > 0 else 0.0
    assert lower - 1e-12 <= estimate <= upper + 1e-12
    assert estimate == pytest.approx(dersimonian_laird(effects, variances).i2, abs=1e-9)
