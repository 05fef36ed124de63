"""Where a CUSUM places the change when it signals: the case after its statistic was last zero,
Page's (1954) maximum-likelihood estimate of the change point (``DetectorResult.change_began``).
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
from hypothesis import given, settings
from hypothesis import strategies as st

from detectors import (
    BernoulliCUSUM,
    BernoulliMultiCUSUM,
    Detector,
    DetectorResult,
    NormalCUSUM,
)

CHANGE_AFTER = 500
"""Cases in control before the rate rises (the change begins at case 501)."""


def test_a_bernoulli_cusum_places_the_change_after_its_last_zero_on_a_hand_computed_path() -> None:
    # gamma = 11/68: an event lifts S by 57/68, a non-event lowers it by 11/68; h = 3 is
    # 204/68. S (in 1/68): 0, 57, 46, 35, 24, 13, 2, 0, 57, 114, 103, 160, 217 >= 204 at
    # case 13; S was last zero after case 8, so the change began at case 9.
    cusum = BernoulliCUSUM(0.128, 0.20, h=3.0, resolution=100)
    path = [0, 1, 0, 0, 0, 0, 0, 0, 1, 1, 0, 1, 1]
    results = [cusum.update(x) for x in path]
    assert [r.statistic * 68 for r in results][-3:] == [103, 160, 217]
    assert [r.fired for r in results] == [False] * 12 + [True]
    assert results[-1].change_began == 9
    assert results[1].change_began == 2  # the first run, from case 2, ended at case 8
    assert results[0].change_began is None and results[7].change_began is None


def test_a_normal_cusum_places_the_change_after_its_last_zero_on_a_hand_computed_path() -> None:
    # k = 0.5, h = 2 (upper side): z 0, 1.5, 0, 0.2, 0, 2, 1.5 gives S 0, 1, 0.5, 0.2, 0,
    # 1.5, 2.5 > 2 at case 7; S was last zero after case 5.
    cusum = NormalCUSUM(target=0.0, sigma=1.0, k=0.5, h=2.0, side="upper")
    results = [cusum.update(z) for z in (0.0, 1.5, 0.0, 0.2, 0.0, 2.0, 1.5)]
    assert results[-1].fired and results[-1].change_began == 6


def pages_estimate(increments: npt.NDArray[np.int64]) -> int | None:
    """Page's estimate by its definition, not the CUSUM recursion: the change begins after
    the last case ``tau`` that maximises the sum of the increments over ``(tau, t]`` (the
    log-likelihood ratio of a change after ``tau``), ties going to the latest; None when no
    stretch has a positive sum."""
    cumulative = np.concatenate([[0], np.cumsum(increments)])
    lowest = cumulative.min()
    if cumulative[-1] == lowest:
        return None
    tau = int(np.flatnonzero(cumulative == lowest)[-1])
    return tau + 1


@settings(max_examples=200, deadline=None)
@given(events=st.lists(st.integers(min_value=0, max_value=1), min_size=1, max_size=120))
def test_the_estimate_is_the_maximum_likelihood_change_point_by_its_definition(
    events: list[int],
) -> None:
    cusum = BernoulliCUSUM(0.128, 0.20, h=1000.0, resolution=100)  # never fires here
    gamma = cusum.gamma
    increments = np.array(events) * gamma.denominator - gamma.numerator
    result = [cusum.update(x) for x in events][-1]
    assert result.change_began == pages_estimate(increments)


def _errors_and_delays(
    designed: Detector, p_after: float, repeats: int, seed: int
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """Over ``repeats`` seeded streams that change from 0.182 to ``p_after`` after case
    ``CHANGE_AFTER``, each charted by a fresh copy of ``designed``: the estimate's error
    and the alarm's delay, in cases."""
    state = designed.to_state()
    rng = np.random.default_rng(seed)
    errors, delays = [], []
    for _ in range(repeats):
        chart, case, restart = Detector.from_state(state), 0, 0
        while True:
            case += 1
            rate = 0.182 if case <= CHANGE_AFTER else p_after
            result: DetectorResult = chart.update(int(rng.random() < rate))
            if not result.fired:
                continue
            if case <= CHANGE_AFTER:  # a false alarm: the chart restarted
                restart = case
                continue
            assert result.change_began is not None
            errors.append(restart + result.change_began - (CHANGE_AFTER + 1))
            delays.append(case - CHANGE_AFTER)
            break
    return np.array(errors, dtype=float), np.array(delays, dtype=float)


def test_a_cusum_tuned_to_the_change_places_it_far_closer_than_its_alarm() -> None:
    # Measured: mean absolute error 35 cases against a mean delay of 98 (400 streams).
    chart = BernoulliCUSUM.for_arl0(0.182, 0.30, arl0=5000, resolution=100)
    errors, delays = _errors_and_delays(chart, 0.30, repeats=400, seed=1)
    assert np.abs(errors).mean() < 0.5 * delays.mean()
    assert abs(errors.mean()) < 0.2 * delays.mean()  # nearly unbiased


def test_the_pipelines_multi_chart_places_the_change_far_closer_than_its_alarm() -> None:
    # Measured: mean absolute error 67 cases against a mean delay of 189 (300 streams),
    # at the default plan's ARL0 for a drop from the acceptable 0.818 to 0.70.
    chart = BernoulliMultiCUSUM.for_arl0(0.182, 100_000, p1_min=0.20, p1_max=0.40)
    errors, delays = _errors_and_delays(chart, 0.30, repeats=300, seed=2)
    assert np.abs(errors).mean() < 0.5 * delays.mean()
    assert abs(errors.mean()) < 0.2 * delays.mean()


def test_a_multi_charts_run_lengths_are_each_cusums_cases_since_its_last_zero() -> None:
    chart = BernoulliMultiCUSUM(0.182, [0.2, 0.4], [50.0, 50.0])
    for x in (0, 1, 1, 0, 0, 0, 0, 0, 0):
        result = chart.update(x)
    # Two events lift the CUSUM tuned to 0.2 (gamma 0.191) by 1.62 and the one tuned to 0.4
    # (gamma 0.282) by 1.44; six non-events take 1.15 and 1.69 off: the first is still in
    # the run that began at case 2, the second fell back to zero at case 9.
    assert chart.run_lengths == (8, 0)
    assert result.run_length == 8 and result.change_began == 2
