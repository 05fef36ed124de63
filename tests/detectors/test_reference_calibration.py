"""Label-free drift tests valid with the reference actually used (issue 16, item 4)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
from scipy.stats import beta

from detectors import (
    Detector,
    StateError,
    WindowedChiSquareDrift,
    WindowedKSDrift,
    reference_calibration,
)
from detectors.reference_calibration import (
    chi_square_critical_value,
    chi_square_statistics,
    ks_critical_distance,
    ks_distances,
    multinomial_draws,
    reference_cap,
    sparse_pooling,
)

sys.path.insert(0, str(Path(__file__).parents[2] / "bench"))
import bench_label_free_arl0 as bench  # noqa: E402 - bench/ is not a package

EDGES = [i / 10 for i in range(1, 10)]
BETA_2_5 = np.diff([0.0, *beta.cdf(EDGES, 2, 5), 1.0])
WINDOW = 250


def _binomial_band(alpha: float, trials: int) -> float:
    """Three binomial standard errors of a rate estimated from ``trials`` windows."""
    return 3.0 * float(np.sqrt(alpha * (1 - alpha) / trials))


def test_multinomial_draws_have_the_multinomial_mean_and_covariance() -> None:
    p = np.array([0.5, 0.3, 0.15, 0.05])
    draws = multinomial_draws(np.random.default_rng(0), 200, p, 50_000)
    assert (draws.sum(axis=1) == 200).all()
    assert draws.mean(axis=0) == pytest.approx(200 * p, rel=0.01)
    expected = 200 * (np.diag(p) - np.outer(p, p))
    assert np.cov(draws.T) == pytest.approx(expected, abs=0.6)


def test_ks_critical_distance_rejects_at_alpha_given_a_large_reference() -> None:
    """With a reference error negligible against the window's, the rate given the reference
    is the bootstrap's: checked on windows drawn independently of it."""
    rng = np.random.default_rng(1)
    reference = multinomial_draws(rng, 200_000, BETA_2_5, 1)[0]
    critical = ks_critical_distance(reference.tolist(), WINDOW, 0.05)
    windows = multinomial_draws(np.random.default_rng(2), WINDOW, BETA_2_5, 40_000)
    rate = float((ks_distances(reference, windows) >= critical).mean())
    assert abs(rate - 0.05) <= _binomial_band(0.05, 40_000) + 0.1 * 0.05


def test_ks_critical_distance_rejects_at_alpha_over_the_references_a_fleet_draws() -> None:
    """A 500-case reference: averaged over references (its error included), the per-window
    rate is alpha_w, where the asymptotic KS value gave a fifth of it."""
    rng = np.random.default_rng(3)
    windows = multinomial_draws(rng, WINDOW, BETA_2_5, 4_000)
    rates = []
    for _ in range(120):
        reference = multinomial_draws(rng, 500, BETA_2_5, 1)[0]
        critical = ks_critical_distance(reference.tolist(), WINDOW, 0.05)
        rates.append(float((ks_distances(reference, windows) >= critical).mean()))
    standard_error = float(np.std(rates) / np.sqrt(len(rates)))
    assert abs(np.mean(rates) - 0.05) <= 3 * standard_error + 0.1 * 0.05


def test_chi_square_critical_value_rejects_at_alpha_over_the_references_a_fleet_draws() -> None:
    p = np.array([0.45, 0.3, 0.15, 0.07, 0.03])
    alpha = WINDOW / 20_000
    rng = np.random.default_rng(4)
    windows = multinomial_draws(rng, WINDOW, p, 8_000)
    rates = []
    for _ in range(80):
        reference = multinomial_draws(rng, 2_000, p, 1)[0]
        critical = chi_square_critical_value(reference.tolist(), WINDOW, alpha)
        rates.append(float((chi_square_statistics(reference, windows) >= critical).mean()))
    standard_error = float(np.std(rates) / np.sqrt(len(rates)))
    assert abs(np.mean(rates) - alpha) <= 3 * standard_error + 0.15 * alpha


