"""Risk-adjusted CUSUM: reduction to the Bernoulli CUSUM, Markov-chain ARL against simulation."""

from __future__ import annotations

import math

import numpy as np
import pytest

from detectors import RiskAdjustedCUSUM, bernoulli_cusum_arl, risk_adjusted_cusum_arl


def simulate_run_lengths(
    risks: np.ndarray, odds_ratio: float, h: float, true_odds_ratio: float, n_charts: int, seed: int
) -> np.ndarray:
    """Many charts at once, written from the paper's formula rather than the detector code."""
    rng = np.random.default_rng(seed)
    s = np.zeros(n_charts)
    run_length = np.zeros(n_charts, dtype=np.int64)
    alive = np.ones(n_charts, dtype=bool)
    t = 0
    while alive.any():
        t += 1
        p = rng.choice(risks, n_charts)
        p_true = true_odds_ratio * p / (1 - p + true_odds_ratio * p)
        y = rng.random(n_charts) < p_true
        w = np.log(np.where(y, odds_ratio, 1.0) / (1 - p + odds_ratio * p))
        s = np.where(alive, np.maximum(0.0, s + w), s)
        crossed = alive & (s >= h)
        run_length[crossed] = t
        alive &= ~crossed
    return run_length


RISKS = np.random.default_rng(41).beta(2.0, 12.0, 200)


@pytest.mark.parametrize("true_odds_ratio", [1.0, 2.0])
def test_markov_chain_arl_matches_simulation(true_odds_ratio: float) -> None:
    arl = risk_adjusted_cusum_arl(RISKS, odds_ratio=2.0, h=2.5, true_odds_ratio=true_odds_ratio)
    simulated = simulate_run_lengths(RISKS, 2.0, 2.5, true_odds_ratio, 4000, 42)
    standard_error = simulated.std(ddof=1) / math.sqrt(simulated.size)
    # the chain rounds the statistic to cells of width h / 1500, a bias well under 1 %
    assert abs(simulated.mean() - arl) < 4 * standard_error + 0.01 * arl


def test_with_one_risk_for_every_case_it_is_the_bernoulli_cusum() -> None:
    p0, odds_ratio = 0.128, 2.0
    p1 = odds_ratio * p0 / (1 - p0 + odds_ratio * p0)
    llr_unit = math.log(p1 * (1 - p0) / (p0 * (1 - p1)))  # = log(odds_ratio)
    chart = RiskAdjustedCUSUM(odds_ratio=odds_ratio, h=4.0 * llr_unit)
    arl_markov = risk_adjusted_cusum_arl([p0], odds_ratio, 4.0 * llr_unit, n_states=3000)
    # the Bernoulli CUSUM on the fine lattice is the same chart up to the rounding of gamma
    assert arl_markov == pytest.approx(bernoulli_cusum_arl(p0, p0, p1, 4.0, 1000), rel=0.02)
    statistic = 0.0
    for event in (1, 0, 0, 1, 1, 0):
        statistic = max(
            0.0, statistic + event * math.log(odds_ratio) - math.log(1 - p0 + odds_ratio * p0)
        )
        assert chart.update(event, risk=p0).statistic == pytest.approx(statistic)


def test_higher_risk_cases_count_less_against_the_site() -> None:
    easy, hard = RiskAdjustedCUSUM(2.0, 4.5), RiskAdjustedCUSUM(2.0, 4.5)
    assert easy.update(1, risk=0.02).statistic > hard.update(1, risk=0.4).statistic


def test_an_improvement_chart_uses_an_odds_ratio_below_one() -> None:
    chart = RiskAdjustedCUSUM(odds_ratio=0.5, h=2.0)
    fired = [chart.update(0, risk=0.3).fired for _ in range(40)]
    assert any(fired)


def test_risk_is_required() -> None:
    with pytest.raises(ValueError):
        RiskAdjustedCUSUM().update(1)


def test_golden_detection_indices_on_a_seeded_case_mix() -> None:
    rng = np.random.default_rng(20261126)
    risk = rng.beta(2.0, 12.0, 3000)
    odds = np.where(np.arange(3000) < 2000, 1.0, 2.0) * risk / (1 - risk)
    event = rng.random(3000) < odds / (1 + odds)
    chart = RiskAdjustedCUSUM(odds_ratio=2.0, h=4.5)
    fired = [i for i in range(3000) if chart.update(int(event[i]), risk=float(risk[i])).fired]
    assert fired == GOLDEN_FIRED


# 1341 is a false alarm (ARL0 is about 3,600 cases on this case mix)
GOLDEN_FIRED = [1341, 2371, 2429, 2478, 2648, 2703, 2801, 2824, 2897]
