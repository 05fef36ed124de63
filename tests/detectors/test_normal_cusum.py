"""Tabular normal CUSUM: ARL against Montgomery's published table, three ARL methods, restarts."""

from __future__ import annotations

import math

import numpy as np
import pytest

from detectors import NormalCUSUM, normal_cusum_arl, normal_cusum_threshold, siegmund_arl

SHIFTS = (0.0, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 2.5, 3.0, 4.0)
# Montgomery, Introduction to Statistical Quality Control, Table "ARL performance of the
# tabular CUSUM with k = 1/2 and h = 4 or h = 5" (two-sided), as printed.
PUBLISHED = {
    4.0: ("168", "74.2", "26.6", "13.3", "8.38", "4.75", "3.34", "2.62", "2.19", "1.71"),
    5.0: ("465", "139", "38.0", "17.0", "10.4", "5.75", "4.01", "3.11", "2.57", "2.01"),
}
TABLE = [
    (h, shift, printed)
    for h, row in PUBLISHED.items()
    for shift, printed in zip(SHIFTS, row, strict=True)
]


def to_printed_precision(value: float, printed: str) -> str:
    """``value`` with as many significant figures as the printed entry."""
    significant = len(printed.replace(".", "").lstrip("0"))
    digits = significant - 1 - math.floor(math.log10(abs(value)))
    return f"{value:.{max(digits, 0)}f}"


@pytest.mark.parametrize(("h", "shift", "printed"), TABLE)
def test_integral_equation_arl_reproduces_montgomerys_table(
    h: float, shift: float, printed: str
) -> None:
    assert to_printed_precision(normal_cusum_arl(shift, 0.5, h), printed) == printed


@pytest.mark.parametrize(("h", "shift", "printed"), TABLE)
def test_brook_evans_markov_chain_reproduces_montgomerys_table(
    h: float, shift: float, printed: str
) -> None:
    arl = normal_cusum_arl(shift, 0.5, h, method="markov", n=600)
    assert to_printed_precision(arl, printed) == printed


def test_one_sided_in_control_arls_are_twice_the_two_sided_ones() -> None:
    for h in (4.0, 5.0):
        upper = normal_cusum_arl(0.0, 0.5, h, side="upper")
        assert normal_cusum_arl(0.0, 0.5, h, side="lower") == pytest.approx(upper, rel=1e-12)
        assert normal_cusum_arl(0.0, 0.5, h) == pytest.approx(upper / 2, rel=1e-12)


@pytest.mark.parametrize("shift", SHIFTS)
def test_markov_chain_converges_to_the_integral_equation(shift: float) -> None:
    exact = normal_cusum_arl(shift, 0.5, 4.0, n=128)
    assert normal_cusum_arl(shift, 0.5, 4.0, n=64) == pytest.approx(exact, rel=1e-10)
    assert normal_cusum_arl(shift, 0.5, 4.0, method="markov", n=800) == pytest.approx(
        exact, rel=2e-5
    )


@pytest.mark.parametrize("shift", [0.0, 0.5, 1.0])
def test_siegmund_approximation_is_close_for_small_shifts(shift: float) -> None:
    exact = normal_cusum_arl(shift, 0.5, 5.0)
    assert siegmund_arl(shift, 0.5, 5.0) == pytest.approx(exact, rel=0.01)


def test_threshold_inverts_the_arl() -> None:
    h = normal_cusum_threshold(500.0, k=0.5)
    assert normal_cusum_arl(0.0, 0.5, h) == pytest.approx(500.0, rel=1e-8)


def test_the_detector_runs_at_its_computed_arl() -> None:
    chart = NormalCUSUM(target=10.0, sigma=2.0, k=0.5, h=3.0)
    values = np.random.default_rng(21).normal(10.0 + 2.0 * 0.5, 2.0, 200_000)
    signals = [i for i, v in enumerate(values.tolist()) if chart.update(v).fired]
    run_lengths = np.diff(np.array([-1, *signals]))
    standard_error = run_lengths.std(ddof=1) / math.sqrt(run_lengths.size)
    assert abs(run_lengths.mean() - chart.arl(0.5)) < 4 * standard_error


def test_one_sided_chart_ignores_the_other_direction() -> None:
    chart = NormalCUSUM(target=0.0, sigma=1.0, k=0.5, h=4.0, side="upper")
    assert not any(chart.update(-3.0).fired for _ in range(100))
    assert chart.update(5.0).fired


def test_signal_restarts_both_sides() -> None:
    chart = NormalCUSUM(target=0.0, sigma=1.0, k=0.5, h=4.0)
    chart.update(-2.0)
    result = chart.update(10.0)
    assert result.fired and result.statistic == pytest.approx(9.5)
    assert chart.update(0.0).statistic == 0.0


def test_golden_detection_indices_on_a_seeded_score_drift() -> None:
    rng = np.random.default_rng(20261126)
    scores = np.concatenate([rng.normal(0.30, 0.10, 1000), rng.normal(0.35, 0.10, 500)])
    chart = NormalCUSUM(target=0.30, sigma=0.10, k=0.25, h=normal_cusum_threshold(1000.0, k=0.25))
    fired = [i for i, s in enumerate(scores.tolist()) if chart.update(s).fired]
    assert fired == GOLDEN_FIRED


# 184 is a false alarm (P(run length <= 184) is about 17 % at ARL0 = 1,000)
GOLDEN_FIRED = [184, 1079, 1101, 1129, 1162, 1197, 1243, 1307, 1339, 1365, 1399, 1425, 1445]
