"""A review decision (a resolved claim-based alert) restarts the stream's rejected claims tests
and the CUSUMs that alarmed, once per decision, and moves no reference."""

from __future__ import annotations

import copy
import json
import uuid
from typing import Any

import numpy as np

from detectors import BetaBinomialConfidenceSequence
from postmarket import topics
from postmarket.contracts.events import JoinPosition, Outcome
from streams.acquisition import AcquisitionCategories
from streams.casefile import RecordPosition
from streams.charted_claims import claimed_lower_bounds, claimed_performance
from streams.detector_design import REFERENCE_DRIFT_DETECTORS
from streams.live_streams import observations
from streams.monitor_policy import MonitorPolicy
from streams.stream_monitor import StreamMonitor
from tests.factories import make_outcome, make_rebaseline, make_registry_entry

ENTRY = make_registry_entry()
CLAIMS = claimed_performance(ENTRY, "referable_dr")
LOWER = claimed_lower_bounds(ENTRY, "referable_dr")
POLICY = MonitorPolicy(score_reference_cases=300, score_window=100, arl0_cases=5000)
REVIEW = uuid.UUID("0f5c7d2a-4b1e-4c8a-9e3d-6a2b1c0d9e8f")


def _decision_at(offset: int) -> JoinPosition:
    return JoinPosition(topic=topics.REBASELINES, partition=0, offset=offset, rank=0)


def _positives(sensitivity: float, n: int, seed: int, start: int) -> list[Outcome]:
    rng = np.random.default_rng(seed)
    return [
        make_outcome("positive" if hit else "negative", "positive", start + i)
        for i, hit in enumerate(rng.random(n) < sensitivity)
    ]


def _fired(monitor: StreamMonitor, outcomes: list[Outcome]) -> list[str]:
    return [signal.detector for outcome in outcomes for signal in monitor.observe(outcome)]


def _stream(sensitivity: float) -> StreamMonitor:
    """A stream with a complete reference, then 400 positives at ``sensitivity``."""
    monitor = StreamMonitor.for_claims(CLAIMS, POLICY, None, LOWER)
    scanner: AcquisitionCategories = {
        "manufacturer": "SIEMENS",
        "model": "Definition AS",
        "kvp_band": "101_120kv",
    }
    for offset in range(POLICY.score_reference_cases):
        at = JoinPosition(topic=topics.PREDICTIONS, partition=0, offset=offset, rank=0)
        monitor.observe_score(0.3 + 0.001 * (offset % 100), at, "negative", scanner)
    assert {"score_drift", "model_drift"} <= set(monitor.detectors)
    _fired(monitor, _positives(sensitivity, 400, seed=5, start=0))
    return monitor


def _claims_test(monitor: StreamMonitor) -> BetaBinomialConfidenceSequence:
    test = monitor.detectors["sensitivity_claims_test"]
    assert isinstance(test, BetaBinomialConfidenceSequence)
    return test


def _label_free_references(monitor: StreamMonitor) -> dict[str, Any]:
    return {
        "score_reference": list(monitor.score_reference),
        "acquisition_reference": copy.deepcopy(monitor.acquisition_reference),
        "drift": {
            name: (detector.to_state(), monitor.statistics.get(name))
            for name, detector in monitor.detectors.items()
            if name in REFERENCE_DRIFT_DETECTORS
        },
    }


def test_a_review_restarts_the_rejected_claims_test_and_the_cusum_that_alarmed() -> None:
    monitor = _stream(0.55)
    assert _claims_test(monitor).verdict == "below claim"
    assert "sensitivity_cusum" in monitor.alarmed_charts

    assert monitor.rebaseline(REVIEW, _decision_at(0), "review")

    test = _claims_test(monitor)
    assert test.verdict != "below claim"
    assert test.to_state() == test.__class__(**test.settings()).to_state()
    chart = monitor.detectors["sensitivity_cusum"]
    assert chart.to_state() == chart.__class__(**chart.settings()).to_state()
    assert monitor.claims_restarts == 1
    assert monitor.alarmed_charts == set()


def test_a_review_leaves_the_score_and_acquisition_references_as_they_were() -> None:
    monitor = _stream(0.55)
    before = _label_free_references(monitor)

    monitor.rebaseline(REVIEW, _decision_at(0), "review")

    assert _label_free_references(monitor) == before


def test_a_re_baselining_rebuilds_the_references_a_review_keeps() -> None:
    monitor = _stream(0.55)
    monitor.rebaseline(REVIEW, _decision_at(0), "reference")
    assert not set(REFERENCE_DRIFT_DETECTORS) & set(monitor.detectors)
    assert sum(monitor.score_reference) == 0


def test_a_redelivered_review_is_skipped() -> None:
    monitor = _stream(0.55)
    assert monitor.rebaseline(REVIEW, _decision_at(0), "review")
    _fired(monitor, _positives(0.55, 400, seed=6, start=400))
    assert _claims_test(monitor).verdict == "below claim"  # rejected again since the review

    assert not monitor.rebaseline(REVIEW, _decision_at(0), "review")  # the record read again
    assert not monitor.rebaseline(REVIEW, _decision_at(7), "review")  # published again

    assert _claims_test(monitor).verdict == "below claim"
    assert monitor.claims_restarts == 1


def test_a_review_survives_the_state_round_trip_and_is_skipped_after_it() -> None:
    monitor = _stream(0.55)
    monitor.rebaseline(REVIEW, _decision_at(0), "review")
    labelled, label_free = json.loads(json.dumps(monitor.to_states()))
    restored = StreamMonitor.from_states(labelled, label_free)
    assert restored.claims_restarts == 1
    assert not restored.rebaseline(REVIEW, _decision_at(3), "review")


def test_a_review_with_nothing_rejected_changes_nothing_but_is_remembered() -> None:
    monitor = _stream(0.85)
    assert _claims_test(monitor).verdict != "below claim"
    labelled = json.dumps(monitor.labelled_state())
    before = _label_free_references(monitor)

    assert monitor.rebaseline(REVIEW, _decision_at(0), "review")

    assert _label_free_references(monitor) == before
    assert json.dumps(monitor.labelled_state()) == labelled
    assert monitor.rebaseline_id == str(REVIEW)
    assert not monitor.rebaseline(REVIEW, _decision_at(1), "review")


def test_the_stream_agent_applies_a_decision_by_its_scope() -> None:
    reviewed, re_baselined = _stream(0.55), _stream(0.55)
    before = _label_free_references(reviewed)
    position = RecordPosition(topic=topics.REBASELINES, partition=0, offset=0)
    review = make_rebaseline(rebaseline_id=REVIEW, scope="review")
    reference = make_rebaseline(rebaseline_id=REVIEW)

    assert list(observations(reviewed, review, position)) == [[]]
    assert list(observations(re_baselined, reference, position)) == [[]]

    assert _label_free_references(reviewed) == before
    assert sum(re_baselined.score_reference) == 0
    assert reviewed.claims_restarts == re_baselined.claims_restarts == 1
    assert list(observations(reviewed, review, position)) == [None]
