"""Label-free drift as batch statistics (item 6): two-sample KS, PSI, chi-square and Holm's
adjustment against scipy and statsmodels (the windowed detectors built on them are tested in
tests/detectors/test_label_free_drift.py)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import chi2_contingency, entropy, ks_2samp

from detectors.statistics import (
    binned_ks_statistic,
    chi_square_drift,
    holm_adjusted_p_values,
    ks_critical_value,
    ks_p_value,
    ks_two_sample,
    population_stability_index,
    psi_p_value,
)

samples = st.lists(
    st.floats(min_value=-1e6, max_value=1e6, allow_nan=False), min_size=1, max_size=80
)


@pytest.mark.filterwarnings("ignore:divide by zero:RuntimeWarning")  # inside scipy's kstwo
@settings(deadline=None)
@given(samples, samples)
def test_ks_statistic_matches_scipy_ks_2samp(reference: list[float], recent: list[float]) -> None:
    assert ks_two_sample(reference, recent).statistic == pytest.approx(
        ks_2samp(reference, recent, method="asymp").statistic, abs=1e-12
    )


@pytest.mark.parametrize(("n", "m", "shift"), [(2000, 500, 0.1), (300, 300, 0.3), (5000, 200, 0)])
def test_ks_p_value_matches_scipy_asymptotic(n: int, m: int, shift: float) -> None:
    rng = np.random.default_rng(n + m)
    reference, recent = rng.normal(0, 1, n), rng.normal(shift, 1, m)
    expected = ks_2samp(reference, recent, method="asymp").pvalue
    assert ks_two_sample(reference, recent).p_value == pytest.approx(expected, rel=1e-9)


def test_ks_critical_value_is_where_the_p_value_equals_alpha() -> None:
    for alpha in (0.001, 0.01, 0.05, 0.2):
        critical = ks_critical_value(alpha, 4000, 250)
        assert ks_p_value(critical, 4000, 250) == pytest.approx(alpha, rel=1e-4)


def test_binned_ks_equals_scipy_on_values_discretised_to_the_bins() -> None:
    rng = np.random.default_rng(3)
    reference, recent = rng.integers(0, 12, 3000), rng.integers(1, 12, 400)
    counts = [np.bincount(v, minlength=12) for v in (reference, recent)]
    assert binned_ks_statistic(*counts) == pytest.approx(ks_2samp(reference, recent).statistic)


def test_psi_is_the_symmetrised_kullback_leibler_divergence() -> None:
    reference, recent = np.array([120, 300, 0, 80]), np.array([10, 50, 7, 33])
    q, r = (reference + 0.5) / (reference + 0.5).sum(), (recent + 0.5) / (recent + 0.5).sum()
    expected = entropy(r, q) + entropy(q, r)
    assert population_stability_index(reference, recent) == pytest.approx(expected, rel=1e-12)


def test_psi_p_value_is_calibrated_under_no_drift() -> None:
    rng = np.random.default_rng(4)
    proportions = rng.dirichlet(np.full(10, 5.0))
    rejected = 0
    for _ in range(2000):
        reference, recent = rng.multinomial(5000, proportions), rng.multinomial(1000, proportions)
        psi = population_stability_index(reference, recent)
        rejected += psi_p_value(psi, 5000, 1000, 10) < 0.05
    assert 0.035 <= rejected / 2000 <= 0.065


def test_chi_square_drift_matches_scipy_chi2_contingency() -> None:
    reference = {"GE": 412, "Siemens": 377, "Philips": 150, "Canon": 61}
    recent = {"GE": 30, "Siemens": 52, "Philips": 11, "Canon": 7}
    table = np.array(
        [[reference[k] for k in sorted(reference)], [recent[k] for k in sorted(reference)]]
    )
    statistic, p_value, dof, _ = chi2_contingency(table, correction=False)
    drift = chi_square_drift(reference, recent)
    assert (drift.statistic, drift.p_value, drift.dof) == pytest.approx((statistic, p_value, dof))


def test_a_scanner_model_never_seen_in_the_reference_is_a_finding_not_a_crash() -> None:
    drift = chi_square_drift({"Revolution CT": 800, "SOMATOM Force": 200}, {"uCT 960+": 3})
    assert drift.new_categories == ("uCT 960+",)
    assert drift.vanished_categories == ("Revolution CT", "SOMATOM Force")
    assert np.isfinite(drift.statistic) and np.isfinite(drift.psi)


def test_a_single_category_on_both_sides_has_no_drift() -> None:
    drift = chi_square_drift({"5 mm": 100}, {"5 mm": 7})
    assert (drift.dof, drift.p_value, drift.new_categories) == (0, 1.0, ())


@settings(deadline=None, max_examples=15)  # multipletests costs ~50 ms a call
@given(st.lists(st.floats(min_value=0, max_value=1), min_size=1, max_size=30))
def test_holm_matches_statsmodels_multipletests(p_values: list[float]) -> None:
    multitest = pytest.importorskip("statsmodels.stats.multitest")
    _, expected, _, _ = multitest.multipletests(p_values, method="holm")
    assert holm_adjusted_p_values(p_values) == pytest.approx(expected, abs=1e-12)


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_binned_ks_refuses_counts_that_are_not_finite_naming_them(bad: float) -> None:
    with pytest.raises(ValueError, match="reference_counts"):
        binned_ks_statistic([1, bad, 2], [1, 2, 3])
    with pytest.raises(ValueError, match="recent_counts"):
        binned_ks_statistic([1, 2, 3], [1, bad, 2])


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -0.1])
def test_psi_p_value_refuses_a_psi_that_is_not_a_finite_divergence(bad: float) -> None:
    with pytest.raises(ValueError, match="psi"):
        psi_p_value(bad, 5000, 500, 10)
