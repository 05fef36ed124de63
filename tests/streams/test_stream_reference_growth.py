"""A stream's drift references grow after arming, and its states keep the growth."""

from __future__ import annotations

import json

import numpy as np

from detectors import WindowedChiSquareDrift, WindowedKSDrift
from detectors.reference_calibration import reference_cap
from postmarket.contracts.events import JoinPosition
from streams.monitor_policy import MonitorPolicy
from streams.stream_monitor import Signal, StreamMonitor

POLICY = MonitorPolicy()
SCANNERS = ("Definition AS", "Force", "Edge")


def _at(offset: int) -> JoinPosition:
    return JoinPosition(topic="pms.predictions.v1", partition=0, offset=offset, rank=0)


def _feed(monitor: StreamMonitor, start: int, n: int, seed: int) -> list[Signal]:
    rng = np.random.default_rng(seed)
    signals = []
    for offset in range(start, start + n):
        model = str(rng.choice(SCANNERS, p=[0.6, 0.3, 0.1]))
        categories = {"manufacturer": "SIEMENS", "model": model}
        signals += monitor.observe_score(
            float(rng.beta(2, 5)),
            _at(offset),
            "negative",
            categories,  # type: ignore[arg-type]
        )
    return signals


def test_the_score_and_acquisition_references_grow_after_arming_to_twenty_windows() -> None:
    monitor = StreamMonitor(policy=POLICY)
    _feed(monitor, 0, POLICY.score_reference_cases + 30 * POLICY.score_window, seed=1)
    score_drift, model_drift = monitor.detectors["score_drift"], monitor.detectors["model_drift"]
    assert isinstance(score_drift, WindowedKSDrift)
    assert isinstance(model_drift, WindowedChiSquareDrift)
    cap = reference_cap(POLICY.score_window)
    # Every window that passed joined, up to the cap (a false alarm's window did not).
    assert cap - 2 * POLICY.score_window <= sum(score_drift.reference) <= cap
    assert sum(model_drift.reference) > POLICY.score_reference_cases
    assert sum(monitor.score_reference) == POLICY.score_reference_cases  # the first one


def test_a_stream_restored_mid_growth_raises_the_same_signals() -> None:
    monitor = StreamMonitor(policy=POLICY)
    _feed(monitor, 0, POLICY.score_reference_cases + 7 * POLICY.score_window + 31, seed=2)
    restored = StreamMonitor.from_states(*json.loads(json.dumps(monitor.to_states())))
    assert restored.label_free_state() == monitor.label_free_state()
    start = POLICY.score_reference_cases + 7 * POLICY.score_window + 31
    assert _feed(restored, start, 12 * POLICY.score_window, seed=3) == _feed(
        monitor, start, 12 * POLICY.score_window, seed=3
    )


def test_a_drift_tests_last_statistic_and_threshold_come_back_from_its_own_state() -> None:
    """The stream's state keeps no copy of them (the test's state holds both)."""
    monitor = StreamMonitor(policy=POLICY)
    _feed(monitor, 0, POLICY.score_reference_cases + 3 * POLICY.score_window + 31, seed=5)
    drift_tests = {"score_drift", "model_drift"}
    assert drift_tests <= monitor.statistics.keys()
    assert not drift_tests & monitor.label_free_state()["statistics"].keys()
    restored = StreamMonitor.from_states(*json.loads(json.dumps(monitor.to_states())))
    assert restored.statistics == monitor.statistics


def test_a_stream_state_of_the_previous_release_loads_with_its_first_reference() -> None:
    """The previous release wrote the drift tests' running states without ``grown``."""
    monitor = StreamMonitor(policy=POLICY)
    _feed(monitor, 0, POLICY.score_reference_cases + 40, seed=4)
    labelled, label_free = json.loads(json.dumps(monitor.to_states()))
    for state in label_free["detectors"].values():
        state.pop("grown", None)
    restored = StreamMonitor.from_states(labelled, label_free)
    drift = restored.detectors["score_drift"]
    assert isinstance(drift, WindowedKSDrift)
    assert drift.reference == restored.score_reference
    assert restored.label_free_state() == monitor.label_free_state()
