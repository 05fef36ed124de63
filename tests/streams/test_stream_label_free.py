"""A stream's label-free tests (acquisition mix, estimate from scores) and its calibration."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import numpy as np
import pytest

from detectors import WindowedChiSquareDrift
from detectors.statistics import estimate_performance
from postmarket.contracts.events import AcquisitionFeatures, JoinPosition
from streams.acquisition import AcquisitionCategories, acquisition_categories, kvp_band
from streams.alerting import alert_for
from streams.charted_claims import claimed_performance
from streams.detector_design import (
    MAX_REFERENCE_CATEGORIES,
    OTHER_CATEGORY,
    bounded_reference,
    is_label_free,
)
from streams.monitor_policy import MonitorPolicy
from streams.stream_monitor import Signal, StreamMonitor
from tests.factories import make_outcome, make_prediction, make_registry_entry

POLICY = MonitorPolicy(score_reference_cases=300, score_window=100, arl0_cases=5000)
CLAIMS = claimed_performance(make_registry_entry(), "referable_dr")
STREAM = make_prediction().stream
NOW = datetime(2026, 4, 1, tzinfo=UTC)


def _at(offset: int) -> JoinPosition:
    return JoinPosition(topic="pms.predictions.v1", partition=0, offset=offset, rank=0)


def _feed(
    monitor: StreamMonitor,
    categories: list[AcquisitionCategories],
    start: int = 0,
    score: float = 0.3,
) -> list[tuple[int, Signal]]:
    fired = []
    for i, category in enumerate(categories):
        decision = "positive" if score >= 0.5 else "negative"
        for signal in monitor.observe_score(score, _at(start + i), decision, category):
            fired.append((start + i, signal))
    return fired


def _scanners(n: int, seed: int) -> list[AcquisitionCategories]:
    rng = np.random.default_rng(seed)
    models = rng.choice(["Definition AS", "Force"], n, p=[0.7, 0.3])
    return [{"manufacturer": "SIEMENS", "model": str(m), "kvp_band": "101_120kv"} for m in models]


def test_acquisition_categories_come_from_the_header_features() -> None:
    features = AcquisitionFeatures(manufacturer="GE", model="Revolution", kvp=100.0)
    assert acquisition_categories(features) == {
        "manufacturer": "GE",
        "model": "Revolution",
        "kvp_band": "81_100kv",
    }
    assert [kvp_band(k) for k in (70.0, 80.0, 80.5, 120.0, 140.0)] == [
        "le_80kv",
        "le_80kv",
        "81_100kv",
        "101_120kv",
        "above_120kv",
    ]


def test_a_new_scanner_model_is_a_finding_of_the_next_window() -> None:
    monitor = StreamMonitor.for_claims({}, POLICY)
    assert not _feed(monitor, _scanners(600, seed=1))
    # A dimension the reference never knew (no slice thickness given) gets no test.
    assert {"manufacturer_drift", "model_drift", "kvp_band_drift"} <= set(monitor.detectors)
    assert "slice_thickness_band_drift" not in monitor.detectors
    # Five studies of the window (the policy's unseen_min_cases) on a model never seen.
    new = [{"manufacturer": "SIEMENS", "model": "NAEOTOM Alpha"}] * POLICY.unseen_min_cases
    arrivals = _scanners(100 - len(new), seed=2) + new
    fired = _feed(monitor, arrivals, start=600)
    by_detector = {signal.detector: (index, signal) for index, signal in fired}
    index, signal = by_detector["model_drift"]
    assert index == 699 and signal.result.n_events == 5 and is_label_free("model_drift")
    alert = alert_for(STREAM, signal, monitor, NOW)
    assert alert.evidence["adverse_events"] == 5
    assert "5 of 100 predictions in a model the reference never saw" in alert.message


def test_one_study_on_a_model_the_reference_lacks_is_not_a_finding_on_its_own() -> None:
    monitor = StreamMonitor.for_claims({}, POLICY)
    _feed(monitor, _scanners(600, seed=1))
    arrivals = _scanners(99, seed=2) + [{"manufacturer": "SIEMENS", "model": "NAEOTOM Alpha"}]
    fired = _feed(monitor, arrivals, start=600)
    assert "model_drift" not in {signal.detector for _, signal in fired}


def test_the_stream_test_agrees_with_the_bare_chi_square_detector() -> None:
    monitor = StreamMonitor.for_claims({}, POLICY)
    reference = _scanners(300, seed=3)
    _feed(monitor, reference)
    counts: dict[str, int] = {}
    for category in reference:
        counts[category["model"]] = counts.get(category["model"], 0) + 1
    # Four dimensions could be tested; two know more than "unknown" (Bonferroni over 3).
    bare = WindowedChiSquareDrift.from_counts(counts, POLICY.score_window, 3 * POLICY.arl0_cases)
    shifted = [{**c, "model": "Force"} if i % 2 else c for i, c in enumerate(_scanners(300, 4))]
    fired = [i for i, s in _feed(monitor, shifted, start=300) if s.detector == "model_drift"]
    bare_fired = [
        300 + i for i, c in enumerate(shifted) if bare.update(bare.code(c["model"])).fired
    ]
    assert fired == bare_fired and fired


def test_reference_categories_are_bounded() -> None:
    counts = {f"model-{i}": 100 - i for i in range(12)}
    bounded = bounded_reference(counts)
    assert len(bounded) == MAX_REFERENCE_CATEGORIES
    assert bounded[OTHER_CATEGORY] == sum(100 - i for i in range(MAX_REFERENCE_CATEGORIES - 1, 12))
    assert bounded_reference(bounded) == bounded
    monitor = StreamMonitor.for_claims({}, POLICY)
    many = [{"model": f"model-{i % 40}"} for i in range(300)]
    _feed(monitor, many)  # type: ignore[arg-type]
    assert len(monitor.acquisition_reference["model"]) == MAX_REFERENCE_CATEGORIES
    # A pooled category seen again is not new.
    fired = _feed(monitor, [{"model": "model-39"}] * 100, start=300)  # type: ignore[list-item]
    assert all(s.result.n_events == 0 for _, s in fired)


def test_the_estimate_from_scores_matches_the_batch_estimate_and_warns_below_claim() -> None:
    rng = np.random.default_rng(5)
    scores = rng.uniform(0.2, 0.7, POLICY.estimate_window)
    monitor = StreamMonitor.for_claims(CLAIMS, POLICY)
    fired = []
    for i, score in enumerate(scores):
        decision = "positive" if score >= 0.5 else "negative"
        fired += monitor.observe_score(float(score), _at(i), decision, {})
    estimated = monitor.estimated_performance()
    batch = estimate_performance(scores, threshold=0.5)
    assert estimated is not None
    # The same sums, added in another order: equal to rounding.
    assert estimated.sensitivity.estimate == pytest.approx(batch.sensitivity.estimate, rel=1e-12)
    assert estimated.ppv.upper == pytest.approx(batch.ppv.upper, rel=1e-12)
    [signal] = [s for s in fired if s.detector == "sensitivity_estimate"]
    alert = alert_for(STREAM, signal, monitor, NOW)
    assert (
        "estimated sensitivity" in alert.message and "below the rejectable 0.802" in alert.message
    )
    assert is_label_free(signal.detector)


def test_miscalibrated_scores_fire_the_calibration_test() -> None:
    monitor = StreamMonitor.for_claims(CLAIMS, POLICY)
    rng = np.random.default_rng(6)
    fired = []
    for i in range(POLICY.estimate_window):
        label = "positive" if rng.random() < 0.45 else "negative"  # scores say 0.2
        outcome = make_outcome("negative", label, i, score=0.2)
        fired += [s for s in monitor.observe(outcome) if s.detector == "calibration_test"]
    [signal] = fired
    assert not is_label_free(signal.detector)
    assert "no longer calibrated" in alert_for(STREAM, signal, monitor, NOW).message


def test_a_version_2_state_loads_without_acquisition_tests() -> None:
    monitor = StreamMonitor.for_claims(CLAIMS, POLICY)
    _feed(monitor, _scanners(400, seed=7))
    labelled, label_free = json.loads(json.dumps(monitor.to_states()))
    state = label_free | labelled | {"state_version": 2}
    for part in ("detectors", "applied", "statistics"):
        state[part] = label_free[part] | labelled[part]
    del state["acquisition_reference"]
    for name in list(state["detectors"]):
        if name.endswith("_drift") and name != "score_drift" or name.endswith("_estimate"):
            del state["detectors"][name]
    restored = StreamMonitor.from_states(state, None)
    assert "score_drift" in restored.detectors and "model_drift" not in restored.detectors
    assert "sensitivity_estimate" in restored.detectors  # a new detector starts fresh
    _feed(restored, _scanners(100, seed=8), start=400)
    assert restored.predictions == 500
