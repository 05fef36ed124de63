"""A stream's label-free estimates given the reference prevalence: adjusted to each window."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy.optimize import brentq
from scipy.stats import norm

from detectors import WindowedPerformanceEstimate
from postmarket.contracts.events import JoinPosition
from streams.monitor_policy import ClaimedMetric, MonitorPolicy
from streams.stream_monitor import StreamMonitor

POLICY = MonitorPolicy(score_reference_cases=300, score_window=100, arl0_cases=5000)
REFERENCE = 0.24
POSITIVE_MEAN = 2.2
THRESHOLD = 0.35


def _posterior(x: np.ndarray) -> np.ndarray:
    """Scores calibrated at the reference prevalence: two unit-variance Gaussian classes."""
    positive = REFERENCE * norm.pdf(x, POSITIVE_MEAN)
    result: np.ndarray = positive / (positive + (1 - REFERENCE) * norm.pdf(x, 0.0))
    return result


_CUT = brentq(lambda x: float(_posterior(np.array([x]))[0]) - THRESHOLD, -10, 10)
DEVICE: dict[ClaimedMetric, float] = {
    "sensitivity": float(norm.sf(_CUT - POSITIVE_MEAN)),
    "specificity": float(norm.cdf(_CUT)),
}
"""The device's true sensitivity and specificity, registered as its claims."""


def _at(offset: int) -> JoinPosition:
    return JoinPosition(topic="pms.predictions.v1", partition=0, offset=offset, rank=0)


def _estimate(monitor: StreamMonitor, metric: str) -> WindowedPerformanceEstimate:
    detector = monitor.detectors[f"{metric}_estimate"]
    assert isinstance(detector, WindowedPerformanceEstimate)
    return detector


def _estimate_alarms(monitor: StreamMonitor, prevalence: float, n: int, seed: int) -> int:
    rng = np.random.default_rng(seed)
    positive = rng.random(n) < prevalence
    scores = _posterior(rng.normal(np.where(positive, POSITIVE_MEAN, 0.0), 1.0))
    alarms = 0
    for i, score in enumerate(scores):
        decision = "positive" if score >= THRESHOLD else "negative"
        signals = monitor.observe_score(float(score), _at(i), decision)
        alarms += sum(s.detector.endswith("_estimate") for s in signals)
    return alarms


def test_without_a_reference_prevalence_the_estimate_is_not_adjusted() -> None:
    monitor = StreamMonitor.for_claims(DEVICE, POLICY)
    sensitivity = _estimate(monitor, "sensitivity")
    assert sensitivity.reference_prevalence is None
    assert sensitivity.claimed == pytest.approx(DEVICE["sensitivity"] - POLICY.sensitivity_drop)


def test_with_a_reference_prevalence_the_estimate_is_adjusted_and_keeps_its_tolerance() -> None:
    monitor = StreamMonitor.for_claims(DEVICE, POLICY, reference_prevalence=REFERENCE)
    drops = {"sensitivity": POLICY.sensitivity_drop, "specificity": POLICY.specificity_drop}
    for metric in ("sensitivity", "specificity"):
        estimate = _estimate(monitor, metric)
        assert estimate.reference_prevalence == REFERENCE
        assert estimate.claimed == pytest.approx(DEVICE[metric] - drops[metric])
    assert monitor.detectors["sensitivity_cusum"].settings() == (
        StreamMonitor.for_claims(DEVICE, POLICY).detectors["sensitivity_cusum"].settings()
    )


def test_claims_adopted_later_bring_their_reference_prevalence() -> None:
    monitor = StreamMonitor(policy=POLICY)
    monitor.adopt_claims(DEVICE, reference_prevalence=REFERENCE)
    assert monitor.reference_prevalence == REFERENCE
    assert _estimate(monitor, "specificity").reference_prevalence == REFERENCE


def test_the_reference_prevalence_and_the_adjusted_windows_survive_the_table_states() -> None:
    monitor = StreamMonitor.for_claims(DEVICE, POLICY, reference_prevalence=REFERENCE)
    _estimate_alarms(monitor, 0.18, 700, seed=1)
    labelled, label_free = json.loads(json.dumps(monitor.to_states(), allow_nan=False))
    restored = StreamMonitor.from_states(labelled, label_free)
    assert restored.reference_prevalence == REFERENCE
    for metric in ("sensitivity", "specificity"):
        assert _estimate(restored, metric).to_state() == _estimate(monitor, metric).to_state()
    assert restored.estimated_performance() == monitor.estimated_performance()


def test_a_version_3_state_from_before_the_reference_prevalence_loads_unadjusted() -> None:
    monitor = StreamMonitor.for_claims(DEVICE, POLICY)
    _estimate_alarms(monitor, 0.18, 700, seed=2)
    labelled, label_free = json.loads(json.dumps(monitor.to_states()))
    for state in (labelled, label_free):
        del state["reference_prevalence"]
    restored = StreamMonitor.from_states(labelled, label_free)
    assert restored.reference_prevalence is None
    assert _estimate(restored, "sensitivity").to_state() == (
        _estimate(monitor, "sensitivity").to_state()
    )


@pytest.mark.parametrize("prevalence", [0.18, 0.30])
def test_label_shift_alone_moves_the_adjusted_estimate_by_less_than_its_interval(
    prevalence: float,
) -> None:
    """Sensitivity and specificity do not change with prevalence (p(score | label) is the
    device's); the adjusted estimate of the last window stays within its interval of them."""
    monitor = StreamMonitor.for_claims(DEVICE, POLICY, reference_prevalence=REFERENCE)
    alarms = _estimate_alarms(monitor, prevalence, 40 * POLICY.estimate_window, seed=3)
    assert alarms == 0
    estimated = monitor.estimated_performance()
    assert estimated is not None
    for metric in ("sensitivity", "specificity"):
        bounds = getattr(estimated, metric)
        assert bounds.lower <= DEVICE[metric] <= bounds.upper
