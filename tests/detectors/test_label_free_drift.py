"""Label-free drift (item 6): the windowed KS and chi-square detectors against scipy, and their
false-alarm rates (the batch tests they build on are in
tests/detectors/statistics/test_two_sample_drift.py)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import chi2_contingency

from detectors import WindowedChiSquareDrift, WindowedKSDrift
from detectors.statistics import binned_ks_statistic

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
