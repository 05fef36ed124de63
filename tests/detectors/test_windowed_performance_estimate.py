"""Streaming CBPE per window: agrees with the batch estimate, keeps its ARL0, sees a drop."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from scipy.stats import binom, norm

from detectors import WindowedPerformanceEstimate
from detectors.statistics import estimate_performance

THRESHOLD = 0.35
BETA = (0.7, 2.0)  # calibrated scores of a low-prevalence case mix (about 26 % positive)


def feed_window(
    detector: WindowedPerformanceEstimate, scores: np.ndarray, called: np.ndarray
) -> list[float]:
    """Feed the cases and return the statistic after each one."""
    return [
        detector.update(float(p), risk=float(d)).statistic
        for p, d in zip(scores, called, strict=True)
    ]


def true_metric(metric: str, cut: float, n: int = 1_000_000) -> float:
    """The metric of the case-mix population at cut-off ``cut``, from simulated labels."""
    rng = np.random.default_rng(99)
    scores = rng.beta(*BETA, n)
    labels, called = rng.random(n) < scores, scores >= cut
    if metric == "sensitivity":
        return float(called[labels].mean())
    return float((~called[~labels]).mean())


def test_completed_window_equals_the_batch_estimate_exactly_on_dyadic_scores() -> None:
    # multiples of 1/1024: every sum is exact, so summation order cannot matter
    scores = np.random.default_rng(0).integers(0, 1025, 500) / 1024
    detector = WindowedPerformanceEstimate("sensitivity", claimed=0.7, window=500)
    feed_window(detector, scores, scores >= THRESHOLD)
    assert detector.last_window() == estimate_performance(scores, THRESHOLD, alpha=0.05)


@pytest.mark.parametrize("metric", ["sensitivity", "specificity", "ppv"])
def test_completed_window_agrees_with_the_batch_estimate_on_any_scores(metric: str) -> None:
    scores = np.random.default_rng(1).beta(*BETA, 500)
    detector = WindowedPerformanceEstimate("specificity", claimed=0.8, window=500)
    feed_window(detector, scores, scores >= THRESHOLD)
    last = detector.last_window()
    assert last is not None
    streamed = getattr(last, metric)
    batch = getattr(estimate_performance(scores, THRESHOLD), metric)
    assert streamed.estimate == pytest.approx(batch.estimate, rel=1e-12)
    assert streamed.se == pytest.approx(batch.se, rel=1e-12)


@pytest.mark.parametrize(("metric", "claimed"), [("sensitivity", 0.75), ("specificity", 0.85)])
def test_statistic_is_the_one_sided_z_with_the_sampling_standard_error(
    metric: str, claimed: float
) -> None:
    scores = np.random.default_rng(2).beta(*BETA, 137)
    called = scores >= THRESHOLD
    # A window of exactly these cases: the statistic is that of the last completed window.
    detector = WindowedPerformanceEstimate(metric, claimed=claimed, window=137)  # type: ignore[arg-type]
    statistic = feed_window(detector, scores, called)[-1]
    # independent reference: ratio estimator sum(w h) / sum(w), residuals w (h - r)
    weight = scores if metric == "sensitivity" else 1 - scores
    right = called if metric == "sensitivity" else ~called
    estimate = (weight * right).sum() / weight.sum()
    variance = max(((weight * (right - r)) ** 2).sum() for r in (estimate, claimed))
    assert statistic == pytest.approx((claimed - estimate) * weight.sum() / math.sqrt(variance))


def test_threshold_is_the_one_sided_normal_critical_value_at_window_over_arl0() -> None:
    detector = WindowedPerformanceEstimate("sensitivity", claimed=0.7, window=500, arl0=5000)
    assert detector.threshold == pytest.approx(norm.isf(0.1))


def test_counts_are_the_windows_cases_and_its_positive_decisions() -> None:
    detector = WindowedPerformanceEstimate("sensitivity", claimed=0.7, window=10)
    results = [detector.update(p, risk=d) for p, d in [(0.9, 1.0), (0.2, 0.0), (0.6, 1)]]
    assert [(r.n_cases, r.n_events) for r in results] == [(1, 1), (2, 1), (3, 2)]


def test_fires_only_at_a_windows_last_case_and_then_starts_the_next() -> None:
    detector = WindowedPerformanceEstimate("sensitivity", claimed=0.9, window=50, arl0=500)
    results = [detector.update(0.8, risk=0.0) for _ in range(100)]  # nothing called positive
    assert [i for i, r in enumerate(results) if r.fired] == [49, 99]
    assert results[50].n_cases == 1


def test_last_window_is_none_until_a_window_completes() -> None:
    detector = WindowedPerformanceEstimate("sensitivity", claimed=0.7, window=5)
    for _ in range(4):
        detector.update(0.5, risk=1.0)
    assert detector.last_window() is None
    detector.update(0.5, risk=1.0)
    assert detector.last_window() is not None


def test_running_state_stays_within_200_json_bytes() -> None:
    scores = np.random.default_rng(3).beta(*BETA, 1499)
    detector = WindowedPerformanceEstimate("specificity", claimed=0.8, window=500)
    sizes = []
    for p, d in zip(scores, scores >= THRESHOLD, strict=True):
        detector.update(float(p), risk=float(d))
        sizes.append(len(json.dumps(detector.to_state()["state"])))
    assert max(sizes) <= 200


@pytest.mark.parametrize(
    ("x", "risk", "message"),
    [
        (0.4, None, "decision"),
        (0.4, 0.4, "decision"),
        (0.4, float("nan"), "decision"),
        (1.2, 1.0, r"score in \[0, 1\]"),
        (float("nan"), 1.0, "finite"),
    ],
)
def test_invalid_case_names_what_is_wrong(x: float, risk: float | None, message: str) -> None:
    detector = WindowedPerformanceEstimate("sensitivity", claimed=0.7)
    with pytest.raises(ValueError, match=message):
        detector.update(x, risk=risk)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"metric": "ppv", "claimed": 0.7},
        {"metric": "sensitivity", "claimed": 1.0},
        {"metric": "sensitivity", "claimed": 0.7, "window": 1},
        {"metric": "sensitivity", "claimed": 0.7, "window": 500, "arl0": 500},
    ],
)
def test_invalid_settings_are_rejected(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        WindowedPerformanceEstimate(**kwargs)  # type: ignore[arg-type]


IN_CONTROL_WINDOW, IN_CONTROL_ARL0, IN_CONTROL_WINDOWS = 200, 2000.0, 1000


@pytest.fixture(scope="module", params=["sensitivity", "specificity"])
def in_control_windows(request: pytest.FixtureRequest) -> tuple[np.ndarray, np.ndarray]:
    """Statistics and signals at the end of 1000 in-control windows (claim = true metric)."""
    metric = request.param
    scores = np.random.default_rng(4).beta(*BETA, IN_CONTROL_WINDOW * IN_CONTROL_WINDOWS)
    detector = WindowedPerformanceEstimate(
        metric, true_metric(metric, THRESHOLD), IN_CONTROL_WINDOW, IN_CONTROL_ARL0
    )
    results = [detector.update(float(p), risk=float(p >= THRESHOLD)) for p in scores.tolist()]
    ends = results[IN_CONTROL_WINDOW - 1 :: IN_CONTROL_WINDOW]
    return np.array([r.statistic for r in ends]), np.array([r.fired for r in ends])


def test_in_control_false_alarm_rate_per_window_is_at_most_alpha(
    in_control_windows: tuple[np.ndarray, np.ndarray],
) -> None:
    _, fired = in_control_windows
    alpha = IN_CONTROL_WINDOW / IN_CONTROL_ARL0
    # fails with probability 0.001 if the rate were exactly alpha
    assert fired.sum() <= binom.isf(0.001, IN_CONTROL_WINDOWS, alpha)


def test_in_control_statistic_has_about_unit_spread(
    in_control_windows: tuple[np.ndarray, np.ndarray],
) -> None:
    """Neither far too wide (liberal) nor far too narrow (a wasted test): sd within 10 %."""
    statistics, _ = in_control_windows
    assert 0.9 <= statistics.std(ddof=1) <= 1.1


def test_a_real_drop_in_sensitivity_is_detected_in_nearly_every_window() -> None:
    """Scores stay calibrated and distributed as before; the device's cut-off rises to 0.45."""
    claimed, dropped = true_metric("sensitivity", THRESHOLD), true_metric("sensitivity", 0.45)
    assert dropped < claimed - 0.1
    rng = np.random.default_rng(5)
    scores = rng.beta(*BETA, 500 * 40)
    detector = WindowedPerformanceEstimate("sensitivity", claimed, window=500, arl0=5000)
    alarms = sum(detector.update(float(p), risk=float(p >= 0.45)).fired for p in scores.tolist())
    assert alarms >= 38
