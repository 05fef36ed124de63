"""The check list every detector class passes (`detector_case` is parametrised in conftest)."""

from __future__ import annotations

import copy
import json
import math
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from detectors import SCHEMA_VERSION, Detector, DetectorResult, StateError, state_size_bytes


def feed(detector: Detector, cases: list[tuple[float, float | None]]) -> list[DetectorResult]:
    return [detector.update(x, risk=risk) for x, risk in cases]


def json_round_trip(detector: Detector) -> Detector:
    text = json.dumps(detector.to_state(), allow_nan=False)
    return Detector.from_state(json.loads(text))


def test_every_detector_class_is_checked(detector_cases: dict[type[Detector], Any]) -> None:
    registered = {k for k in Detector._registry.values() if k.__module__.startswith("detectors.")}
    assert registered == set(detector_cases)


def test_state_is_plain_json_with_schema_version(detector_case: Any) -> None:
    detector = detector_case.make()
    feed(detector, detector_case.cases(np.random.default_rng(0), 50))
    state = detector.to_state()
    assert state["schema_version"] == SCHEMA_VERSION
    assert state["detector"] == type(detector).__name__
    assert json.loads(json.dumps(state, allow_nan=False)) == state


def test_json_round_trip_mid_stream_gives_identical_future_results(detector_case: Any) -> None:
    cases = detector_case.cases(np.random.default_rng(1), 1200)
    original = detector_case.make()
    feed(original, cases[:700])
    restored = json_round_trip(original)
    assert type(restored) is type(original)
    assert feed(restored, cases[700:]) == feed(original, cases[700:])


def test_from_state_on_the_subclass_returns_that_subclass(detector_case: Any) -> None:
    detector = detector_case.make()
    restored = type(detector).from_state(detector.to_state())
    assert type(restored) is type(detector)


def test_from_state_rejects_another_detectors_state(
    detector_case: Any, detector_cases: dict[type[Detector], Any]
) -> None:
    detector = detector_case.make()
    other = next(k for k in detector_cases if k is not type(detector))
    with pytest.raises(StateError):
        other.from_state(detector.to_state())


def test_from_state_rejects_unknown_schema_version(detector_case: Any) -> None:
    state = detector_case.make().to_state()
    state["schema_version"] = SCHEMA_VERSION + 1
    with pytest.raises(StateError):
        Detector.from_state(state)


def test_a_version_1_state_restores_and_continues_as_the_release_before_ran_it(
    detector_case: Any,
) -> None:
    cases = detector_case.cases(np.random.default_rng(11), 1200)
    original = detector_case.make()
    feed(original, cases[:700])
    state = json.loads(json.dumps(original.to_state()))
    state["schema_version"] = 1
    restored = Detector.from_state(state)
    assert restored.to_state()["schema_version"] == SCHEMA_VERSION == 2
    assert feed(restored, cases[700:]) == feed(original, cases[700:])


@pytest.mark.parametrize("version", [True, 1.0, "1", 0, None])
def test_from_state_rejects_a_schema_version_that_is_not_a_known_integer(
    detector_case: Any, version: Any
) -> None:
    state = detector_case.make().to_state()
    state["schema_version"] = version
    with pytest.raises(StateError, match="schema_version"):
        Detector.from_state(state)


def test_from_state_rejects_malformed_running_state(detector_case: Any) -> None:
    state = detector_case.make().to_state()
    state["state"] = {key: -1 for key in state["state"]}
    with pytest.raises(StateError):
        Detector.from_state(state)


def test_same_settings_and_cases_give_same_results(detector_case: Any) -> None:
    cases = detector_case.cases(np.random.default_rng(2), 800)
    assert feed(detector_case.make(), cases) == feed(detector_case.make(), cases)


def test_reset_is_the_same_as_a_fresh_detector(detector_case: Any) -> None:
    cases = detector_case.cases(np.random.default_rng(3), 600)
    used = detector_case.make()
    feed(used, cases)
    used.reset()
    assert used.to_state() == detector_case.make().to_state()
    assert feed(used, cases) == feed(detector_case.make(), cases)


def test_results_read_the_same_on_every_detector(detector_case: Any) -> None:
    detector = detector_case.make()
    for result in feed(detector, detector_case.cases(np.random.default_rng(4), 300)):
        assert isinstance(result, DetectorResult)
        assert isinstance(result.fired, bool)
        assert math.isfinite(result.statistic) and math.isfinite(result.threshold)
        assert 0 <= result.n_events <= result.n_cases
        assert 0 <= result.run_length <= result.n_cases
        assert json.loads(json.dumps(result.to_dict())) == result.to_dict()


def test_the_drifted_half_of_the_stream_is_detected(detector_case: Any) -> None:
    results = feed(detector_case.make(), detector_case.cases(np.random.default_rng(5), 2000))
    assert any(r.fired for r in results[1000:])


def test_invalid_case_raises_and_leaves_state_unchanged(detector_case: Any) -> None:
    detector = detector_case.make()
    feed(detector, detector_case.cases(np.random.default_rng(6), 100))
    before = copy.deepcopy(detector.to_state())
    for x, risk in detector_case.invalid_cases:
        with pytest.raises(ValueError):
            detector.update(x, risk=risk)
        assert detector.to_state() == before


def test_memory_is_bounded_and_within_the_documented_size(detector_case: Any) -> None:
    detector = detector_case.make()
    feed(detector, detector_case.cases(np.random.default_rng(7), 20))
    early, _ = state_size_bytes(detector)
    feed(detector, detector_case.cases(np.random.default_rng(8), 20_000))
    late, late_json = state_size_bytes(detector)
    assert late <= early + 64  # ints grow by a word at most; nothing accumulates
    assert late <= detector_case.max_bytes
    assert late_json <= detector_case.max_json_bytes


@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_any_valid_sequence_round_trips_at_any_point(
    detector_case: Any, data: st.DataObject
) -> None:
    cases = data.draw(st.lists(detector_case.hypothesis_case, max_size=60), label="cases")
    split = data.draw(st.integers(min_value=0, max_value=len(cases)), label="split")
    original = detector_case.make()
    feed(original, cases[:split])
    restored = json_round_trip(original)
    assert feed(restored, cases[split:]) == feed(original, cases[split:])


@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_any_valid_sequence_is_processed_deterministically(
    detector_case: Any, data: st.DataObject
) -> None:
    cases = data.draw(st.lists(detector_case.hypothesis_case, max_size=80), label="cases")
    first, second = detector_case.make(), detector_case.make()
    results = feed(first, cases)
    assert results == feed(second, cases)
    for result in results:
        assert math.isfinite(result.statistic)
        assert not result.fired or result.statistic >= result.threshold


@settings(max_examples=40, deadline=None)
@given(data=st.data())
def test_any_input_either_updates_or_raises_value_error(
    detector_case: Any, data: st.DataObject
) -> None:
    anything = st.one_of(
        st.floats(), st.integers(min_value=-(10**6), max_value=10**6), st.booleans()
    )
    detector = detector_case.make()
    for _ in range(data.draw(st.integers(min_value=1, max_value=30), label="n")):
        x = data.draw(anything, label="x")
        risk = data.draw(st.one_of(st.none(), st.floats()), label="risk")
        before = detector.to_state()
        try:
            result = detector.update(x, risk=risk)
        except ValueError:
            assert detector.to_state() == before
        else:
            assert math.isfinite(result.statistic)
