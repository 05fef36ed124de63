"""Re-baselining a stream: the reference-drift tests restart from the predictions that follow,
once per decision, and nothing that tests a registered claim moves."""

from __future__ import annotations

import json
import uuid
from typing import Any

from postmarket import topics
from postmarket.contracts.events import JoinPosition
from streams.acquisition import AcquisitionCategories
from streams.charted_claims import claimed_performance
from streams.detector_design import REFERENCE_DRIFT_DETECTORS, design_detectors
from streams.monitor_policy import MonitorPolicy
from streams.stream_monitor import Signal, StreamMonitor
from tests.factories import make_outcome, make_registry_entry

POLICY = MonitorPolicy(score_reference_cases=300, score_window=100, arl0_cases=5000)
CLAIMS = claimed_performance(make_registry_entry(), "referable_dr")
DECISION = uuid.UUID("5d1c1f8e-7a36-4d9b-9a55-0c3f6f6b2d11")


def _at(offset: int) -> JoinPosition:
    return JoinPosition(topic=topics.PREDICTIONS, partition=0, offset=offset, rank=0)


def _decision_at(offset: int) -> JoinPosition:
    return JoinPosition(topic=topics.REBASELINES, partition=0, offset=offset, rank=0)


def _scanner(model: str) -> AcquisitionCategories:
    return {"manufacturer": "SIEMENS", "model": model, "kvp_band": "101_120kv"}


class Feeder:
    """Feeds one monitor consecutive predictions at one score (no score drift), by scanner."""

    def __init__(self, monitor: StreamMonitor) -> None:
        self.monitor = monitor
        self.offset = 0

    def drifts(self, model: str, n: int) -> list[Signal]:
        """The reference-drift signals of ``n`` predictions from scanner ``model``."""
        fired = []
        for _ in range(n):
            fired += self.monitor.observe_score(0.3, _at(self.offset), "negative", _scanner(model))
            self.offset += 1
        return [signal for signal in fired if signal.detector in REFERENCE_DRIFT_DETECTORS]


def _referenced_on(model: str) -> tuple[StreamMonitor, Feeder]:
    monitor = StreamMonitor.for_claims(CLAIMS, POLICY)
    feeder = Feeder(monitor)
    assert not feeder.drifts(model, POLICY.score_reference_cases)
    return monitor, feeder


def _round_trip(monitor: StreamMonitor) -> StreamMonitor:
    labelled, label_free = json.loads(json.dumps(monitor.to_states()))
    return StreamMonitor.from_states(labelled, label_free)


def test_the_new_reference_forms_from_the_next_predictions_and_detection_goes_on() -> None:
    monitor, feeder = _referenced_on("Definition AS")
    # Every test the reference made is one a decision restarts.
    built = set(monitor.detectors) - set(design_detectors(CLAIMS, POLICY).detectors)
    assert "model_drift" in built and built <= set(REFERENCE_DRIFT_DETECTORS)
    assert {s.detector for s in feeder.drifts("NAEOTOM Alpha", POLICY.score_window)} == {
        "model_drift"
    }

    assert monitor.rebaseline(DECISION, _decision_at(0))
    assert monitor.score_reference == [0] * len(monitor.score_reference)
    assert monitor.acquisition_reference == {}
    assert not set(REFERENCE_DRIFT_DETECTORS) & {*monitor.detectors, *monitor.statistics}

    # The accepted scanner's predictions form the new reference, then no longer fire.
    assert not feeder.drifts("NAEOTOM Alpha", POLICY.score_reference_cases)
    assert monitor.acquisition_reference["model"] == {"NAEOTOM Alpha": 300}
    assert sum(monitor.score_reference) == POLICY.score_reference_cases
    assert not feeder.drifts("NAEOTOM Alpha", 2 * POLICY.score_window)
    # The next change is found against the new reference.
    assert {s.detector for s in feeder.drifts("Force", POLICY.score_window)} == {"model_drift"}


