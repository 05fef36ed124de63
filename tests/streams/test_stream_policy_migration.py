"""A stream stored before policies had a fleet budget (the seven-field policy of state version
3: every test at ARL0 5,000 cases, every claims test at alpha 0.05) moves to the plan's
budget on load, keeping its running states; a stream without a plan keeps what it had."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest

from detectors import (
    BernoulliCUSUM,
    BernoulliMultiCUSUM,
    BetaBinomialConfidenceSequence,
    StateError,
    bernoulli_cusum_threshold,
)
from postmarket.contracts import Outcome
from streams.charted_claims import claimed_performance
from streams.monitor_policy import MonitorPolicy
from streams.stream_monitor import StreamMonitor
from tests.factories import make_outcome, make_registry_entry

CLAIMS = claimed_performance(make_registry_entry(), "referable_dr")
OLD_POLICY: list[float | int] = [5000.0, 0.07, 0.05, 0.05, 500, 250, 500]
"""``astuple(MonitorPolicy())`` as the release before the budget stored it: arl0_cases,
sensitivity_drop, specificity_drop, claims_alpha, score_reference_cases, score_window,
estimate_window (``git show c1fcdee^:streams/performance.py``)."""
OLD = MonitorPolicy(
    arl0_cases=5000.0,
    sensitivity_drop=0.07,
    specificity_drop=0.05,
    claims_alpha=0.05,
    score_reference_cases=500,
    score_window=250,
    estimate_window=500,
)
"""The same policy as this release reads it (the fields after these at their defaults)."""
PLAN = MonitorPolicy(
    fleet_false_alarms_per_year=10.0,
    fleet_streams=100,
    stream_predictions_per_year=10_000.0,
    followup_completeness=0.8,
    fleet_pooled_groups=10,
)
OLD_KEYS_ADDED_SINCE = ("claim_lower_bounds", "claims_year_start", "unmonitored_raised")


def _positives(sensitivities: list[tuple[float, int]], seed: int) -> list[Outcome]:
    rng = np.random.default_rng(seed)
    hits = np.concatenate([rng.random(n) < s for s, n in sensitivities])
    return [
        make_outcome("positive" if hit else "negative", "positive", i) for i, hit in enumerate(hits)
    ]


def _old_states(outcomes: list[Outcome]) -> tuple[dict[str, Any], dict[str, Any]]:
    """The stream's two states in the layout the release before the budget wrote: version 3,
    the seven-field policy, no lower bounds (charted at the point estimate, 0.872), and its
    sensitivity chart one Bernoulli CUSUM at ARL0 5,000 tuned to 0.872 - 0.07."""
    monitor = StreamMonitor.for_claims(CLAIMS, OLD)
    p0, p1 = 1 - 0.872, 1 - 0.802
    old_chart = BernoulliCUSUM(p0, p1, bernoulli_cusum_threshold(p0, p1, 5000.0))
    for outcome in outcomes:
        monitor.observe(outcome)
        old_chart.update(1.0 if outcome.decision == "negative" else 0.0)
    labelled, label_free = json.loads(json.dumps(monitor.to_states()))
    for state in (labelled, label_free):
        state["state_version"] = 3
        state["policy"] = list(OLD_POLICY)
        for key in OLD_KEYS_ADDED_SINCE:
            state.pop(key, None)
    labelled["detectors"]["sensitivity_cusum"] = old_chart.to_state()["state"]
    labelled["detectors"]["specificity_cusum"] = {
        "s": 0,
        "n_cases": 0,
        "n_events": 0,
        "run_length": 0,
    }
    return labelled, label_free


def test_an_old_stream_loaded_with_the_plan_takes_the_plans_budget() -> None:
    labelled, label_free = _old_states(_positives([(0.872, 300), (0.70, 30)], seed=4))
    monitor = StreamMonitor.from_states(labelled, label_free, plan=PLAN)
    assert monitor.policy.budget() == PLAN.budget()
    chart = monitor.detectors["sensitivity_cusum"]
    assert isinstance(chart, BernoulliMultiCUSUM)
    target = PLAN.test_arl0("positives")
    assert target == pytest.approx(188_000)  # 10,000 x 0.8 x 0.25 / (10 / 940)
    assert chart.arl0 >= target  # exact (Bonferroni) design at the budget, not 5,000
    claims_test = monitor.detectors["sensitivity_claims_test"]
    assert isinstance(claims_test, BetaBinomialConfidenceSequence)
    assert claims_test.alpha == PLAN.test_alpha() < 0.05


def test_what_shaped_the_running_states_is_kept() -> None:
    labelled, label_free = _old_states(_positives([(0.872, 300)], seed=4))
    policy = StreamMonitor.from_states(labelled, label_free, plan=PLAN).policy
    kept = OLD
    assert (policy.sensitivity_drop, policy.specificity_drop) == (0.07, 0.05)
    assert (policy.score_reference_cases, policy.score_window, policy.estimate_window) == (
        kept.score_reference_cases,
        kept.score_window,
        kept.estimate_window,
    )


def test_the_run_under_way_is_carried_into_the_budgeted_chart() -> None:
    labelled, label_free = _old_states(_positives([(0.872, 300), (0.60, 25)], seed=4))
    as_before = StreamMonitor.from_states(labelled, label_free)  # no plan: ARL0 5,000
    assert as_before.policy.budget() is None and as_before.policy.arl0_cases == 5000.0
    budgeted = StreamMonitor.from_states(labelled, label_free, plan=PLAN)
    sums = budgeted.detectors["sensitivity_cusum"].to_state()["state"]["s"]
    assert any(sums)
    assert sums == as_before.detectors["sensitivity_cusum"].to_state()["state"]["s"]
    assert (
        budgeted.detectors["sensitivity_claims_test"].to_state()["state"]
        == as_before.detectors["sensitivity_claims_test"].to_state()["state"]
    )


def test_the_migrated_stream_is_written_in_the_budget_layout_and_stays_migrated() -> None:
    labelled, label_free = _old_states(_positives([(0.872, 300)], seed=4))
    monitor = StreamMonitor.from_states(labelled, label_free, plan=PLAN)
    written = json.loads(json.dumps(monitor.to_states()))
    again = StreamMonitor.from_states(*written)  # no plan needed any more
    assert again.policy == monitor.policy


def test_a_stream_whose_policy_chose_no_budget_is_not_moved() -> None:
    current_without_budget = MonitorPolicy(arl0_cases=20_000.0)
    monitor = StreamMonitor.for_claims(CLAIMS, current_without_budget)
    for outcome in _positives([(0.872, 50)], seed=4):
        monitor.observe(outcome)
    labelled, label_free = json.loads(json.dumps(monitor.to_states()))
    restored = StreamMonitor.from_states(labelled, label_free, plan=PLAN)
    assert restored.policy == current_without_budget


def test_a_claims_test_past_a_looser_plans_threshold_is_refused_clearly() -> None:
    # A plan whose alpha (0.5) is looser than the old 0.05: evidence between the two
    # thresholds would be a rejection never raised, so the state is refused, not guessed.
    loose = MonitorPolicy(fleet_false_alarms_per_year=1e6, fleet_streams=1)
    outcomes = _positives([(0.872, 100)], seed=4)
    labelled, label_free = _old_states(outcomes)
    test = BetaBinomialConfidenceSequence(1 - 0.872, 0.05, alternative="greater")
    while test.update(1).statistic < 1.0:  # log evidence past log 2, below log 20
        pass
    state = test.to_state()["state"]
    assert not state["rejected"]
    labelled["detectors"]["sensitivity_claims_test"] = state
    with pytest.raises(StateError, match="predates the fleet budget"):
        StreamMonitor.from_states(labelled, label_free, plan=loose)


def test_a_run_past_a_lower_threshold_of_the_plan_is_kept_just_below_it() -> None:
    # A plan whose ARL0 (1,000 positives) is below the old 5,000: the run the old chart
    # summed would sit past the new thresholds, so each sum is kept just below its own.
    small = MonitorPolicy(fleet_false_alarms_per_year=1_000.0, fleet_streams=1)
    assert small.test_arl0("positives") == 1000.0
    outcomes = _positives([(0.872, 300)], seed=4)
    old_chart = BernoulliCUSUM(1 - 0.872, 1 - 0.802, bernoulli_cusum_threshold(0.128, 0.198, 5000))
    for outcome in outcomes:
        old_chart.update(1.0 if outcome.decision == "negative" else 0.0)
    misses = 0
    while old_chart.update(1).statistic + 1.0 < old_chart.h:  # misses until one short of h
        misses += 1
    miss = [make_outcome("negative", "positive", 300 + i) for i in range(misses)]
    labelled, label_free = _old_states(outcomes + miss)
    labelled["detectors"].pop("sensitivity_claims_test")  # starts fresh: not at issue here
    as_before = StreamMonitor.from_states(labelled, label_free)
    budgeted = StreamMonitor.from_states(labelled, label_free, plan=small)
    chart = budgeted.detectors["sensitivity_cusum"]
    assert isinstance(chart, BernoulliMultiCUSUM)
    old_sums = as_before.detectors["sensitivity_cusum"].to_state()["state"]["s"]
    sums = chart.to_state()["state"]["s"]
    limits = [s + 1 for s in chart.running_state_below_thresholds({
        "s": [10**9] * len(sums), "run_lengths": [1] * len(sums),
        "n_cases": 1, "n_events": 1,
    })["s"]]  # fmt: skip
    assert any(old >= limit for old, limit in zip(old_sums, limits, strict=True))
    assert sums == [min(old, limit - 1) for old, limit in zip(old_sums, limits, strict=True)]
