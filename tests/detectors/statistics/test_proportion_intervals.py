"""Fixed-sample intervals for reports, against statsmodels and against their definitions."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import binom

from detectors.statistics import clopper_pearson_interval, wilson_interval

counts = st.integers(min_value=1, max_value=5000).flatmap(
    lambda n: st.tuples(st.integers(min_value=0, max_value=n), st.just(n))
)
alphas = st.sampled_from([0.01, 0.05, 0.1, 0.2])


@settings(deadline=None)
@given(counts, alphas)
def test_wilson_matches_statsmodels(count: tuple[int, int], alpha: float) -> None:
    proportion = pytest.importorskip("statsmodels.stats.proportion")
    successes, n = count
    expected = proportion.proportion_confint(successes, n, alpha=alpha, method="wilson")
    assert wilson_interval(successes, n, alpha) == pytest.approx(expected, abs=1e-12)


@settings(deadline=None)
@given(counts, alphas)
def test_clopper_pearson_matches_statsmodels(count: tuple[int, int], alpha: float) -> None:
    proportion = pytest.importorskip("statsmodels.stats.proportion")
    successes, n = count
    expected = proportion.proportion_confint(successes, n, alpha=alpha, method="beta")
    assert clopper_pearson_interval(successes, n, alpha) == pytest.approx(expected, abs=1e-10)


@given(counts, alphas)
def test_clopper_pearson_bounds_solve_the_binomial_tail_equations(
    count: tuple[int, int], alpha: float
) -> None:
    successes, n = count
    lower, upper = clopper_pearson_interval(successes, n, alpha)
    if successes > 0:
        assert binom.sf(successes - 1, n, lower) == pytest.approx(alpha / 2, rel=1e-6)
    if successes < n:
        assert binom.cdf(successes, n, upper) == pytest.approx(alpha / 2, rel=1e-6)


@pytest.mark.parametrize("p", [0.05, 0.128, 0.5, 0.907])
def test_clopper_pearson_coverage_is_at_least_nominal(p: float) -> None:
    n, alpha = 120, 0.05
    covered = sum(
        binom.pmf(k, n, p)
        for k in range(n + 1)
        if clopper_pearson_interval(k, n, alpha)[0] <= p <= clopper_pearson_interval(k, n, alpha)[1]
    )
    assert covered >= 1 - alpha


@pytest.mark.parametrize("bad", [(-1, 10), (11, 10), (0, 0)])
def test_rejects_impossible_counts(bad: tuple[int, int]) -> None:
    with pytest.raises(ValueError):
        wilson_interval(*bad)
    with pytest.raises(ValueError):
        clopper_pearson_interval(*bad)


def test_numpy_counts_give_the_same_interval_as_python_ints() -> None:
    for interval in (wilson_interval, clopper_pearson_interval):
        expected = interval(157, 180, 0.05)
        assert interval(np.int64(157), np.int32(180), np.float64(0.05)) == expected
