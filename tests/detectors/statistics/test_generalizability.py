"""Generalizability across sites (item 9): funnel limits vs scipy, DL vs statsmodels."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import binom, norm

from detectors.statistics import (
    dersimonian_laird,
    funnel_plot_limits,
    logit_proportion_effects,
    site_funnel_position,
)


@settings(deadline=None)
@given(
    st.floats(min_value=0.02, max_value=0.98),
    st.integers(min_value=1, max_value=5000),
    st.sampled_from([0.95, 0.998]),
)
def test_funnel_limits_lie_between_the_binomial_quantiles_that_bracket_them(
    target: float, n: int, coverage: float
) -> None:
    lower, upper = funnel_plot_limits(target, [n], coverage)
    for limit, p in ((lower[0], (1 - coverage) / 2), (upper[0], (1 + coverage) / 2)):
        r = binom.ppf(p, n, target)
        assert (r - 1) / n - 1e-12 <= limit <= r / n + 1e-12


def test_funnel_limits_approach_the_normal_approximation_for_large_sites() -> None:
    n = np.array([2_000, 10_000, 50_000])
    lower, upper = funnel_plot_limits(0.87, n, coverage=0.998)
    half = norm.isf(0.001) * np.sqrt(0.87 * 0.13 / n)
    # the gap is the binomial's skewness and discreteness, both O(1/n)
    assert np.all(np.abs(lower - (0.87 - half)) <= 2.5 / n)
    assert np.all(np.abs(upper - (0.87 + half)) <= 2.5 / n)


def test_funnel_narrows_as_sites_grow() -> None:
    lower, upper = funnel_plot_limits(0.907, np.arange(20, 2000, 10), coverage=0.95)
    width = upper - lower
    assert (np.diff(width) <= 1e-12).mean() > 0.95  # monotone up to the binomial's steps
    assert width[-1] < width[0] / 5


def test_sites_outside_the_three_sd_funnel_are_rare_when_none_differ() -> None:
    rng = np.random.default_rng(0)
    n = rng.integers(30, 1000, 4000)
    successes = rng.binomial(n, 0.87)
    outside = sum(
        site_funnel_position(int(x), int(m), 0.87) != "inside"
        for x, m in zip(successes, n, strict=True)
    )
    assert outside / 4000 <= 0.002 + 3 * np.sqrt(0.002 / 4000)


def _sites(seed: int, tau: float) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    n = rng.integers(40, 400, 12)
    logit = rng.normal(1.9, tau, 12)
    successes = rng.binomial(n, 1 / (1 + np.exp(-logit)))
    return logit_proportion_effects(successes, n)


@pytest.mark.parametrize(("seed", "tau"), [(1, 0.5), (2, 0.0), (3, 1.0)])
def test_dersimonian_laird_matches_statsmodels_combine_effects(seed: int, tau: float) -> None:
    meta = pytest.importorskip("statsmodels.stats.meta_analysis")
    effects, variances = _sites(seed, tau)
    expected = meta.combine_effects(effects, variances, method_re="chi2", use_t=False)
    result = dersimonian_laird(effects, variances)
    # statsmodels reports the untruncated moment estimate; DerSimonian-Laird truncate at 0
    assert result.tau2 == pytest.approx(max(0.0, expected.tau2), rel=1e-10, abs=1e-14)
    assert result.q == pytest.approx(expected.q, rel=1e-12)
    assert result.i2 == pytest.approx(max(0.0, expected.i2), rel=1e-10, abs=1e-14)
    if expected.tau2 >= 0:
        assert result.estimate == pytest.approx(expected.mean_effect_re, rel=1e-12)
        assert result.se == pytest.approx(expected.sd_eff_w_re, rel=1e-10)
    else:  # statsmodels weights by the negative tau2; truncated, pooling is fixed-effect
        assert result.estimate == pytest.approx(expected.mean_effect_fe, rel=1e-12)
        assert result.se == pytest.approx(expected.sd_eff_w_fe, rel=1e-10)
    assert result.fixed_estimate == pytest.approx(expected.mean_effect_fe, rel=1e-12)


def test_homogeneity_p_value_matches_statsmodels() -> None:
    meta = pytest.importorskip("statsmodels.stats.meta_analysis")
    effects, variances = _sites(4, 0.6)
    expected = meta.combine_effects(effects, variances, method_re="chi2").test_homogeneity()
    assert dersimonian_laird(effects, variances).q_p_value == pytest.approx(expected.pvalue)


def test_a_site_with_perfect_sensitivity_has_a_finite_effect() -> None:
    effects, variances = logit_proportion_effects([50, 40], [50, 45])
    assert np.isfinite(effects).all() and np.isfinite(variances).all()
