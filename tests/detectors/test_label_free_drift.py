"""Label-free drift (item 6): KS, PSI, chi-square, windowed KS vs scipy and statsmodels."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import chi2_contingency, entropy, ks_2samp

from detectors import (
    WindowedChiSquareDrift,
    WindowedKSDrift,
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


EDGES = [0.1 * i for i in range(1, 10)]


def test_reference_histogram_matches_numpy_histogram() -> None:
    scores = np.random.default_rng(5).beta(2, 5, 3000)
    drift = WindowedKSDrift.from_reference(scores, EDGES, window=100, arl0=10_000)
    expected, _ = np.histogram(scores, bins=[-np.inf, *EDGES, np.inf])
    assert drift.reference_counts == expected.tolist()


def test_window_statistic_is_the_binned_ks_distance_of_the_window() -> None:
    rng = np.random.default_rng(6)
    drift = WindowedKSDrift.from_reference(rng.beta(2, 5, 3000), EDGES, window=100, arl0=10_000)
    window = rng.beta(3, 5, 100)
    results = [drift.update(float(v)) for v in window]
    counts, _ = np.histogram(window, bins=[-np.inf, *EDGES, np.inf])
    expected = binned_ks_statistic(drift.reference_counts, counts)
    assert results[-1].statistic == pytest.approx(expected)
    assert results[-1].fired == (expected >= drift.threshold)


def test_windowed_ks_false_alarms_per_window_stay_within_window_over_arl0() -> None:
    rng = np.random.default_rng(7)
    reference = np.random.default_rng(8).beta(2, 5, 100_000)
    drift = WindowedKSDrift.from_reference(reference, EDGES, window=100, arl0=1_000)
    fired = sum(drift.update(float(v)).fired for v in rng.beta(2, 5, 150_000))
    alpha_window, n_windows = 100 / 1_000, 1_500
    assert fired / n_windows <= alpha_window + 2.5 * np.sqrt(alpha_window * 0.9 / n_windows)


def test_values_in_bins_empty_in_the_reference_are_counted_as_events() -> None:
    drift = WindowedKSDrift([0.0, 1.0], [0, 50, 50], window=10, arl0=1_000)
    results = [drift.update(x) for x in (-3.0, 0.5, -1.0, 2.0)]
    assert [r.n_events for r in results] == [1, 1, 2, 2]


SCANNERS = {"Canon": 900, "GE": 1500, "Philips": 700, "Siemens": 1400}


def test_window_chi_square_matches_scipy_chi2_contingency() -> None:
    drift = WindowedChiSquareDrift.from_counts(SCANNERS, window=120, arl0=10_000)
    rng = np.random.default_rng(9)
    window = rng.choice(4, size=120, p=[0.1, 0.4, 0.2, 0.3])
    results = [drift.update(int(code)) for code in window]
    table = np.array([list(SCANNERS.values()), np.bincount(window, minlength=4)])
    statistic, _, _, _ = chi2_contingency(table, correction=False)
    assert results[-1].statistic == pytest.approx(statistic, abs=1e-6)
    assert results[-1].fired == (statistic >= drift.threshold)


def test_a_new_scanner_model_in_a_window_is_counted_and_reported() -> None:
    drift = WindowedChiSquareDrift.from_counts(SCANNERS, window=100, arl0=5_000)
    names = ["GE"] * 40 + ["Siemens"] * 35 + ["Canon"] * 20 + ["Philips"] * 3 + ["uCT 960+"] * 2
    results = [drift.update(drift.code(name)) for name in names]
    assert results[-1].n_events == 2
    assert results[-1].fired


def test_windowed_chi_square_false_alarms_per_window_stay_within_window_over_arl0() -> None:
    drift = WindowedChiSquareDrift(["a", "b", "c"], [50_000, 30_000, 20_000], 100, 1_000)
    codes = np.random.default_rng(10).choice(3, size=150_000, p=[0.5, 0.3, 0.2])
    fired = sum(drift.update(int(code)).fired for code in codes)
    alpha_window, n_windows = 100 / 1_000, 1_500
    assert fired / n_windows <= alpha_window + 2.5 * np.sqrt(alpha_window * 0.9 / n_windows)


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


def _share_fired_with_unseen(unseen_min: int, unseen_per_window: int) -> float:
    rng = np.random.default_rng(5)
    reference = {"A": 300, "B": 150, "C": 50}
    drift = WindowedChiSquareDrift.from_counts(
        reference, 250, 20_000, fire_on_unseen=True, unseen_min=unseen_min
    )
    fired = 0
    for _ in range(100):
        codes = list(rng.choice(3, size=250, p=[0.6, 0.3, 0.1]))
        codes[:unseen_per_window] = [drift.code("a model never seen")] * unseen_per_window
        fired += [drift.update(int(code)) for code in codes][-1].fired
    return fired / 100


def test_a_rare_category_missing_from_the_reference_does_not_fire_every_window() -> None:
    assert _share_fired_with_unseen(unseen_min=1, unseen_per_window=1) == 1.0
    assert _share_fired_with_unseen(unseen_min=5, unseen_per_window=2) < 0.05


def test_a_new_scanner_with_a_share_of_the_window_fires_at_once() -> None:
    assert _share_fired_with_unseen(unseen_min=5, unseen_per_window=5) == 1.0
