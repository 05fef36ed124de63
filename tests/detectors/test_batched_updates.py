"""Batched updates (``update_counts``) of the charts the pooled stage runs: the claims test's
evidence is the per-case one at the batch's end, and the batched multi-chart CUSUM never holds
more than the case-by-case chart fed the same cases in any order, so it alarms no earlier."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from detectors import BernoulliMultiCUSUM, BetaBinomialConfidenceSequence

Batches = list[tuple[int, int]]


def chart() -> BernoulliMultiCUSUM:
    return BernoulliMultiCUSUM.for_arl0(0.182, 2_000, p1_min=0.20, p1_max=0.40)


batches = st.lists(
    st.integers(1, 30).flatmap(lambda n: st.tuples(st.just(n), st.integers(0, n))),
    min_size=1,
    max_size=40,
)


@settings(max_examples=80, deadline=None)
@given(batches=batches, seed=st.integers(0, 2**32 - 1))
def test_the_batched_chart_never_holds_more_than_the_case_by_case_one(
    batches: Batches, seed: int
) -> None:
    rng = random.Random(seed)  # noqa: S311 - seeded test data
    batched, per_case = chart(), chart()
    for cases, events in batches:
        order = [1] * events + [0] * (cases - events)
        rng.shuffle(order)
        fired_inside = False
        for x in order:
            fired_inside = per_case.update(x).fired or fired_inside
        result = batched.update_counts(cases, events)
        if fired_inside or result.fired:
            assert fired_inside  # the batched chart never fires first
            return
        batched_s = batched.to_state()["state"]["s"]
        per_case_s = per_case.to_state()["state"]["s"]
        assert all(b <= p for b, p in zip(batched_s, per_case_s, strict=True))


@settings(max_examples=60, deadline=None)
@given(batches=batches)
def test_the_batched_claims_test_has_the_per_case_evidence_at_each_batch_end(
    batches: Batches,
) -> None:
    batched = BetaBinomialConfidenceSequence(0.182, alternative="greater")
    per_case = BetaBinomialConfidenceSequence(0.182, alternative="greater")
    for cases, events in batches:
        result = batched.update_counts(cases, events)
        for x in [1] * events + [0] * (cases - events):
            expected = per_case.update(x)
        assert result.statistic == pytest.approx(expected.statistic, abs=1e-9)
        assert (result.n_cases, result.n_events) == (expected.n_cases, expected.n_events)
        if result.fired:
            assert per_case.verdict == "below claim"


def test_a_batched_state_restores_and_a_batch_with_more_events_than_cases_is_refused() -> None:
    batched = chart()
    batched.update_counts(20, 9)
    restored = BernoulliMultiCUSUM.from_state(batched.to_state())
    assert restored.to_state() == batched.to_state()
    for detector in (chart(), BetaBinomialConfidenceSequence(0.182)):
        with pytest.raises(ValueError, match="exceeds"):
            detector.update_counts(3, 4)
        with pytest.raises(ValueError, match="cases"):
            detector.update_counts(0, 0)
