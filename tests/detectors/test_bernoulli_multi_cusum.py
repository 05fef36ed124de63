"""Multi-chart Bernoulli CUSUM: exact per-chart design, the Bonferroni bound, migration."""

from __future__ import annotations

import math
import time

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from detectors import (
    BernoulliCUSUM,
    BernoulliMultiCUSUM,
    bernoulli_cusum_arl,
    multi_cusum_design,
    multi_cusum_resolution,
)
from detectors.bernoulli_glr_cusum import cusum_family_run_lengths, glr_alternatives
from detectors.bernoulli_multi_cusum import _design

P0 = 0.182  # acceptable sensitivity 0.818
ALTERNATIVES = glr_alternatives(P0, 0.1995, 0.392, 3)


def lattice(chart: BernoulliMultiCUSUM) -> tuple[list[int], list[int], list[int]]:
    """The chart's CUSUMs as ``cusum_family_run_lengths`` takes them (integers: exact)."""
    up = [m - a for a, m in zip(chart._a, chart._m, strict=True)]
    return up, [-a for a in chart._a], list(chart._threshold)


def alarms(chart: BernoulliMultiCUSUM | BernoulliCUSUM, events: list[int]) -> int:
    return sum(chart.update(e).fired for e in events)


def test_one_alternative_is_the_bernoulli_cusum() -> None:
    rng = np.random.default_rng(1)
    events = (rng.random(5000) < 0.25).astype(int).tolist()
    multi = BernoulliMultiCUSUM(P0, [0.252], [6.0])
    single = BernoulliCUSUM(P0, 0.252, 6.0, resolution=100)
    for e in events:
        a, b = multi.update(e), single.update(e)
        assert a.fired == b.fired and a.run_length == b.run_length
        assert a.statistic == pytest.approx(b.statistic / b.threshold)


@pytest.mark.parametrize("arl0", [2_000.0, 180_000.0, 1_000_000.0])
def test_each_cusum_is_designed_exactly_at_its_share_of_the_rate(arl0: float) -> None:
    design = multi_cusum_design(P0, ALTERNATIVES, arl0)
    share = len(ALTERNATIVES) * arl0
    for p1, h, arl in zip(design.p1, design.h, design.component_arl0, strict=True):
        # the exact ARL of that CUSUM alone: the smallest lattice value reaching its share
        assert arl == pytest.approx(bernoulli_cusum_arl(P0, P0, p1, h, 100), rel=1e-9)
        assert share <= arl < 1.05 * share
    assert arl0 <= design.arl0_bound == pytest.approx(1 / sum(1 / a for a in design.component_arl0))


@pytest.mark.parametrize("arl0", [100_000.0, 1_000_000.0])
def test_the_design_at_budget_scale_takes_well_under_a_second_per_cusum(arl0: float) -> None:
    _design.cache_clear()
    started = time.perf_counter()
    multi_cusum_design(0.123, glr_alternatives(0.123, 0.1355, 0.273, 3), arl0)
    assert (time.perf_counter() - started) / 3 < 0.5
    started = time.perf_counter()
    multi_cusum_design(0.123, glr_alternatives(0.123, 0.1355, 0.273, 3), arl0)
    assert time.perf_counter() - started < 0.01  # cached


def test_a_rate_too_extreme_for_the_coarse_lattice_gets_the_fine_one() -> None:
    assert multi_cusum_resolution(P0, ALTERNATIVES) == 100
    assert multi_cusum_resolution(0.001, [0.0015, 0.004]) == 1000
    chart = BernoulliMultiCUSUM.for_arl0(0.001, 20_000, p1_min=0.0015, p1_max=0.004)
    assert chart.resolution == 1000 and chart.arl0 >= 20_000