def test_critical_values_are_deterministic_given_the_reference() -> None:
    """A stream restored in another process compares with the same value."""
    counts = [40, 110, 120, 90, 60, 40, 20, 12, 5, 2, 1]
    first = ks_critical_distance(counts, WINDOW, 0.05)
    reference_calibration._bootstrap_critical.cache_clear()
    assert ks_critical_distance(counts, WINDOW, 0.05) == first


def test_the_threshold_reported_is_the_one_the_last_window_was_tested_against() -> None:
    """After a window grows the reference, its distance is reported beside the value it was
    tested against until the next window closes, tested against the grown reference's (the
    grown reference's lower value beside a distance that passed would seem to fire)."""
    rng = np.random.default_rng(13)
    drift = _pipeline_ks(rng)
    first = drift.threshold
    results = [drift.update(float(s)) for s in rng.beta(2, 5, WINDOW)]
    assert {r.threshold for r in results} == {first}
    assert sum(drift.reference) == 3 * WINDOW and drift.threshold != first
    grown = drift.threshold
    results = [drift.update(float(s)) for s in rng.beta(2, 5, WINDOW)]
    assert {r.threshold for r in results[:-1]} == {first}
    assert results[-1].threshold == grown
    assert results[-1].fired == (results[-1].statistic >= grown)
    chi = WindowedChiSquareDrift(["a", "b"], [300, 200], 100, 5_000, reference_cap=2_000)
    before = chi.threshold
    for _ in range(5):  # to twice its size: calibrated again
        chi.update_window([60, 40, 0])
    assert chi.update(0).threshold == before != chi.threshold


