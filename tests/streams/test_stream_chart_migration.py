"""A stream stored by the release that charted one Bernoulli CUSUM per metric (state version 3)
loads with its chart migrated to the multi-chart CUSUM, keeping the run under way."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest

from detectors import BernoulliCUSUM, BernoulliMultiCUSUM, bernoulli_cusum_threshold
from postmarket.contracts import Outcome
from streams.charted_claims import claimed_lower_bounds, claimed_performance
from streams.monitor_policy import MonitorPolicy
from streams.stream_monitor import StreamMonitor
from streams.stream_state import STATE_VERSION
from tests.factories import make_outcome, make_registry_entry

ENTRY = make_registry_entry()
CLAIMS = claimed_performance(ENTRY, "referable_dr")
LOWER = claimed_lower_bounds(ENTRY, "referable_dr")
POLICY = MonitorPolicy(arl0_cases=5000.0)


def _positives(sensitivities: list[tuple[float, int]], seed: int) -> list[Outcome]:
    rng = np.random.default_rng(seed)
    hits = np.concatenate([rng.random(n) < s for s, n in sensitivities])
    return [
        make_outcome("positive" if hit else "negative", "positive", i) for i, hit in enumerate(hits)
    ]


def _old_chart() -> BernoulliCUSUM:
    """The sensitivity chart the release before designed: tuned to the rejectable level."""
    p0, p1 = 1 - 0.818, 1 - 0.748
    return BernoulliCUSUM(p0, p1, bernoulli_cusum_threshold(p0, p1, 5000.0))


def _version_3_states(outcomes: list[Outcome]) -> tuple[dict[str, Any], dict[str, Any], int]:
    """The stream's states as the release before wrote them, and the case of its chart's
    last restart (its last zero, or its last alarm)."""
    monitor = StreamMonitor.for_claims(CLAIMS, POLICY, None, LOWER)
    old, restart = _old_chart(), 0
    for i, outcome in enumerate(outcomes):
        monitor.observe(outcome)
        result = old.update(1.0 if outcome.decision == "negative" else 0.0)
        restart = i + 1 if result.fired or result.run_length == 0 else restart
    labelled, label_free = json.loads(json.dumps(monitor.to_states()))
    labelled["state_version"] = label_free["state_version"] = 3
    labelled["detectors"]["sensitivity_cusum"] = old.to_state()["state"]
    labelled["detectors"]["specificity_cusum"] = {
        "s": 0,
        "n_cases": 0,
        "n_events": 0,
        "run_length": 0,
    }
    return labelled, label_free, restart


def _sums(monitor: StreamMonitor, name: str = "sensitivity_cusum") -> list[int]:
    return list(monitor.detectors[name].to_state()["state"]["s"])


def test_a_version_3_stream_loads_with_the_run_under_way_carried_into_every_cusum() -> None:
    outcomes = _positives([(0.818, 400), (0.70, 40)], seed=21)
    labelled, label_free, restart = _version_3_states(outcomes)
    assert labelled["detectors"]["sensitivity_cusum"]["run_length"] > 0  # a run under way
    restored = StreamMonitor.from_states(labelled, label_free)
    chart = restored.detectors["sensitivity_cusum"]
    assert isinstance(chart, BernoulliMultiCUSUM)
    run = labelled["detectors"]["sensitivity_cusum"]["run_length"]
    misses = sum(o.decision == "negative" for o in outcomes[-run:])
    expected = [max(0, misses * m - a * run) for a, m in zip(chart._a, chart._m, strict=True)]
    assert _sums(restored) == expected and any(expected)
    # Never more than the chart would hold run over the same cases since the old restart:
    fresh = StreamMonitor.for_claims(CLAIMS, POLICY, None, LOWER)
    for outcome in outcomes[restart:]:
        fresh.observe(outcome)
    assert all(m <= f for m, f in zip(_sums(restored), _sums(fresh), strict=True))
    assert _sums(restored, "specificity_cusum") == [0, 0, 0]
    assert restored.to_states().labelled["state_version"] == STATE_VERSION == 4


def test_the_migrated_stream_detects_the_drop_no_later_than_a_restarted_chart() -> None:
    outcomes = _positives([(0.818, 400), (0.65, 400)], seed=22)
    labelled, label_free, _ = _version_3_states(outcomes[:440])
    migrated = StreamMonitor.from_states(labelled, label_free)
    restarted = StreamMonitor.from_states(labelled, label_free)
    restarted.detectors["sensitivity_cusum"].reset()

    def first_alarm(monitor: StreamMonitor) -> int:
        return next(
            i
            for i, o in enumerate(outcomes[440:])
            if any(s.detector == "sensitivity_cusum" for s in monitor.observe(o))
        )

    assert first_alarm(migrated) <= first_alarm(restarted)


def test_a_single_cusum_state_no_such_chart_can_reach_is_refused() -> None:
    labelled, label_free, _ = _version_3_states(_positives([(0.818, 50)], seed=23))
    # s must be m x (events in the run) - a x (its length): one case cannot give 999
    labelled["detectors"]["sensitivity_cusum"] = {
        "s": 999,
        "n_cases": 50,
        "n_events": 10,
        "run_length": 1,
    }
    with pytest.raises(ValueError, match="BernoulliCUSUM"):
        StreamMonitor.from_states(labelled, label_free)
