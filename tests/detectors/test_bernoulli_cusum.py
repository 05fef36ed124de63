"""Bernoulli CUSUM: exact Markov-chain ARL against simulation, threshold choice, restarts."""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest

from detectors import (
    BernoulliCUSUM,
    bernoulli_cusum_arl,
    bernoulli_cusum_arl0,
    bernoulli_cusum_arl1,
    bernoulli_cusum_threshold,
)
from detectors.base import StateError
from detectors.bernoulli_cusum import bernoulli_cusum_gamma


def run_lengths_of_detector(
    detector: BernoulliCUSUM, p: float, n_cases: int, seed: int
) -> np.ndarray:
    """Run lengths between signals of the detector itself on a stream with event rate ``p``.

    The chart restarts after each signal, so the run lengths are independent copies.
    """
    events = np.random.default_rng(seed).random(n_cases) < p
    signals = [i for i, e in enumerate(events.tolist()) if detector.update(int(e)).fired]
    return np.diff(np.array([-1, *signals]))


def run_lengths_by_numpy(
    p: float, a: int, m: int, threshold: int, n_charts: int, seed: int
) -> np.ndarray:
    """The integer chart simulated independently of the detector code, many charts at once."""
    rng = np.random.default_rng(seed)
    s = np.zeros(n_charts, dtype=np.int64)
    run_length = np.zeros(n_charts, dtype=np.int64)
    alive = np.ones(n_charts, dtype=bool)
    t = 0
    while alive.any():
        t += 1
        events = rng.random(n_charts) < p
        s = np.where(alive, np.maximum(0, s + m * events - a), s)
        crossed = alive & (s >= threshold)
        run_length[crossed] = t
        alive &= ~crossed
    return run_length


def assert_within_monte_carlo_error(run_lengths: np.ndarray, arl: float) -> None:
    standard_error = run_lengths.std(ddof=1) / math.sqrt(run_lengths.size)
    assert abs(run_lengths.mean() - arl) < 4 * standard_error, (run_lengths.mean(), arl)


@pytest.mark.parametrize(
    ("p0", "p1", "h", "resolution"), [(0.1, 0.2, 3.0, 50), (0.02, 0.05, 2.0, 200)]
)
def test_markov_chain_arl0_matches_simulation(
    p0: float, p1: float, h: float, resolution: int
) -> None:
    gamma = bernoulli_cusum_gamma(p0, p1, resolution)
    threshold = math.ceil(h * gamma.denominator - 1e-9)
    simulated = run_lengths_by_numpy(p0, gamma.numerator, gamma.denominator, threshold, 6000, 11)
    assert_within_monte_carlo_error(simulated, bernoulli_cusum_arl0(p0, p1, h, resolution))


@pytest.mark.parametrize("p", [0.2, 0.3, 0.5])
def test_markov_chain_arl_out_of_control_matches_simulation(p: float) -> None:
    gamma = bernoulli_cusum_gamma(0.1, 0.2, 50)
    threshold = math.ceil(3.0 * gamma.denominator - 1e-9)
    simulated = run_lengths_by_numpy(p, gamma.numerator, gamma.denominator, threshold, 6000, 12)
    assert_within_monte_carlo_error(simulated, bernoulli_cusum_arl(p, 0.1, 0.2, 3.0, 50))


def test_the_detector_itself_runs_at_its_markov_chain_arl0() -> None:
    detector = BernoulliCUSUM(p0=0.1, p1=0.2, h=3.0, resolution=50)
    run_lengths = run_lengths_of_detector(detector, 0.1, 500_000, seed=13)
    assert run_lengths.size > 1000
    assert_within_monte_carlo_error(run_lengths, detector.arl0)


def test_the_detector_itself_runs_at_its_markov_chain_arl1() -> None:
    detector = BernoulliCUSUM(p0=0.1, p1=0.2, h=3.0, resolution=50)
    run_lengths = run_lengths_of_detector(detector, 0.2, 100_000, seed=14)
    assert_within_monte_carlo_error(run_lengths, detector.arl1)


