"""Bernoulli GLR CUSUM: simulated ARL0 design, monotonicity in the event rate, delays."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from detectors import (
    BernoulliCUSUM,
    BernoulliGLRCUSUM,
    Detector,
    StateError,
    bernoulli_cusum_arl,
    glr_arl,
    glr_design,
)
from detectors.bernoulli_glr_cusum import (
    _BLOCK,
    cusum_family_run_lengths,
    glr_alternatives,
)

P0 = 0.128
ALTERNATIVES = (0.2, 0.25, 0.4)


def small_chart() -> BernoulliGLRCUSUM:
    return BernoulliGLRCUSUM(p0=P0, p1=list(ALTERNATIVES), h=[2.0, 3.0, 4.0])


def common_uniforms(seed: int, n_streams: int, n_cases: int) -> np.ndarray:
    """The uniforms ``cusum_family_run_lengths`` draws: stream i's depend on (seed, i, t) only."""
    blocks = [
        np.random.default_rng([seed, b]).random((n_streams, _BLOCK))
        for b in range(math.ceil(n_cases / _BLOCK))
    ]
    return np.concatenate(blocks, axis=1)[:, :n_cases]


def first_alarm(chart: Detector, events: np.ndarray) -> int:
    """Case (1-based) of the chart's first alarm on ``events``, 0 if none."""
    for t, event in enumerate(events.tolist(), start=1):
        if chart.update(int(event)).fired:
            return t
    return 0


def statistics(chart: Detector, events: list[int]) -> list[float]:
    return [chart.update(e).statistic for e in events]


# ---------------------------------------------------------------- the chart itself


def test_the_statistic_is_the_largest_cusum_over_its_threshold() -> None:
    chart = small_chart()
    up = [math.log(p / P0) for p in ALTERNATIVES]
    result = chart.update(1)
    assert result.statistic == pytest.approx(max(u / h for u, h in zip(up, chart.h, strict=True)))
    assert result.threshold == 1.0 and result.run_length == 1


def test_it_signals_when_one_cusum_reaches_its_threshold_and_restarts() -> None:
    chart = small_chart()
    results = [chart.update(1) for _ in range(10)]
    first = next(i for i, r in enumerate(results) if r.fired)
    # the 0.4 alternative gains ln(0.4 / 0.128) = 1.14 nats per event: 4 events reach h = 4
    assert first == 3 and results[first].statistic >= 1.0
    assert results[first + 1].n_cases == 1


def test_a_single_alternative_is_the_bernoulli_cusum_in_nats() -> None:
    rng = np.random.default_rng(4)
    events = (rng.random(3000) < 0.2).astype(int).tolist()
    glr = BernoulliGLRCUSUM(p0=P0, p1=[0.2], h=[4.0])
    up, down = math.log(0.2 / P0), math.log(0.8 / (1 - P0))
    s, expected = 0.0, []
    for e in events:
        s = max(0.0, s + (up if e else down))
        expected.append(s / 4.0)
        if s >= 4.0:
            s = 0.0
    assert statistics(glr, events) == pytest.approx(expected, abs=1e-12)


@pytest.mark.parametrize(
    ("p1", "h"),
    [
        ([0.1, 0.2], [1.0, 2.0]),  # an alternative below p0
        ([0.3, 0.2], [1.0, 2.0]),  # not increasing
        ([0.2, 0.3], [1.0]),  # one threshold missing
        ([0.2, 0.3], [1.0, -2.0]),
        ([0.2, 0.3], [1.0, float("nan")]),
        ([], []),
    ],
)
def test_settings_that_define_no_chart_are_refused(p1: list[float], h: list[float]) -> None:
    with pytest.raises(ValueError):
        BernoulliGLRCUSUM(p0=P0, p1=p1, h=h)


@pytest.mark.parametrize(
    "change",
    [
        {"s": [0.0, 0.0, 4.5], "run_lengths": [0, 0, 9]},  # at its threshold
        {"s": [0.1, 0.0, 0.0], "run_lengths": [0, 0, 0]},  # above zero with no run
        {"s": [0.0, 0.0, 0.0], "run_lengths": [0, 0, 3]},  # a run at zero
        {"s": [0.0, 0.0], "run_lengths": [0, 0]},  # one alternative short
        {"s": [3.0, 0.0, 0.0], "run_lengths": [5, 0, 0]},  # more than 5 cases can give
        {"n_events": 11},  # more events than cases
        {"run_lengths": [11, 0, 0], "s": [0.2, 0.0, 0.0]},  # a run longer than the stream
    ],
)
def test_inconsistent_states_are_refused(change: dict[str, object]) -> None:
    chart = small_chart()
    for _ in range(10):
        chart.update(0)
    state = chart.to_state()
    state["state"].update(change)
    with pytest.raises(StateError):
        Detector.from_state(state)


@settings(max_examples=80, deadline=None)
@given(
    events=st.lists(st.sampled_from([0, 1]), min_size=1, max_size=120),
    data=st.data(),
)
def test_an_extra_event_never_lowers_the_statistic(events: list[int], data: st.DataObject) -> None:
    """Turning a non-event into an event raises every later statistic or leaves it, until the
    first alarm of the chart that sees more events (which may restart earlier)."""
    zeros = [i for i, e in enumerate(events) if e == 0]
    if not zeros:
        return
    flip = data.draw(st.sampled_from(zeros), label="flip")
    more = [*events[:flip], 1, *events[flip + 1 :]]
    chart_less, chart_more = small_chart(), small_chart()
    for e_less, e_more in zip(events, more, strict=True):
        less, higher = chart_less.update(e_less), chart_more.update(e_more)
        assert higher.statistic >= less.statistic
        assert higher.fired or not less.fired
        if higher.fired:
            break


