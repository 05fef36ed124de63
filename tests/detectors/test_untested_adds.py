"""A tumbling-window test takes the cases before its next test at once (``add_untested``):
the same state and the same results as taking them one by one, refused whole otherwise.

The stream monitor adds a record's predictions so (``StreamMonitor.observe_scores``); each
class's one-by-one ``update`` is the reference here."""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from detectors import Detector, DetectorResult, WindowedPerformanceEstimate
from detectors.base import TumblingWindow
from tests.detectors.conftest import DETECTOR_CASES, VARIANT_CASES, DetectorCase

Case = tuple[float, float | None]
TUMBLING = {
    name: case
    for name, case in [
        *((klass.__name__, case) for klass, case in DETECTOR_CASES.items()),
        *VARIANT_CASES.items(),
    ]
    if hasattr(case.make(), "add_untested")
}


def add_untested(detector: Any, cases: list[Case]) -> DetectorResult:
    xs = [x for x, _risk in cases]
    if isinstance(detector, WindowedPerformanceEstimate):
        return detector.add_untested(xs, [risk for _x, risk in cases])  # type: ignore[misc]
    result: DetectorResult = detector.add_untested(xs)
    return result


def feed_in_runs(detector: Any, cases: list[Case], runs: list[int]) -> list[DetectorResult]:
    """Each case's result: runs of up to ``runs[i]`` cases added untested (as many as the
    window takes before its test), the case that completes a window updated alone."""
    results: list[DetectorResult] = []
    at, turn = 0, 0
    while at < len(cases):
        run = min(runs[turn % len(runs)], detector.cases_before_test(), len(cases) - at)
        turn += 1
        if run < 1:
            x, risk = cases[at]
            results.append(detector.update(x, risk=risk))
            at += 1
            continue
        last = add_untested(detector, cases[at : at + run])
        results += [None] * (run - 1) + [last]  # type: ignore[list-item]
        at += run
    return results


def one_by_one(detector: Detector, cases: list[Case]) -> list[DetectorResult]:
    return [detector.update(x, risk=risk) for x, risk in cases]


def same_run(runs: list[DetectorResult | None], alone: list[DetectorResult]) -> None:
    """Every result given (a run's last, each case updated alone) is the one-by-one one."""
    assert len(runs) == len(alone)
    for got, expected in zip(runs, alone, strict=True):
        if got is not None:
            assert got == expected


@pytest.mark.parametrize("name", sorted(TUMBLING))
def test_runs_of_untested_cases_leave_the_state_and_results_of_one_by_one(name: str) -> None:
    case: DetectorCase = TUMBLING[name]
    cases = case.cases(np.random.default_rng(7), 2500)
    runs = [int(n) for n in np.random.default_rng(8).integers(1, 400, size=64)]
    alone, batched = case.make(), case.make()
    expected = one_by_one(alone, cases)
    same_run(feed_in_runs(batched, cases, runs), expected)
    assert batched.to_state() == alone.to_state()
    assert sum(result.n_cases == alone.window for result in expected) >= 10  # windows tested


@pytest.mark.parametrize("name", sorted(TUMBLING))
@settings(max_examples=40, deadline=None)
@given(data=st.data())
def test_any_split_into_runs_is_one_by_one(name: str, data: st.DataObject) -> None:
    case: DetectorCase = TUMBLING[name]
    cases = data.draw(st.lists(case.hypothesis_case, min_size=1, max_size=700))
    runs = data.draw(st.lists(st.integers(1, 250), min_size=1, max_size=8))
    alone, batched = case.make(), case.make()
    expected = one_by_one(alone, cases)
    same_run(feed_in_runs(batched, cases, runs), expected)
    assert batched.to_state() == alone.to_state()


@pytest.mark.parametrize("name", sorted(TUMBLING))
def test_a_run_with_a_case_update_refuses_is_refused_whole(name: str) -> None:
    case: DetectorCase = TUMBLING[name]
    detector = case.make()
    good = case.cases(np.random.default_rng(3), 5)
    for bad in case.invalid_cases:
        if bad[1] is not None and not isinstance(detector, WindowedPerformanceEstimate):
            continue  # a risk given: these tests take none, and add_untested has no place for it
        before = copy.deepcopy(detector.to_state())
        with pytest.raises(ValueError):
            add_untested(detector, [*good, bad])
        assert detector.to_state() == before


@pytest.mark.parametrize("name", sorted(TUMBLING))
def test_a_run_reaching_the_test_is_refused_whole(name: str) -> None:
    case: DetectorCase = TUMBLING[name]
    detector = case.make()
    assert isinstance(detector, TumblingWindow)
    cases = case.cases(np.random.default_rng(4), detector.cases_before_test() + 1)
    before = copy.deepcopy(detector.to_state())
    with pytest.raises(ValueError, match="before a test"):
        add_untested(detector, cases)
    with pytest.raises(ValueError, match="before a test"):
        add_untested(detector, [])
    assert detector.to_state() == before
    add_untested(detector, cases[:-1])
    assert detector.cases_before_test() == 0
