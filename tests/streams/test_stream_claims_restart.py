"""A claims test that rejected restarts once a decision shows the stream was reviewed, with the
CUSUMs that alarmed; each restart is a new test, and the budget's alpha pays for them."""

from __future__ import annotations

import json
import uuid

import numpy as np
import pytest

from detectors import BetaBinomialConfidenceSequence
from postmarket import topics
from postmarket.contracts import Outcome
from postmarket.contracts.events import JoinPosition
from streams.charted_claims import claimed_lower_bounds, claimed_performance
from streams.false_alarm_budget import FleetBudget
from streams.monitor_policy import TESTS_PER_STREAM, MonitorPolicy
from streams.stream_monitor import StreamMonitor
from tests.factories import make_outcome, make_registry_entry

ENTRY = make_registry_entry()
CLAIMS = claimed_performance(ENTRY, "referable_dr")
LOWER = claimed_lower_bounds(ENTRY, "referable_dr")
POLICY = MonitorPolicy(arl0_cases=5000)


def _positives(sensitivity: float, n: int, seed: int, start: int = 0) -> list[Outcome]:
    rng = np.random.default_rng(seed)
    return [
        make_outcome("positive" if hit else "negative", "positive", start + i)
        for i, hit in enumerate(rng.random(n) < sensitivity)
    ]


def _decision(offset: int) -> JoinPosition:
    return JoinPosition(topic=topics.REBASELINES, partition=0, offset=offset, rank=0)


def _fired(monitor: StreamMonitor, outcomes: list[Outcome]) -> list[str]:
    return [signal.detector for outcome in outcomes for signal in monitor.observe(outcome)]


def _rejected_stream() -> tuple[StreamMonitor, list[str]]:
    """A stream at sensitivity 0.55 (acceptable 0.818) whose claims test rejected and whose
    CUSUM alarmed, with a few cases charted since."""
    monitor = StreamMonitor.for_claims(CLAIMS, POLICY, None, LOWER)
    fired = _fired(monitor, _positives(0.55, 400, seed=5))
    assert "sensitivity_claims_test" in fired and "sensitivity_cusum" in fired
    return monitor, fired


def test_a_decision_restarts_the_rejected_claims_test_which_can_reject_again() -> None:
    monitor, _ = _rejected_stream()
    assert monitor.rebaseline(uuid.uuid4(), _decision(0))
    test = monitor.detectors["sensitivity_claims_test"]
    assert isinstance(test, BetaBinomialConfidenceSequence)
    assert (
        test.verdict == "consistent"
        and test.to_state() == test.__class__(**test.settings()).to_state()
    )
    assert monitor.claims_restarts == 1
    later = _fired(monitor, _positives(0.55, 400, seed=6, start=400))
    assert "sensitivity_claims_test" in later


def test_a_decision_restarts_the_cusum_that_alarmed_from_zero() -> None:
    monitor, _ = _rejected_stream()
    chart = monitor.detectors["sensitivity_cusum"]
    assert any(chart.to_state()["state"]["s"])  # summing again since its alarm
    monitor.rebaseline(uuid.uuid4(), _decision(0))
    assert chart.to_state() == chart.__class__(**chart.settings()).to_state()
    assert "sensitivity_cusum" not in monitor.change_starts


def test_a_decision_keeps_a_cusum_that_did_not_alarm() -> None:
    monitor, _ = _rejected_stream()
    negatives = [make_outcome("positive", "negative", 400 + i) for i in range(2)]
    assert not _fired(monitor, negatives)  # two false positives: the specificity chart sums
    specificity = monitor.detectors["specificity_cusum"].to_state()
    assert any(specificity["state"]["s"])
    assert monitor.restart_after_review() == ["sensitivity_claims_test", "sensitivity_cusum"]
    assert monitor.detectors["specificity_cusum"].to_state() == specificity


def test_a_decision_without_a_rejection_restarts_no_labelled_test() -> None:
    monitor = StreamMonitor.for_claims(CLAIMS, POLICY, None, LOWER)
    _fired(monitor, _positives(0.80, 300, seed=7))
    labelled = json.dumps(monitor.labelled_state())
    assert monitor.rebaseline(uuid.uuid4(), _decision(0))
    assert monitor.restart_after_review() == []
    assert json.dumps(monitor.labelled_state()) == labelled


def test_what_a_decision_would_restart_survives_the_state_round_trip() -> None:
    monitor, _ = _rejected_stream()
    labelled, label_free = json.loads(json.dumps(monitor.to_states()))
    assert labelled["alarmed_charts"] == ["sensitivity_cusum"]
    restored = StreamMonitor.from_states(labelled, label_free)
    assert restored.restart_after_review() == ["sensitivity_claims_test", "sensitivity_cusum"]


def test_a_new_surveillance_year_forgets_the_alarms_of_the_last() -> None:
    monitor, _ = _rejected_stream()
    next_year = make_outcome("positive", "positive", 900, event_time=_a_year_after(monitor))
    monitor.observe(next_year)
    assert monitor.alarmed_charts == set()
    assert monitor.restart_after_review() == []  # the year restarted the claims test already


def _a_year_after(monitor: StreamMonitor) -> object:
    from streams.monitor_policy import SURVEILLANCE_YEAR

    assert monitor.claims_year_start is not None
    return monitor.claims_year_start + SURVEILLANCE_YEAR


@pytest.mark.parametrize("false_alarms_per_year", [10.0, 100.0, 400.0])
def test_a_claims_test_and_all_its_restarts_expect_at_most_its_share_a_year(
    false_alarms_per_year: float,
) -> None:
    # A restart follows a rejection and each new test rejects with probability at most
    # alpha given the past, so a year holds at most alpha + alpha^2 + ... = alpha / (1 -
    # alpha) false rejections in expectation: that must be the test's share.
    budget = FleetBudget(false_alarms_per_year, 100, 10_000, 0.8)
    share = budget.share_per_test(TESTS_PER_STREAM)
    alpha = budget.alpha(TESTS_PER_STREAM)
    assert share < 1.0
    assert alpha / (1 - alpha) == pytest.approx(share, rel=1e-12)


def test_the_policys_claims_tests_use_the_budgets_alpha() -> None:
    policy = MonitorPolicy(fleet_false_alarms_per_year=10.0, fleet_streams=100)
    test = StreamMonitor.for_claims(CLAIMS, policy, None, LOWER).detectors[
        "sensitivity_claims_test"
    ]
    share = policy.budget().share_per_test(TESTS_PER_STREAM)  # type: ignore[union-attr]
    assert isinstance(test, BetaBinomialConfidenceSequence)
    assert test.alpha == pytest.approx(share / (1 + share), rel=1e-12)
