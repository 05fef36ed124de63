"""A case the monitor refuses changes nothing: ``observe`` and ``observe_score`` apply a case
whole or not at all, so a caller can dead-letter it and carry on with the monitor it holds."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from postmarket.contracts import Outcome
from postmarket.contracts.events import JoinPosition
from streams.charted_claims import claimed_lower_bounds, claimed_performance
from streams.monitor_policy import ClaimedMetric, MonitorPolicy
from streams.stream_monitor import StreamMonitor
from tests.factories import make_outcome, make_registry_entry

POLICY = MonitorPolicy(score_reference_cases=20, score_window=10, estimate_window=10)
ENTRY = make_registry_entry()
CLAIMS = claimed_performance(ENTRY, "referable_dr")
BOUNDS = claimed_lower_bounds(ENTRY, "referable_dr")
UNMONITORABLE: dict[ClaimedMetric, float] = {"sensitivity": 0.999999, "specificity": 0.907}
"""A sensitivity no chart can monitor: the stream's first event raises it (a flag it keeps)."""


def _at(offset: int) -> JoinPosition:
    return JoinPosition(topic="pms.predictions.v1", partition=0, offset=offset, rank=0)


def _running(claims: dict[ClaimedMetric, float], reference_complete: bool) -> StreamMonitor:
    """A stream part-way through its charts, its windows and (if asked) past its reference."""
    bounds: dict[ClaimedMetric, float] = {"sensitivity": 0.9999, "specificity": 0.877}
    monitor = StreamMonitor.for_claims(claims, POLICY, None, BOUNDS if claims == CLAIMS else bounds)
    for offset in range(7):  # misses: the sensitivity chart is in a run
        monitor.observe(make_outcome("negative", "positive", offset))
    predictions = POLICY.score_reference_cases + 3 if reference_complete else 5
    for offset in range(predictions):
        monitor.observe_score(0.2 + offset / 100, _at(offset), "negative", {"model": "A"})
    monitor.unmonitored_raised = False
    return monitor


def _stored(monitor: StreamMonitor) -> tuple[str, bool]:
    return json.dumps(monitor.to_states(), sort_keys=True), monitor.unmonitored_raised


def _bad_score(outcome: Outcome, score: float) -> Outcome:
    """The outcome with a score its contract would refuse (copied without validation)."""
    return outcome.model_copy(update={"score": score})


STREAMS = [
    pytest.param(CLAIMS, True, id="claims-reference-complete"),
    pytest.param(CLAIMS, False, id="claims-reference-filling"),
    pytest.param(UNMONITORABLE, True, id="unmonitored-metric"),
]


@pytest.mark.parametrize(("claims", "reference_complete"), STREAMS)
@pytest.mark.parametrize("score", [1.5, -0.1, math.nan, math.inf])
def test_an_outcome_whose_score_is_refused_changes_nothing(
    claims: dict[ClaimedMetric, float], reference_complete: bool, score: float
) -> None:
    monitor = _running(claims, reference_complete)
    before = _stored(monitor)
    with pytest.raises(ValueError):
        monitor.observe(_bad_score(make_outcome("negative", "positive", 100), score))
    assert _stored(monitor) == before


def test_an_outcome_at_a_time_the_stream_cannot_compare_changes_nothing() -> None:
    monitor = _running(CLAIMS, reference_complete=True)
    before = _stored(monitor)
    outcome = make_outcome("negative", "positive", 100)
    naive = outcome.model_copy(
        update={"prediction_time": outcome.prediction_time.replace(tzinfo=None)}
    )
    with pytest.raises(ValueError):
        monitor.observe(naive)
    assert _stored(monitor) == before


def test_a_refused_outcome_leaves_the_monitor_to_apply_the_next_as_if_it_never_came() -> None:
    refused, untouched = _running(CLAIMS, True), _running(CLAIMS, True)
    with pytest.raises(ValueError):
        refused.observe(_bad_score(make_outcome("negative", "positive", 100), 2.0))
    following = [make_outcome("negative", "positive", 101 + i) for i in range(40)]
    assert [refused.observe(o) for o in following] == [untouched.observe(o) for o in following]
    assert _stored(refused) == _stored(untouched)


NOT_PROBABILITIES = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True).filter(lambda x: not 0.0 <= x <= 1.0),
    st.sampled_from([math.nan, math.inf, -math.inf, 1.0000001, -1e-12]),
)


@settings(max_examples=60, deadline=None)
@given(
    score=NOT_PROBABILITIES,
    stream=st.sampled_from([(CLAIMS, True), (CLAIMS, False), (UNMONITORABLE, True)]),
    decision=st.sampled_from(["positive", "negative", None]),
    categories=st.sampled_from([None, {"model": "A"}, {"model": "B"}]),
)
def test_a_score_that_is_no_probability_is_refused_and_changes_nothing(
    score: float,
    stream: tuple[dict[ClaimedMetric, float], bool],
    decision: str | None,
    categories: Any,
) -> None:
    monitor = _running(*stream)
    before = _stored(monitor)
    with pytest.raises(ValueError):
        monitor.observe_score(score, _at(1000), decision, categories)
    assert _stored(monitor) == before
    assert not monitor.already_applied("prediction", _at(1000))