def test_a_chart_that_signals_on_any_event_has_arl_one_over_p() -> None:
    # gamma < 1/2, so one event lifts the statistic by more than h = 0.5
    assert bernoulli_cusum_gamma(0.1, 0.3, 100) < 0.5
    for p in (0.01, 0.1, 0.37):
        assert bernoulli_cusum_arl(p, 0.1, 0.3, h=0.5, resolution=100) == pytest.approx(1 / p)


def test_a_chart_that_needs_two_events_in_a_row_has_the_closed_form_arl() -> None:
    # gamma = 1/3 after rounding at resolution 3, h = 1: the statistic is 0, 2/3, or
    # crosses. From 0 an event goes to 2/3; from 2/3 an event crosses, a non-event
    # goes to 1/3, and from 1/3 an event crosses, a non-event goes to 0.
    p0, p1 = 0.25, 0.4
    gamma = bernoulli_cusum_gamma(p0, p1, 3)
    assert gamma == pytest.approx(1 / 3)
    p = 0.3
    q = 1 - p
    # L0 = 1 + p L2 + q L0 ; L2 = 1 + q L1 ; L1 = 1 + q L0   (states in thirds)
    l0 = (1 + p * (1 + q)) / (1 - q - p * q * q)
    assert bernoulli_cusum_arl(p, p0, p1, h=1.0, resolution=3) == pytest.approx(l0, rel=1e-12)


def test_threshold_is_the_smallest_lattice_value_reaching_the_target_arl0() -> None:
    p0, p1, resolution = 0.128, 0.20, 100
    h = bernoulli_cusum_threshold(p0, p1, arl0=5000, resolution=resolution)
    step = 1 / bernoulli_cusum_gamma(p0, p1, resolution).denominator
    assert bernoulli_cusum_arl0(p0, p1, h, resolution) >= 5000
    assert bernoulli_cusum_arl0(p0, p1, h - step, resolution) < 5000


def test_arl_falls_as_the_event_rate_rises() -> None:
    arls = [bernoulli_cusum_arl(p, 0.128, 0.2, 5.0, 100) for p in (0.05, 0.128, 0.15, 0.2, 0.3)]
    assert arls == sorted(arls, reverse=True)
    assert bernoulli_cusum_arl1(0.128, 0.2, 5.0, 100) == arls[3]


def test_for_sensitivity_watches_the_miss_rate() -> None:
    chart = BernoulliCUSUM.for_sensitivity(claimed=0.872, detect=0.80, arl0=2000, resolution=100)
    assert chart.p0 == pytest.approx(0.128)
    assert chart.p1 == pytest.approx(0.20)
    assert chart.arl0 >= 2000


def test_signal_restarts_the_chart_from_zero() -> None:
    chart = BernoulliCUSUM(p0=0.1, p1=0.2, h=1.0, resolution=50)
    first, second = chart.update(1), chart.update(1)
    assert not first.fired and second.fired
    assert second.statistic >= second.threshold and second.n_cases == 2
    after = chart.update(0)
    assert after.statistic == 0.0 and after.n_cases == 1 and after.n_events == 0


def test_statistic_and_threshold_are_on_the_lattice() -> None:
    chart = BernoulliCUSUM(p0=0.1, p1=0.2, h=3.01, resolution=50)
    m = chart.gamma.denominator
    assert chart.update(1).threshold * m == pytest.approx(math.ceil(3.01 * m))


def test_rejects_a_shift_that_is_not_a_rise() -> None:
    with pytest.raises(ValueError):
        BernoulliCUSUM(p0=0.2, p1=0.1, h=3.0)


