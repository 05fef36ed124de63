"""Calibration-in-the-large per window: the z of the textbook, its ARL0, and a real shift."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from scipy.stats import binom, norm

from detectors import Detector, WindowedCalibrationTest


def feed(test: WindowedCalibrationTest, labels: np.ndarray, scores: np.ndarray) -> list[float]:
    return [
        test.update(int(y), risk=float(p)).statistic for y, p in zip(labels, scores, strict=True)
    ]


def test_statistic_is_the_absolute_z_of_the_last_completed_window() -> None:
    rng = np.random.default_rng(0)
    scores = rng.beta(1.0, 4.0, 321)
    labels = rng.random(321) < scores
    statistics = feed(WindowedCalibrationTest(window=100), labels, scores)
    assert statistics[:99] == [0.0] * 99  # no window completed yet
    for end in (100, 200, 300):
        p, y = scores[end - 100 : end], labels[end - 100 : end]
        z = (y - p).sum() / math.sqrt((p * (1 - p)).sum())
        assert statistics[end - 1] == pytest.approx(abs(z), rel=1e-12)
        assert set(statistics[end - 1 : end + 99]) == {statistics[end - 1]}


def test_z_with_a_common_score_is_statsmodels_one_sample_proportion_z() -> None:
    proportion = pytest.importorskip("statsmodels.stats.proportion")
    rng = np.random.default_rng(1)
    labels = rng.random(400) < 0.23
    test = WindowedCalibrationTest(window=400, arl0=4000)
    feed(test, labels, np.full(400, 0.2))
    z, _ = proportion.proportions_ztest(int(labels.sum()), 400, value=0.2, prop_var=0.2)
    last = test.last_window()
    assert last is not None
    assert last.z == pytest.approx(z, rel=1e-12)


def test_last_window_reports_observed_and_expected_rates_and_signed_z() -> None:
    scores = np.array([0.1, 0.2, 0.3, 0.4])
    labels = np.array([0, 0, 1, 1])
    test = WindowedCalibrationTest(window=4, arl0=40)
    assert test.last_window() is None
    feed(test, labels, scores)
    last = test.last_window()
    assert last is not None
    assert (last.n, last.observed_rate) == (4, 0.5)
    assert last.expected_rate == pytest.approx(0.25)
    assert last.z == pytest.approx(1.0 / math.sqrt(0.09 + 0.16 + 0.21 + 0.24))


def test_threshold_is_the_two_sided_normal_critical_value_at_window_over_arl0() -> None:
    assert WindowedCalibrationTest(500, 5000).threshold == pytest.approx(norm.isf(0.05))


def test_counts_are_the_windows_cases_and_its_positive_labels() -> None:
    test = WindowedCalibrationTest(window=10)
    results = [test.update(y, risk=p) for y, p in [(1, 0.9), (0, 0.2), (1.0, 0.6)]]
    assert [(r.n_cases, r.n_events) for r in results] == [(1, 1), (2, 1), (3, 2)]


def test_a_score_of_exactly_zero_or_one_is_taken_without_a_crash() -> None:
    test = WindowedCalibrationTest(window=10)
    assert test.update(1, risk=0.0).statistic == 0.0


def test_running_state_stays_within_200_json_bytes() -> None:
    rng = np.random.default_rng(2)
    scores = rng.beta(1.0, 4.0, 1499)
    test = WindowedCalibrationTest(window=500)
    sizes = []
    for y, p in zip(rng.random(1499) < scores, scores, strict=True):
        test.update(int(y), risk=float(p))
        sizes.append(len(json.dumps(test.to_state()["state"])))
    assert max(sizes) <= 200


def test_in_control_false_alarm_rate_per_window_is_at_most_alpha() -> None:
    window, arl0, n_windows = 200, 2000.0, 1000
    rng = np.random.default_rng(3)
    scores = rng.beta(1.0, 4.0, window * n_windows)
    labels = rng.random(scores.size) < scores
    test = WindowedCalibrationTest(window, arl0)
    alarms = sum(
        test.update(int(y), risk=p).fired
        for y, p in zip(labels.tolist(), scores.tolist(), strict=True)
    )
    # fails with probability 0.001 if the rate were exactly alpha
    assert alarms <= binom.isf(0.001, n_windows, window / arl0)


@pytest.mark.parametrize("odds_ratio", [0.6, 1.6])
def test_labels_more_or_less_likely_than_the_scores_say_are_detected(odds_ratio: float) -> None:
    rng = np.random.default_rng(4)
    scores = rng.beta(1.0, 4.0, 500 * 20)
    odds = odds_ratio * scores / (1 - scores)
    labels = rng.random(scores.size) < odds / (1 + odds)
    test = WindowedCalibrationTest(window=500, arl0=5000)
    alarms = sum(
        test.update(int(y), risk=p).fired
        for y, p in zip(labels.tolist(), scores.tolist(), strict=True)
    )
    assert alarms >= 16


@pytest.mark.parametrize(
    ("x", "risk"), [(1, None), (1, 1.2), (1, float("nan")), (0.5, 0.3), (2, 0.3)]
)
def test_invalid_case_is_rejected(x: float, risk: float | None) -> None:
    with pytest.raises(ValueError):
        WindowedCalibrationTest().update(x, risk=risk)


def test_positives_scored_exactly_zero_are_the_strongest_evidence_of_miscalibration() -> None:
    test = WindowedCalibrationTest(window=10, arl0=1000)
    results = [test.update(1, risk=0.0) for _ in range(10)]
    last = test.last_window()
    assert results[-1].fired and results[-1].statistic > 1000
    assert last is not None and last.z > 1000


def test_a_negative_scored_exactly_one_fires_however_certain_the_other_scores() -> None:
    test = WindowedCalibrationTest(window=10, arl0=1000)
    results = [test.update(y, risk=1.0) for y in [1] * 9 + [0]]
    last = test.last_window()
    assert results[-1].fired
    assert last is not None and last.z == pytest.approx(-1 / math.sqrt(10e-6), rel=1e-3)


def test_scores_of_exactly_zero_with_negative_labels_are_no_evidence() -> None:
    test = WindowedCalibrationTest(window=10, arl0=1000)
    results = [test.update(0, risk=0.0) for _ in range(10)]
    assert not results[-1].fired and results[-1].statistic < 0.01


def test_a_version_1_open_window_gets_the_variance_floor_of_its_cases() -> None:
    state = WindowedCalibrationTest(window=10, arl0=1000).to_state()
    state["schema_version"] = 1
    state["state"]["open"] = [4, 4, 0.0, 0.0]  # four positives scored exactly 0, no floor
    restored = Detector.from_state(state)
    assert restored.to_state()["state"]["open"][3] == pytest.approx(4e-6, rel=1e-5)
    for _ in range(6):
        result = restored.update(1, risk=0.0)
    assert result.fired and result.statistic > 1000


def _windows_fired(gap: float, tolerance: float, windows: int, seed: int) -> float:
    """Share of windows of 400 calibrated-looking scores whose labels run ``gap`` above them."""
    rng = np.random.default_rng(seed)
    test = WindowedCalibrationTest(window=400, arl0=4000, tolerance=tolerance)
    fired = 0
    for _ in range(windows):
        scores = rng.beta(1.5, 4.5, 400)
        labels = rng.random(400) < np.clip(scores + gap, 0.0, 1.0)
        fired += sum(
            test.update(int(y), risk=float(p)).fired for y, p in zip(labels, scores, strict=True)
        )
    return fired / windows


def test_a_gap_at_the_tolerance_fires_at_most_the_window_rate() -> None:
    # The composite hypothesis' boundary: a gap of exactly the tolerance; 0.1 per window.
    rate = _windows_fired(gap=0.05, tolerance=0.05, windows=1500, seed=11)
    assert rate <= 0.1 + 2.5 * np.sqrt(0.1 * 0.9 / 1500)


def test_a_gap_inside_the_tolerance_hardly_fires_where_the_plain_test_often_does() -> None:
    assert _windows_fired(gap=0.03, tolerance=0.05, windows=300, seed=12) < 0.02
    assert _windows_fired(gap=0.03, tolerance=0.0, windows=300, seed=12) > 0.3


def test_a_gap_well_beyond_the_tolerance_fires() -> None:
    assert _windows_fired(gap=0.12, tolerance=0.05, windows=100, seed=13) > 0.9