def test_a_rebaseline_leaves_the_claim_based_detectors_counts_and_strata_alone() -> None:
    monitor, feeder = _referenced_on("Definition AS")
    for offset, (decision, label) in enumerate(
        [("positive", "positive"), ("negative", "positive")]
    ):
        monitor.observe(make_outcome(decision, label, offset))
    feeder.drifts("NAEOTOM Alpha", POLICY.score_window)
    claim_based = [name for name in monitor.detectors if name not in REFERENCE_DRIFT_DETECTORS]
    assert {"sensitivity_cusum", "sensitivity_estimate", "calibration_test"} <= set(claim_based)

    def untouched() -> dict[str, Any]:
        return {
            "labelled": monitor.labelled_state(),
            "detectors": {name: monitor.detectors[name].to_state() for name in claim_based},
            "statistics": {
                k: v for k, v in monitor.statistics.items() if k not in REFERENCE_DRIFT_DETECTORS
            },
            "predictions": monitor.predictions,
        }

    before = untouched()
    assert monitor.rebaseline(DECISION, _decision_at(0))
    assert untouched() == before
    assert monitor.labelled_state()["counts"] == [1, 1, 0, 0]


def test_a_decision_read_again_or_published_again_is_skipped() -> None:
    monitor, feeder = _referenced_on("Definition AS")
    assert monitor.rebaseline(DECISION, _decision_at(0))
    feeder.drifts("NAEOTOM Alpha", 10)
    assert not monitor.rebaseline(DECISION, _decision_at(0))  # the same record, read again
    assert not monitor.rebaseline(DECISION, _decision_at(1))  # the same decision, published again
    assert sum(monitor.score_reference) == 10  # neither restarted the forming reference
    assert monitor.applied[f"prediction|{topics.REBASELINES}:0"] == (0, 0, 0)
    # A later decision applies.
    assert monitor.rebaseline(uuid.uuid4(), _decision_at(2))
    assert sum(monitor.score_reference) == 0


def test_the_states_keep_the_new_reference_and_the_decision() -> None:
    monitor, feeder = _referenced_on("Definition AS")
    assert monitor.rebaseline(DECISION, _decision_at(0))
    emptied = _round_trip(monitor)  # no reference yet, no drift tests: still a valid state
    assert emptied.rebaseline_id == str(DECISION)
    assert not set(REFERENCE_DRIFT_DETECTORS) & set(emptied.detectors)

    feeder.drifts("NAEOTOM Alpha", POLICY.score_reference_cases + POLICY.score_window // 2)
    restored = _round_trip(monitor)
    assert restored.rebaseline_id == str(DECISION)
    assert restored.score_reference == monitor.score_reference
    assert restored.acquisition_reference == {
        "manufacturer": {"SIEMENS": 300},
        "model": {"NAEOTOM Alpha": 300},
        "kvp_band": {"101_120kv": 300},
        "slice_thickness_band": {"(unknown)": 300},
    }
    assert restored.to_states() == monitor.to_states()
    assert not restored.rebaseline(DECISION, _decision_at(0))
    assert not restored.rebaseline(DECISION, _decision_at(5))
    # The restored monitor goes on exactly as the live one would.
    live = feeder.drifts("Force", POLICY.score_window)
    feeder.monitor, feeder.offset = restored, feeder.offset - POLICY.score_window
    assert [s.result for s in feeder.drifts("Force", POLICY.score_window)] == [
        s.result for s in live
    ]
    assert live


def test_a_state_written_before_rebaselining_existed_loads() -> None:
    monitor, feeder = _referenced_on("Definition AS")
    labelled, label_free = json.loads(json.dumps(monitor.to_states()))
    assert "rebaseline_id" not in label_free  # written only once re-baselined
    restored = StreamMonitor.from_states(labelled, label_free)
    assert restored.rebaseline_id is None
    assert "model_drift" in restored.detectors
    assert restored.rebaseline(DECISION, _decision_at(0))