def test_golden_detection_indices_on_a_seeded_sensitivity_drop() -> None:
    rng = np.random.default_rng(20261126)
    misses = np.concatenate([rng.random(4000) < 0.128, rng.random(2000) < 0.23])
    chart = BernoulliCUSUM.for_sensitivity(claimed=0.872, detect=0.80, arl0=5000)
    fired = [i for i, miss in enumerate(misses.tolist()) if chart.update(int(miss)).fired]
    assert fired == GOLDEN_FIRED


# 442 is a false alarm: P(run length <= 442) is about 8 % at ARL0 = 5,000
GOLDEN_FIRED = [442, 4122, 4311, 4443, 4605, 4783, 4904, 4946, 5007, 5156, 5235, 5357, 5466, 5609]
GOLDEN_FIRED += [5701, 5830, 5859, 5945]


def test_a_restored_state_at_its_threshold_is_refused() -> None:
    state = BernoulliCUSUM(p0=0.128, p1=0.20, h=3.0, resolution=100).to_state()
    state["state"].update(s=204, n_cases=10, n_events=10, run_length=10)  # h = 204 / 68
    with pytest.raises(StateError, match="below the threshold"):
        BernoulliCUSUM.from_state(state)


@pytest.mark.parametrize(
    "counts",
    [
        {"s": 0, "n_cases": 5, "n_events": 6, "run_length": 0},  # more events than cases
        {"s": 57, "n_cases": 5, "n_events": 1, "run_length": 6},  # a run longer than the cases
        {"s": 57, "n_cases": 5, "n_events": 1, "run_length": 0},  # above the floor, no run
        {"s": 120, "n_cases": 5, "n_events": 1, "run_length": 5},  # more than one event lifts
        {"s": True, "n_cases": 5, "n_events": 1, "run_length": 1},
    ],
)
def test_a_restored_state_with_inconsistent_counts_is_refused(counts: dict[str, int]) -> None:
    state = BernoulliCUSUM(p0=0.128, p1=0.20, h=3.0, resolution=100).to_state()
    state["state"] = counts
    with pytest.raises(StateError):
        BernoulliCUSUM.from_state(state)


@pytest.mark.parametrize(("claimed", "detect"), [(0.999999, 0.99999), (0.9999, 0.999)])
def test_a_claim_too_extreme_for_the_resolution_is_refused_naming_why(
    claimed: float, detect: float
) -> None:
    with pytest.raises(ValueError, match=r"p0=.* and p1=.* are too extreme for resolution=1000"):
        BernoulliCUSUM.for_sensitivity(claimed, detect, arl0=5000, resolution=1000)


def test_a_gamma_rounded_by_more_than_the_tolerance_is_refused() -> None:
    # gamma = 0.0724 rounds to 1/10 at resolution 10: a chart tuned to another shift
    with pytest.raises(ValueError, match="too extreme for resolution=10"):
        bernoulli_cusum_gamma(0.05, 0.10, resolution=10)
    assert bernoulli_cusum_gamma(0.05, 0.10, resolution=1000) == Fraction(50, 691)


@pytest.mark.parametrize("claimed", [0.872, 0.907, 0.95])
def test_usual_claims_still_design_charts_at_the_default_resolution(claimed: float) -> None:
    chart = BernoulliCUSUM(p0=1 - claimed, p1=1 - (claimed - 0.07), h=4.0)
    gamma = math.log(claimed / (claimed - 0.07)) / math.log(
        (1 - (claimed - 0.07)) * claimed / ((1 - claimed) * (claimed - 0.07))
    )
    assert float(chart.gamma) == pytest.approx(gamma, rel=1e-3)


def test_a_version_1_chart_whose_gamma_was_clamped_is_refused_saying_why() -> None:
    state = {
        "schema_version": 1,
        "detector": "BernoulliCUSUM",
        "settings": {"p0": 1e-6, "p1": 1e-5, "h": 3.0, "resolution": 1000},
        "state": {"s": 0, "n_cases": 0, "n_events": 0, "run_length": 0},
    }
    with pytest.raises(StateError, match="too extreme for resolution=1000"):
        BernoulliCUSUM.from_state(state)
