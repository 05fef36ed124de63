"""A labelled CUSUM's alert says when the change began: the event time of the case after the
CUSUM that fired last sat at zero (Page's estimate), kept in the stream's state."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import numpy as np

from postmarket.contracts import Outcome
from postmarket.contracts.events import Alert
from streams.alerting import alert_for
from streams.charted_claims import claimed_performance
from streams.monitor_policy import MonitorPolicy
from streams.stream_monitor import Signal, StreamMonitor
from tests.factories import make_outcome, make_registry_entry

POLICY = MonitorPolicy(arl0_cases=5000)
CLAIMS = claimed_performance(make_registry_entry(), "referable_dr")
START = datetime(2026, 1, 1, tzinfo=UTC)


def _positives(sensitivities: list[tuple[float, int]], seed: int) -> list[Outcome]:
    """Referable cases one hour apart, case ``i`` at ``START + i`` hours."""
    rng = np.random.default_rng(seed)
    hits = np.concatenate([rng.random(n) < s for s, n in sensitivities])
    return [
        make_outcome(
            "positive" if hit else "negative",
            "positive",
            i,
            event_time=START + timedelta(hours=i),
        )
        for i, hit in enumerate(hits)
    ]


def _first_cusum_signal(monitor: StreamMonitor, outcomes: list[Outcome]) -> tuple[int, Signal]:
    for i, outcome in enumerate(outcomes):
        for signal in monitor.observe(outcome):
            if signal.detector == "sensitivity_cusum":
                return i, signal
    raise AssertionError("the chart never fired")


def test_a_cusum_signal_carries_the_event_time_of_the_case_after_its_last_zero() -> None:
    outcomes = _positives([(0.872, 600), (0.65, 600)], seed=3)
    fired_at, signal = _first_cusum_signal(StreamMonitor.for_claims(CLAIMS, POLICY), outcomes)
    began = fired_at - signal.result.run_length + 1  # the case after the last zero
    assert fired_at >= 600 and signal.result.run_length > 0
    assert signal.change_began_at == outcomes[began].prediction_time


def test_the_run_start_survives_the_streams_state_round_trip() -> None:
    outcomes = _positives([(0.872, 600), (0.65, 600)], seed=3)
    fired_at, expected = _first_cusum_signal(StreamMonitor.for_claims(CLAIMS, POLICY), outcomes)
    monitor = StreamMonitor.for_claims(CLAIMS, POLICY)
    split = fired_at - 3  # the run under way, three cases before the alarm
    for outcome in outcomes[:split]:
        monitor.observe(outcome)
    labelled, label_free = json.loads(json.dumps(monitor.to_states()))
    restored = StreamMonitor.from_states(labelled, label_free)
    _, signal = _first_cusum_signal(restored, outcomes[split:])
    assert signal.change_began_at == expected.change_began_at is not None


def test_a_run_under_way_in_a_state_that_did_not_keep_its_start_has_an_unknown_start() -> None:
    outcomes = _positives([(0.872, 600), (0.65, 600)], seed=3)
    fired_at, expected = _first_cusum_signal(StreamMonitor.for_claims(CLAIMS, POLICY), outcomes)
    monitor = StreamMonitor.for_claims(CLAIMS, POLICY)
    split = fired_at - 3
    for outcome in outcomes[:split]:
        monitor.observe(outcome)
    labelled, label_free = json.loads(json.dumps(monitor.to_states()))
    assert labelled.pop("change_starts")  # as the release before wrote it
    _, signal = _first_cusum_signal(
        StreamMonitor.from_states(labelled, label_free), outcomes[split:]
    )
    assert signal.result == expected.result  # the same alarm, its start's time unknown
    assert signal.change_began_at is None


def test_the_alert_carries_the_estimate_and_its_message_says_it() -> None:
    outcomes = _positives([(0.872, 600), (0.65, 600)], seed=3)
    monitor = StreamMonitor.for_claims(CLAIMS, POLICY)
    fired_at, signal = _first_cusum_signal(monitor, outcomes)
    alert = alert_for(outcomes[0].stream, signal, monitor, datetime(2026, 3, 1, tzinfo=UTC))
    assert alert.change_began_at == signal.change_began_at is not None
    assert alert.evidence["run_length"] == signal.result.run_length
    assert f"the change began {signal.result.run_length} charted cases back" in alert.message
    assert f"{signal.change_began_at:%Y-%m-%d %H:%M}" in alert.message
    assert Alert.model_validate_json(alert.model_dump_json()) == alert


def test_an_alert_without_the_estimate_is_written_and_read_as_before() -> None:
    outcomes = _positives([(0.872, 600), (0.65, 600)], seed=3)
    monitor = StreamMonitor.for_claims(CLAIMS, POLICY)
    _, signal = _first_cusum_signal(monitor, outcomes)
    alert = alert_for(outcomes[0].stream, signal, monitor, datetime(2026, 3, 1, tzinfo=UTC))
    old = alert.model_copy(update={"change_began_at": None})
    wire = json.loads(old.model_dump_json())
    assert "change_began_at" not in wire  # what a reader from before the field accepts
    assert Alert.model_validate_json(json.dumps(wire)).change_began_at is None