def test_a_growing_reference_is_calibrated_when_it_doubles_and_at_its_final_size(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Five bootstraps instead of nineteen from 2 windows to 20; the sizes between carry the
    last one by the two-sample scale, and the final size's value is its own calibration."""
    calibrated: list[int] = []

    def counting(counts: list[int], window: int, alpha: float) -> float:
        calibrated.append(sum(counts))
        return ks_critical_distance(counts, window, alpha)

    monkeypatch.setattr("detectors.windowed_ks_drift.ks_critical_distance", counting)
    rng = np.random.default_rng(14)
    drift = _pipeline_ks(rng)
    thresholds = []
    for score in rng.beta(2, 5, 20 * WINDOW):
        drift.update(float(score))
        thresholds.append(drift.threshold)
    assert sum(drift.reference) == reference_cap(WINDOW)  # every window passed
    assert calibrated == [500, 1000, 2000, 4000, 5000]
    alpha = WINDOW / drift.arl0
    assert drift.threshold == ks_critical_distance(drift.reference, WINDOW, alpha)
    carried = thresholds[WINDOW]  # at 750 cases, from the 500-case calibration
    assert carried == reference_calibration.scaled_ks_critical(thresholds[0], 500, 750, WINDOW)
    assert carried < thresholds[0]


def test_sparse_categories_share_a_column_and_common_ones_keep_theirs() -> None:
    assert sparse_pooling([400, 300, 200, 100], WINDOW) == [0, 1, 2, 3]
    # expected in a window 150, 75, 15, 6.25 and 3.75: the sparse one joins the smallest
    assert sparse_pooling([600, 300, 60, 25, 15], WINDOW) == [0, 1, 2, 3, 3]


def _pipeline_ks(rng: np.random.Generator) -> WindowedKSDrift:
    return WindowedKSDrift.from_reference(
        rng.beta(2, 5, 500), EDGES, window=WINDOW, arl0=5_000, reference_cap=reference_cap(WINDOW)
    )


def test_the_reference_grows_from_passing_windows_to_its_cap() -> None:
    rng = np.random.default_rng(5)
    drift = _pipeline_ks(rng)
    first = drift.threshold
    for score in rng.beta(2, 5, 30 * WINDOW):
        drift.update(float(score))
    assert sum(drift.reference) == reference_cap(WINDOW)
    assert drift.threshold < first  # a longer reference: less of its error to allow for


def test_a_window_that_fires_does_not_join_the_reference() -> None:
    drift = WindowedKSDrift(EDGES, [50] * 10, window=100, arl0=1_000, reference_cap=2_000)
    result = drift.update_window([100] + [0] * 9)
    assert result.fired
    assert drift.reference == [50] * 10


def test_a_window_with_an_unseen_category_does_not_join_the_reference() -> None:
    drift = WindowedChiSquareDrift(["a", "b"], [300, 200], 100, 5_000, reference_cap=2_000)
    drift.update_window([60, 39, 1])
    assert drift.reference == [300, 200]
    drift.update_window([60, 40, 0])
    assert drift.reference == [360, 240]


def test_a_whole_window_gives_the_same_result_as_its_cases_one_by_one() -> None:
    rng = np.random.default_rng(6)
    by_case = _pipeline_ks(rng)
    by_window = Detector.from_state(by_case.to_state())
    scores = rng.beta(2.3, 5, WINDOW)
    last = [by_case.update(float(s)) for s in scores][-1]
    counts = np.bincount(np.searchsorted(EDGES, scores, side="right"), minlength=10)
    assert isinstance(by_window, WindowedKSDrift)
    assert by_window.update_window(counts.tolist()) == last
    assert by_window.to_state() == by_case.to_state()


def test_a_state_of_the_previous_release_loads_with_its_reference_as_given() -> None:
    drift = WindowedKSDrift(EDGES, [50] * 10, window=100, arl0=1_000, reference_cap=2_000)
    state = drift.to_state()
    state["state"] = {"counts": [1] + [0] * 9, "n_cases": 1, "n_events": 0, "last": 0.0}
    restored = Detector.from_state(state)
    assert isinstance(restored, WindowedKSDrift)
    assert restored.reference == [50] * 10
    chi = WindowedChiSquareDrift(["a", "b"], [300, 200], 100, 5_000, reference_cap=2_000)
    chi_state = chi.to_state()
    chi_state["state"] = {"counts": [1, 0, 0], "n_cases": 1, "last": [0.0, 1]}
    assert Detector.from_state(chi_state).to_state()["state"]["grown"] == [0, 0]


def test_a_grown_reference_round_trips_mid_growth() -> None:
    rng = np.random.default_rng(7)
    drift = _pipeline_ks(rng)
    for score in rng.beta(2, 5, 5 * WINDOW + 17):
        drift.update(float(score))
    restored = Detector.from_state(json.loads(json.dumps(drift.to_state())))
    assert isinstance(restored, WindowedKSDrift)
    assert restored.reference == drift.reference
    assert restored.threshold == drift.threshold
    later = rng.beta(2, 5, 3 * WINDOW)
    assert [restored.update(float(s)) for s in later] == [drift.update(float(s)) for s in later]


def _chi_square(reference: list[int], cap: int = 5_000) -> WindowedChiSquareDrift:
    names = [str(i) for i in range(len(reference))]
    return WindowedChiSquareDrift(names, reference, WINDOW, 20_000, reference_cap=cap)


def _calibrations(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The reference sizes the chi-square tests calibrate for from now on, in order."""
    sizes: list[int] = []

    def counting(counts: list[int], window: int, alpha: float) -> float:
        sizes.append(sum(counts))
        return chi_square_critical_value(counts, window, alpha)

    monkeypatch.setattr("detectors.windowed_chi_square_drift.chi_square_critical_value", counting)
    return sizes


def _grown(chi: WindowedChiSquareDrift, windows: int, window: list[int]) -> None:
    for _ in range(windows):
        assert not chi.update_window(window).fired


def test_a_growing_chi_square_reference_is_calibrated_when_it_doubles_and_at_its_final_size(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Five bootstraps instead of nineteen (each 5-20 ms here, four tests a CT stream: 74 µs
    a prediction while they grew, 28 now); the value carries unscaled between them."""
    calibrated = _calibrations(monkeypatch)
    chi = _chi_square([300, 120, 80])
    thresholds = []
    for _ in range(19):
        thresholds.append(chi.threshold)
        _grown(chi, 1, [150, 60, 40, 0])
    assert sum(chi.reference) == 5_000
    thresholds.append(chi.threshold)
    assert calibrated == [500, 1_000, 2_000, 4_000, 5_000]
    assert len(set(thresholds[:2])) == 1 and thresholds[1] != thresholds[2]  # 500, 750 | 1,000
    assert chi.threshold == chi_square_critical_value([3_000, 1_200, 800], WINDOW, 250 / 20_000)


def test_a_change_of_pooling_is_calibrated_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """A category expected 4.6 times in a window shares its column; grown to 5.1, it has its
    own, and the statistic another number of columns."""
    calibrated = _calibrations(monkeypatch)
    chi = WindowedChiSquareDrift(["a", "b", "c"], [300, 190, 10], 100, 5_000, reference_cap=5_000)
    assert chi.threshold > 0  # read: calibrated if due
    _grown(chi, 3, [60, 31, 9, 0])
    assert chi.columns == [0, 1, 1, 2] and calibrated == [500]
    _grown(chi, 1, [60, 31, 9, 0])
    assert chi.columns == [0, 1, 2, 3]
    assert chi.threshold > 0  # read: calibrated if due
    assert calibrated == [500, 900]


def test_a_column_expected_fewer_than_five_times_is_calibrated_at_every_size(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Two categories, one rare: nothing to pool it with, and its few cases' lattice moves
    with each case the reference gains (carried, rates reached 4 times alpha)."""
    calibrated = _calibrations(monkeypatch)
    chi = _chi_square([498, 2])
    for _ in range(5):
        assert chi.threshold > 0  # read: calibrated if due
        _grown(chi, 1, [249, 1, 0])
    assert calibrated == [500, 750, 1_000, 1_250, 1_500]


def test_a_carried_chi_square_value_keeps_the_rate_of_a_fresh_calibration() -> None:
    """The bench at a small scale: the rate of the value carried between calibrations, by an
    independent bootstrap at each size, against a fresh calibration's."""
    carry = bench.chi_square_carry(streams=6, draws=10_000)
    carried = carry["carried_rate_mean_p10_p90_min_max_over_alpha"]
    fresh = carry["fresh_rate_mean_p10_p90_min_max_over_alpha"]
    assert carry["sizes_carried"] >= 50
    assert 0.85 <= carried[0] <= 1.2 and abs(carried[0] - fresh[0]) <= 0.1
    assert carried[4] <= 1.6
    assert carry["calibrations_per_stream"] <= 8


def test_a_restored_chi_square_test_compares_with_its_carried_value_without_a_bootstrap() -> None:
    """Mid-growth (carried from 1,000 cases at 1,500, from 4,000 at 4,750) and past it: the
    state keeps the last calibration, so a restart costs no bootstrap (5-20 ms each, of
    every stream's tests, before) and the restored test compares with what the
    uninterrupted one does."""
    for windows in (4, 17, 25):
        chi = _chi_square([300, 120, 80])
        _grown(chi, windows, [150, 60, 40, 0])
        state = json.loads(json.dumps(chi.to_state()))
        assert isinstance(state["state"]["calibrated"], int)  # its value: "last_critical"
        reference_calibration._bootstrap_critical.cache_clear()
        restored = Detector.from_state(state)
        assert isinstance(restored, WindowedChiSquareDrift)
        window = [140, 70, 40, 0]
        assert restored.update_window(window) == chi.update_window(window)
        assert reference_calibration._bootstrap_critical.cache_info().misses == 0
        assert restored.to_state() == chi.to_state()


def test_a_calibration_read_ahead_of_its_window_round_trips() -> None:
    """``threshold`` read once the reference has doubled calibrates before the next window
    closes: the state keeps that value apart from the last window's."""
    chi = _chi_square([300, 120, 80])
    _grown(chi, 2, [150, 60, 40, 0])
    ahead = chi.threshold
    state = json.loads(json.dumps(chi.to_state()))
    assert state["state"]["calibrated"] == [ahead, 1_000] and ahead != chi.last_reported[1]
    reference_calibration._bootstrap_critical.cache_clear()
    restored = Detector.from_state(state)
    assert restored.threshold == ahead
    assert reference_calibration._bootstrap_critical.cache_info().misses == 0


def test_a_chi_square_state_of_the_previous_release_calibrates_at_first_use() -> None:
    """No calibration kept, and the window's cases as "n_cases" too: one bootstrap for the
    reference as grown, as before."""
    chi = _chi_square([300, 120, 80])
    _grown(chi, 18, [150, 60, 40, 0])
    chi.update(0)
    state = chi.to_state()
    del state["state"]["calibrated"]
    state["state"]["n_cases"] = 1
    reference_calibration._bootstrap_critical.cache_clear()
    restored = Detector.from_state(state)
    assert restored.threshold == chi.threshold
    assert reference_calibration._bootstrap_critical.cache_info().misses == 1
    assert restored.to_state() == chi.to_state()


@pytest.mark.parametrize(
    "calibrated", [499, 1_251, True, 1_000.0, [0.0, 1_000], [float("inf"), 1_000], [9.1]]
)
def test_a_chi_square_state_with_an_impossible_calibration_is_refused(calibrated: object) -> None:
    chi = _chi_square([300, 120, 80])
    _grown(chi, 3, [150, 60, 40, 0])
    state = chi.to_state()
    state["state"]["calibrated"] = calibrated
    with pytest.raises(StateError):
        Detector.from_state(state)


@pytest.mark.parametrize("grown", [[1] * 10, [2_000] * 10, [-250] + [0] * 9])
def test_a_grown_reference_beyond_the_cap_or_not_whole_windows_is_refused(grown: list[int]) -> None:
    drift = WindowedKSDrift(EDGES, [50] * 10, window=250, arl0=5_000, reference_cap=5_000)
    state = drift.to_state()
    state["state"]["grown"] = grown
    with pytest.raises(StateError):
        Detector.from_state(state)


def test_reset_returns_to_the_initial_reference() -> None:
    rng = np.random.default_rng(8)
    drift = _pipeline_ks(rng)
    initial = drift.reference
    for score in rng.beta(2, 5, 4 * WINDOW):
        drift.update(float(score))
    drift.reset()
    assert drift.reference == initial


def test_a_real_shift_is_detected_within_a_few_windows() -> None:
    """Beta(2, 5) to Beta(2.6, 5) after 2,000 in-control scores, as the pipeline runs it."""
    delays = []
    for seed in range(10):
        rng = np.random.default_rng(100 + seed)
        drift = _pipeline_ks(rng)
        for score in rng.beta(2, 5, 2_000):
            drift.update(float(score))
        fired = [drift.update(float(s)).fired for s in rng.beta(2.6, 5, 10 * WINDOW)]
        delays.append(fired.index(True) // WINDOW if any(fired) else 99)
    assert max(delays) <= 4
    assert np.median(delays) <= 1


def test_score_drift_fleet_arl0_is_nominal_on_average_and_per_stream() -> None:
    """The bench at a small scale (conditional ARL0, no Poisson noise): the fleet's rate
    within 20 % of nominal, the 10th-90th percentile of the streams' within 0.5x-2x."""
    runs = bench.score_fleet(streams=24, n_windows=120, release="after", seed=11)
    result = bench.summary(runs, bench.POLICY.arl0_cases)
    assert 0.8 <= result["fleet_conditional_arl0_over_nominal"] <= 1.2
    p10, _, p90 = result["per_stream_conditional_arl0_p10_p50_p90_over_nominal"]
    assert 0.5 <= p10 and p90 <= 2.0


def test_score_drift_of_the_previous_release_was_far_from_nominal() -> None:
    runs = bench.score_fleet(streams=24, n_windows=120, release="before", seed=11)
    result = bench.summary(runs, bench.POLICY.arl0_cases)
    assert result["fleet_conditional_arl0_over_nominal"] > 2.0


def test_acquisition_drift_fleet_arl0_is_nominal_on_average_and_per_stream() -> None:
    """The chi-square test alone: windows with an unseen category fire by the unseen
    rule, which has no level (measured apart in the bench)."""
    runs = bench.acquisition_fleet(streams=24, n_windows=120, release="after", seed=12)
    result = bench.summary(runs, bench.POLICY.arl0_cases * 4, unseen=True)
    assert 0.8 <= result["fleet_conditional_arl0_over_nominal"] <= 1.2
    p10, _, p90 = result["per_stream_conditional_arl0_p10_p50_p90_over_nominal"]
    assert 0.5 <= p10 and p90 <= 2.0