@pytest.mark.parametrize(("arl0", "n_streams"), [(2_000.0, 3000), (5_000.0, 1500)])
def test_the_union_in_control_arl_is_at_least_nominal_and_not_wildly_over(
    arl0: float, n_streams: int
) -> None:
    """Simulated at the acceptable level, on streams independent of any design: the Bonferroni
    bound holds, and spends about half the budget (the CUSUMs' alarms overlap)."""
    chart = BernoulliMultiCUSUM.for_arl0(P0, arl0, p1_min=0.1995, p1_max=0.392)
    runs = cusum_family_run_lengths(*lattice(chart), P0, n_streams=n_streams, seed=7)
    mean, se = runs.mean(), runs.std(ddof=1) / math.sqrt(n_streams)
    assert mean >= chart.arl0 - 3 * se  # >= nominal within Monte Carlo error
    assert mean / arl0 < 2.5  # measured 1.62 (2,000) and 1.50 (5,000)


@settings(max_examples=60, deadline=None)
@given(
    events=st.lists(st.sampled_from([0, 1]), min_size=1, max_size=400),
    h=st.lists(st.floats(0.3, 4.0), min_size=3, max_size=3),
)
def test_the_union_never_alarms_more_than_its_cusums_run_alone(
    events: list[int], h: list[float]
) -> None:
    """The pathwise inequality behind the Bonferroni bound, on any sequence."""
    union = BernoulliMultiCUSUM(P0, list(ALTERNATIVES), h)
    alone = [BernoulliMultiCUSUM(P0, [p1], [hk]) for p1, hk in zip(ALTERNATIVES, h, strict=True)]
    assert alarms(union, events) <= sum(alarms(chart, events) for chart in alone)


@settings(max_examples=60, deadline=None)
@given(events=st.lists(st.sampled_from([0, 1]), min_size=1, max_size=120), data=st.data())
def test_an_extra_event_never_lowers_the_statistic(events: list[int], data: st.DataObject) -> None:
    zeros = [i for i, e in enumerate(events) if e == 0]
    if not zeros:
        return
    flip = data.draw(st.sampled_from(zeros), label="flip")
    more = [*events[:flip], 1, *events[flip + 1 :]]
    less_chart = BernoulliMultiCUSUM(P0, list(ALTERNATIVES), [2.0, 3.0, 4.0])
    more_chart = BernoulliMultiCUSUM(P0, list(ALTERNATIVES), [2.0, 3.0, 4.0])
    for e_less, e_more in zip(events, more, strict=True):
        less, higher = less_chart.update(e_less), more_chart.update(e_more)
        assert higher.statistic >= less.statistic
        assert higher.fired or not less.fired
        if higher.fired:
            break


def test_a_single_cusums_run_becomes_each_cusums_log_likelihood_ratio_over_it() -> None:
    old = BernoulliCUSUM.for_arl0(P0, 0.252, 5000)
    rng = np.random.default_rng(5)
    events = (rng.random(300) < 0.3).astype(int).tolist()
    for e in events:
        old.update(e)
    state = old.to_state()["state"]
    run = state["run_length"]
    assert run > 0
    chart = BernoulliMultiCUSUM.for_arl0(P0, 5000, p1_min=0.1995, p1_max=0.392)
    migrated = chart.running_state_from_cusum(state, 0.252)
    misses = sum(events[-run:])
    expected = [
        min(max(0, misses * m - a * run), n - 1)
        for a, m, n in zip(chart._a, chart._m, chart._threshold, strict=True)
    ]
    assert migrated["s"] == expected
    assert migrated["run_lengths"] == [run if s else 0 for s in expected]
    assert (migrated["n_cases"], migrated["n_events"]) == (state["n_cases"], state["n_events"])
    chart._load_state(migrated)  # a consistent state of the new chart


def test_a_single_cusum_state_it_cannot_have_reached_is_refused() -> None:
    chart = BernoulliMultiCUSUM.for_arl0(P0, 5000, p1_min=0.1995, p1_max=0.392)
    with pytest.raises(ValueError, match="inconsistent"):
        chart.running_state_from_cusum(
            {"s": 999, "n_cases": 5, "n_events": 1, "run_length": 1}, 0.252
        )
    with pytest.raises(ValueError, match="not a BernoulliCUSUM"):
        chart.running_state_from_cusum(
            {"s": -1, "n_cases": 5, "n_events": 1, "run_length": 1}, 0.252
        )
