"""Per-stream ARL0 from a fleet false-alarm budget."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from detectors import (
    BernoulliCUSUM,
    expected_fleet_false_alarms,
    per_stream_arl0,
    stream_false_alarm_probability,
)

volumes = st.lists(st.floats(min_value=1.0, max_value=1e6), min_size=1, max_size=200)
budgets = st.floats(min_value=0.01, max_value=1000.0)


@given(volumes, budgets, st.sampled_from(["equal_alarms", "equal_arl0"]), st.integers(1, 4))
def test_the_fleet_meets_its_budget_exactly(
    cases: list[float], budget: float, allocation: str, detectors: int
) -> None:
    arl0 = per_stream_arl0(cases, budget, allocation, detectors)  # type: ignore[arg-type]
    assert expected_fleet_false_alarms(cases, arl0, detectors) == pytest.approx(budget)


def test_equal_alarms_gives_every_stream_the_same_false_alarm_rate() -> None:
    cases = np.array([100.0, 1000.0, 25_000.0])
    arl0 = per_stream_arl0(cases, 3.0)
    assert cases / arl0 == pytest.approx([1.0, 1.0, 1.0])


def test_false_alarms_of_a_restarting_chart_arrive_at_cases_over_arl0() -> None:
    chart = BernoulliCUSUM(p0=0.1, p1=0.2, h=3.0, resolution=50)
    events = np.random.default_rng(51).random(300_000) < 0.1
    alarms = sum(chart.update(int(e)).fired for e in events.tolist())
    expected = events.size / chart.arl0
    assert abs(alarms - expected) < 4 * np.sqrt(expected)


def test_probability_of_a_false_alarm_in_a_year() -> None:
    assert stream_false_alarm_probability(1000, 1000) == pytest.approx(1 - np.exp(-1))


def test_rejects_an_empty_fleet_or_a_zero_budget() -> None:
    with pytest.raises(ValueError):
        per_stream_arl0([], 1.0)
    with pytest.raises(ValueError):
        per_stream_arl0([10.0], 0.0)


@pytest.mark.parametrize("budget", [float("inf"), float("nan")])
def test_a_budget_that_is_not_finite_is_refused(budget: float) -> None:
    with pytest.raises(ValueError, match="fleet_false_alarms_per_year"):
        per_stream_arl0([500, 2000], budget)


@pytest.mark.parametrize("detectors", [1.5, 0, True, 2.0])
def test_detectors_per_stream_must_be_a_whole_number_of_detectors(detectors: object) -> None:
    with pytest.raises(ValueError, match="detectors_per_stream"):
        per_stream_arl0([500, 2000], 2.0, detectors_per_stream=detectors)  # type: ignore[arg-type]


def test_detectors_per_stream_may_be_a_numpy_integer() -> None:
    assert per_stream_arl0([500], 2.0, detectors_per_stream=np.int64(2)).tolist() == [500.0]