# ---------------------------------------------------------------- simulation and design


def test_the_simulation_runs_the_detector_case_for_case() -> None:
    """``cusum_family_run_lengths`` and the detector alarm at the same case on the same uniforms."""
    chart = small_chart()
    up = [math.log(p / P0) for p in ALTERNATIVES]
    down = [math.log((1 - p) / (1 - P0)) for p in ALTERNATIVES]
    simulated = cusum_family_run_lengths(up, down, chart.h, 0.2, n_streams=60, seed=8)
    uniforms = common_uniforms(8, 60, int(simulated.max()))
    by_detector = [first_alarm(small_chart(), u < 0.2) for u in uniforms]
    assert by_detector == simulated.tolist()


def test_the_simulation_runs_the_lattice_bernoulli_cusum_exactly() -> None:
    chart = BernoulliCUSUM.for_arl0(P0, 0.25, arl0=300, resolution=100)
    a, m = chart.gamma.numerator, chart.gamma.denominator
    threshold = math.ceil(chart.h * m - 1e-9)
    simulated = cusum_family_run_lengths(
        [m - a], [-a], [threshold], 0.25, n_streams=60, seed=9, p_before=P0, change_at=150
    )
    uniforms = common_uniforms(9, 60, int(simulated.max()))
    rates = np.where(np.arange(uniforms.shape[1]) < 150, P0, 0.25)
    by_detector = [
        first_alarm(BernoulliCUSUM(P0, 0.25, chart.h, resolution=100), u < rates) for u in uniforms
    ]
    assert by_detector == simulated.tolist()


def test_the_design_is_deterministic_given_its_seed() -> None:
    first = glr_design(P0, ALTERNATIVES, 1000, n_streams=500, seed=3)
    from detectors.bernoulli_glr_cusum import _design

    _design.cache_clear()
    again = glr_design(P0, ALTERNATIVES, 1000, n_streams=500, seed=3)
    other = glr_design(P0, ALTERNATIVES, 1000, n_streams=500, seed=4)
    assert again == first
    assert other.h != first.h


@pytest.mark.parametrize(("p0", "arl0"), [(0.128, 2000.0), (0.182, 3000.0)])
def test_designed_arl0_agrees_with_an_independent_simulation(p0: float, arl0: float) -> None:
    p1 = glr_alternatives(p0, 0.20, 0.40)
    design = glr_design(p0, p1, arl0, n_streams=3000, seed=5)
    assert abs(design.arl0_estimate - arl0) < 3 * design.arl0_se
    checked, se = glr_arl(p0, p0, p1, design.h, n_streams=3000, seed=6)
    assert abs(checked - arl0) < 4 * math.hypot(se, design.arl0_se), (checked, se)


def test_the_inflation_sits_between_the_single_charts_and_the_union_bound() -> None:
    design = glr_design(P0, ALTERNATIVES, 2000, n_streams=2000, seed=5)
    # every chart alone would run at ARL0 2000 at factor 1: the composite alarms earlier
    assert design.inflation > 1.0
    # and K charts at ARL0 K x 2000 each are a generous upper bound (ARL0 ~ e^h)
    assert all(
        h < s + math.log(len(ALTERNATIVES)) for h, s in zip(design.h, design.single, strict=True)
    )


# ---------------------------------------------------------------- monotone in the rate


def test_run_length_is_pathwise_non_increasing_in_the_event_rate() -> None:
    """Same uniforms, x = u < p: a higher rate alarms no later on every stream."""
    chart = small_chart()
    up = [math.log(p / P0) for p in ALTERNATIVES]
    down = [math.log((1 - p) / (1 - P0)) for p in ALTERNATIVES]
    rates = (0.06, 0.10, P0, 0.15, 0.2, 0.3)
    run_lengths = [
        cusum_family_run_lengths(up, down, chart.h, p, n_streams=400, seed=10) for p in rates
    ]
    for lower, higher in zip(run_lengths, run_lengths[1:], strict=False):
        assert (higher <= lower).all()
    assert run_lengths[0].mean() > 2 * run_lengths[2].mean()


def test_the_detector_alarms_no_later_on_a_higher_rate_path() -> None:
    uniforms = np.random.default_rng(11).random((100, 4000))
    for u in uniforms:
        times = [first_alarm(small_chart(), u < p) or 10**9 for p in (0.08, P0, 0.2)]
        assert times[0] >= times[1] >= times[2]


# ---------------------------------------------------------------- delays


@pytest.mark.parametrize("sensitivity", [0.80, 0.70, 0.60])
def test_delays_are_within_a_fifth_of_the_oracle_cusum(sensitivity: float) -> None:
    """Zero-state ARL at each drop against the exact ARL1 of the CUSUM tuned to exactly it,
    both at ARL0 5000 (point-estimate policy, p0 = 1 - 0.872)."""
    p0, p = 1 - 0.872, 1 - sensitivity
    p1 = glr_alternatives(p0, 0.20, 0.40)
    design = glr_design(p0, p1, 5000)
    oracle = BernoulliCUSUM.for_arl0(p0, p, 5000)
    exact = bernoulli_cusum_arl(p, oracle.p0, oracle.p1, oracle.h)
    delay, se = glr_arl(p, p0, p1, design.h, n_streams=2000, seed=12)
    assert delay + 2 * se <= 1.2 * exact, (delay, se, exact)
