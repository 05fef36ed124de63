"""A stream's labelled monitoring: counts, detectors from the registered claims, replays."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pytest

from detectors import BernoulliMultiCUSUM, multi_cusum_design, multi_cusum_resolution
from postmarket.contracts import Outcome, Prediction
from postmarket.contracts.events import JoinPosition
from streams.acquisition import acquisition_categories
from streams.alerting import alert_for
from streams.charted_claims import claimed_performance
from streams.detector_design import chart_alternatives
from streams.monitor_policy import MonitorPolicy
from streams.stream_monitor import StreamMonitor
from tests.factories import make_outcome, make_prediction, make_registry_entry

POLICY = MonitorPolicy(arl0_cases=5000)
CLAIMS = claimed_performance(make_registry_entry(), "referable_dr")


def _positives(sensitivity: float, n: int, seed: int, start: int = 0) -> list[Outcome]:
    rng = np.random.default_rng(seed)
    hits = rng.random(n) < sensitivity
    return [
        make_outcome("positive" if hit else "negative", "positive", start + i)
        for i, hit in enumerate(hits)
    ]


def test_claims_come_from_the_registered_version_and_task() -> None:
    assert CLAIMS == {"sensitivity": 0.872, "specificity": 0.907}
    assert claimed_performance(make_registry_entry(), "other_task") == {}
    pending = make_registry_entry(registration_status="pending")
    assert claimed_performance(pending, "referable_dr") == {}


def test_outcomes_fill_the_confusion_matrix() -> None:
    monitor = StreamMonitor.for_claims(CLAIMS, POLICY)
    cells = [("positive", "positive"), ("negative", "positive"), ("negative", "negative")]
    for offset, (decision, label) in enumerate(cells + [("positive", "negative")]):
        monitor.observe(make_outcome(decision, label, offset))
    counts = (
        monitor.true_positives,
        monitor.false_negatives,
        monitor.true_negatives,
        monitor.false_positives,
    )
    assert counts == (1, 1, 1, 1)


def test_without_claims_there_are_counts_but_no_claim_detectors() -> None:
    monitor = StreamMonitor.for_claims({}, POLICY)
    signals = [s for o in _positives(0.3, 499, seed=1) for s in monitor.observe(o)]
    assert set(monitor.detectors) == {"calibration_test"} and not signals
    assert monitor.outcomes == 499


def test_replayed_and_earlier_positions_are_skipped() -> None:
    monitor = StreamMonitor.for_claims(CLAIMS, POLICY)
    applied = make_outcome("positive", "positive", offset=10, rank=1)
    monitor.observe(applied)

    def applied_before(outcome: Outcome) -> bool:
        return monitor.already_applied("outcome", outcome.joined_at)

    assert applied_before(applied)
    assert applied_before(make_outcome("positive", "positive", offset=10, rank=0))
    assert not applied_before(make_outcome("positive", "positive", offset=10, rank=2))
    assert not applied_before(make_outcome("positive", "positive", 3, partition=1))
    assert not monitor.already_applied("prediction", applied.joined_at)


def test_sensitivity_cusum_fires_where_the_bare_detector_does() -> None:
    outcomes = _positives(0.872, 600, seed=7) + _positives(0.70, 600, seed=8, start=600)
    monitor = StreamMonitor.for_claims(CLAIMS, POLICY)
    # no lower bounds given: charted at the point estimate, 0.872, tuned around 0.802
    p0 = 1 - 0.872
    p1 = chart_alternatives(0.872, 0.872 - POLICY.sensitivity_drop)
    resolution = multi_cusum_resolution(p0, p1)
    bare = BernoulliMultiCUSUM(p0, p1, multi_cusum_design(p0, p1, 5000, resolution).h, resolution)
    fired_in_monitor = [
        i
        for i, o in enumerate(outcomes)
        if any(s.detector == "sensitivity_cusum" for s in monitor.observe(o))
    ]
    fired_bare = [
        i
        for i, o in enumerate(outcomes)
        if bare.update(1.0 if o.decision == "negative" else 0.0).fired
    ]
    assert fired_in_monitor == fired_bare
    assert fired_in_monitor and fired_in_monitor[0] >= 600


def test_state_round_trip_mid_stream_gives_the_same_future() -> None:
    outcomes = _positives(0.75, 800, seed=3)
    whole = StreamMonitor.for_claims(CLAIMS, POLICY)
    split = StreamMonitor.for_claims(CLAIMS, POLICY)
    for o in outcomes[:400]:
        whole.observe(o)
        split.observe(o)
    split = StreamMonitor.from_states(*json.loads(json.dumps(split.to_states())))
    later_whole = [whole.observe(o) for o in outcomes[400:]]
    later_split = [split.observe(o) for o in outcomes[400:]]
    assert later_whole == later_split
    assert whole.to_states() == split.to_states()


def test_claims_arriving_later_start_the_detectors() -> None:
    monitor = StreamMonitor.for_claims({}, POLICY)
    monitor.adopt_claims(CLAIMS)
    assert set(monitor.detectors) == {
        "calibration_test",
        "sensitivity_cusum",
        "sensitivity_claims_test",
        "sensitivity_estimate",
        "specificity_cusum",
        "specificity_claims_test",
        "specificity_estimate",
    }


def test_claims_arriving_later_keep_the_running_calibration_test() -> None:
    monitor = StreamMonitor.for_claims({}, POLICY)
    for outcome in _positives(0.8, 30, seed=2):
        monitor.observe(outcome)
    before = monitor.detectors["calibration_test"].to_state()
    monitor.adopt_claims(CLAIMS)
    assert monitor.detectors["calibration_test"].to_state() == before


def test_alert_carries_its_evidence_and_a_replay_stable_id() -> None:
    monitor = StreamMonitor.for_claims(CLAIMS, POLICY)
    signals = []
    for o in _positives(0.5, 400, seed=5):
        signals += monitor.observe(o)
        if signals:
            break
    [signal, *_] = signals
    outcome = make_outcome("negative", "positive", 0)
    now = datetime(2026, 4, 1, tzinfo=UTC)
    alert = alert_for(outcome.stream, signal, monitor, now)
    assert alert == alert_for(outcome.stream, signal, monitor, now)
    assert alert.evidence["false_negatives"] == monitor.false_negatives
    assert alert.evidence["stream_predictions"] == monitor.predictions  # where it fired
    assert alert.statistic >= alert.threshold
    assert "below the acceptable 0.872 (point_estimate of the registered 0.872)" in alert.message


def _routed(score: float, offset: int) -> tuple[Prediction, JoinPosition]:
    position = JoinPosition(topic="pms.predictions.v1", partition=0, offset=offset, rank=0)
    return make_prediction(score=score), position


def test_completeness_is_outcomes_over_predictions() -> None:
    monitor = StreamMonitor.for_claims(CLAIMS, POLICY)
    for offset in range(4):
        monitor.observe_prediction(*_routed(0.5, offset))
    monitor.observe(make_outcome("positive", "positive", 0))
    assert monitor.followup_completeness == 0.25


def test_score_drift_starts_after_the_reference_and_fires_on_a_shift() -> None:
    policy = MonitorPolicy(score_reference_cases=1000, score_window=200, arl0_cases=5000)
    monitor = StreamMonitor.for_claims({}, policy)
    rng = np.random.default_rng(4)
    before = rng.beta(2, 5, 3000)
    after = rng.beta(5, 2, 400)
    fired_at = [
        i
        for i, score in enumerate(np.concatenate([before, after]))
        if monitor.observe_prediction(*_routed(float(score), i))
    ]
    assert "score_drift" in monitor.detectors
    assert fired_at and fired_at[0] >= 3000


def test_reader_agreement_is_cohens_kappa_of_the_blinded_read_pairs() -> None:
    from sklearn.metrics import cohen_kappa_score

    rng = np.random.default_rng(5)
    truth = rng.random(300) < 0.3
    first = np.where(rng.random(300) < 0.9, truth, ~truth)
    second = np.where(rng.random(300) < 0.85, truth, ~truth)
    monitor = StreamMonitor.for_claims(CLAIMS, POLICY)
    assert monitor.reader_agreement() is None
    for offset, (a, b) in enumerate(zip(first, second, strict=True)):
        reads = ("positive" if a else "negative", "positive" if b else "negative")
        outcome = make_outcome("positive", "positive", offset)
        monitor.observe(outcome.model_copy(update={"blinded_reads": reads}))
    monitor.observe(make_outcome("positive", "positive", 300))  # no reads: not a pair
    agreement = monitor.reader_agreement()
    assert agreement is not None and agreement.n_subjects == 300
    assert agreement.kappa == pytest.approx(cohen_kappa_score(first, second), abs=1e-12)
    assert agreement.lower < agreement.kappa < agreement.upper
    restored = StreamMonitor.from_states(*json.loads(json.dumps(monitor.to_states())))
    assert restored.reader_pairs == monitor.reader_pairs


def test_a_state_written_before_reader_pairs_still_loads() -> None:
    labelled, label_free = StreamMonitor.for_claims(CLAIMS, POLICY).to_states()
    del labelled["reader_pairs"]
    assert StreamMonitor.from_states(labelled, label_free).reader_pairs == [0, 0, 0, 0]


def test_positions_applied_before_batches_load_as_the_first_event_of_their_record() -> None:
    """States written before batches stored (offset, rank); a record then held one event."""
    labelled, label_free = StreamMonitor.for_claims(CLAIMS, POLICY).to_states()
    labelled["applied"] = {"outcome|pms.followups.v1:0": [7, 1]}
    monitor = StreamMonitor.from_states(labelled, label_free)
    at = {"topic": "pms.followups.v1", "partition": 0}
    assert monitor.already_applied("outcome", JoinPosition(**at, offset=7, rank=1))
    # A later event of a batch at a later offset is new; one at an earlier offset is not.
    assert not monitor.already_applied("outcome", JoinPosition(**at, offset=8, rank=0))
    assert monitor.already_applied("outcome", JoinPosition(**at, offset=6, rank=0, index=3))
    # Within one batch record, order is (index, rank): a later event's first outcome is new.
    monitor._mark_applied("outcome", JoinPosition(**at, offset=9, rank=2, index=1))
    assert not monitor.already_applied("outcome", JoinPosition(**at, offset=9, rank=0, index=2))
    assert monitor.already_applied("outcome", JoinPosition(**at, offset=9, rank=5, index=0))


SCANNERS = (
    {"manufacturer": "SIEMENS", "model": "SOMATOM Definition AS+", "kvp_band": "101_120kv"},
    {"manufacturer": "GE MEDICAL SYSTEMS", "model": "Revolution CT", "kvp_band": "101_120kv"},
    {"manufacturer": "Philips", "model": "Ingenuity CT", "kvp_band": "81_100kv"},
)
"""Three CT scanners with long names, so the state-size test sees realistic categories."""


def _busy_stream(predictions: int, policy: MonitorPolicy = POLICY) -> StreamMonitor:
    """A stream past its references, with outcomes from three join partitions."""
    monitor = StreamMonitor.for_claims(CLAIMS, policy)
    rng = np.random.default_rng(11)
    for offset in range(predictions):
        partition = offset % 3
        position = JoinPosition(
            topic="pms.predictions.v1", partition=partition, offset=offset, rank=0
        )
        label = "positive" if rng.random() < 0.3 else "negative"
        decision = (
            label if rng.random() < 0.88 else ("negative" if label == "positive" else "positive")
        )
        score = float(rng.random())
        categories = dict(SCANNERS[int(rng.integers(3))])
        categories["slice_thickness_band"] = "1_2mm" if rng.random() < 0.7 else "about_5mm"
        monitor.observe_score(score, position, decision, categories)  # type: ignore[arg-type]
        outcome = make_outcome(decision, label, offset, partition=partition, score=score)
        monitor.observe(outcome)
    return monitor


def _whole_state(monitor: StreamMonitor, version: int) -> dict[str, Any]:
    """The one-table layout of state versions 1 and 2 (1 also kept detector settings and a
    policy dict)."""
    labelled, label_free = monitor.to_states()
    whole = label_free | labelled | {"state_version": version}
    for part in ("detectors", "applied", "statistics"):
        whole[part] = label_free[part] | labelled[part]
    if version == 1:
        whole["policy"] = dict(zip(POLICY.__dataclass_fields__, labelled["policy"], strict=True))
        whole["detectors"] = {name: d.to_state() for name, d in monitor.detectors.items()}
    return whole


def test_round_trip_with_score_drift_mid_window_gives_the_same_future() -> None:
    policy = MonitorPolicy(score_reference_cases=200, score_window=100, arl0_cases=5000)
    whole = _busy_stream(650, policy)
    split = StreamMonitor.from_states(*json.loads(json.dumps(whole.to_states())))
    assert "score_drift" in split.detectors
    position = JoinPosition(topic="pms.predictions.v1", partition=0, offset=10_000, rank=0)
    assert whole.observe_score(0.9, position) == split.observe_score(0.9, position)
    assert whole.to_states() == split.to_states()


@pytest.mark.parametrize("version", [1, 2])
def test_a_one_table_state_still_loads_with_its_detectors(version: int) -> None:
    monitor = _busy_stream(700)
    whole = json.loads(json.dumps(_whole_state(monitor, version)))
    restored = StreamMonitor.from_states(whole, None)
    assert restored.to_states() == monitor.to_states()


def test_after_an_upgrade_the_newer_label_free_state_wins() -> None:
    monitor = _busy_stream(700)
    whole = json.loads(json.dumps(_whole_state(monitor, 2)))
    position = JoinPosition(topic="pms.predictions.v1", partition=0, offset=10_000, rank=0)
    monitor.observe_score(0.4, position, "negative", {})
    restored = StreamMonitor.from_states(whole, monitor.state_of("prediction"))
    assert restored.predictions == 701
    assert restored.already_applied("prediction", position)
    assert restored.to_states() == monitor.to_states()


@pytest.mark.parametrize("predictions", [700, 2500, 6000])
def test_each_part_of_a_stream_state_stays_under_two_kib(predictions: int) -> None:
    """In the first window past the reference, while it grows, and past its growth."""
    labelled, label_free = _busy_stream(predictions).to_states()
    assert len(json.dumps(labelled)) < 2048
    assert len(json.dumps(label_free)) < 2048


def test_routed_scores_count_like_predictions() -> None:
    by_prediction = StreamMonitor.for_claims(CLAIMS, POLICY)
    by_score = StreamMonitor.for_claims(CLAIMS, POLICY)
    for offset in range(5):
        prediction, position = _routed(0.3, offset)
        by_prediction.observe_prediction(prediction, position)
        categories = acquisition_categories(prediction.acquisition)
        by_score.observe_score(prediction.score, position, prediction.decision, categories)
    assert by_prediction.to_states() == by_score.to_states()
