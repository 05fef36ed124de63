"""Label-free performance estimation (item 7): CBPE vs simulated labels, assumption checks."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.special import expit, logit
from scipy.stats import kstest

from detectors.statistics import (
    check_calibration_assumption,
    estimate_performance,
    spiegelhalter_z_test,
)

N_CASES, N_LABEL_SETS, THRESHOLD = 2000, 2000, 0.35


@pytest.fixture(scope="module")
def realised() -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Calibrated scores and the metrics realised on many label sets drawn from them."""
    rng = np.random.default_rng(0)
    scores = rng.beta(0.7, 2.0, N_CASES)
    labels = rng.random((N_LABEL_SETS, N_CASES)) < scores
    calls = scores >= THRESHOLD
    metrics = {
        "sensitivity": (labels & calls).sum(1) / labels.sum(1),
        "specificity": (~labels & ~calls).sum(1) / (~labels).sum(1),
        "ppv": (labels & calls).sum(1) / calls.sum(),
    }
    return scores, metrics


@pytest.mark.parametrize("metric", ["sensitivity", "specificity", "ppv"])
def test_estimate_is_the_mean_of_the_realised_metric(
    realised: tuple[np.ndarray, dict[str, np.ndarray]], metric: str
) -> None:
    scores, metrics = realised
    estimate = getattr(estimate_performance(scores, THRESHOLD), metric)
    assert estimate.estimate == pytest.approx(metrics[metric].mean(), abs=0.2 * estimate.se)


@pytest.mark.parametrize("metric", ["sensitivity", "specificity", "ppv"])
def test_standard_error_is_the_spread_of_the_realised_metric(
    realised: tuple[np.ndarray, dict[str, np.ndarray]], metric: str
) -> None:
    scores, metrics = realised
    estimate = getattr(estimate_performance(scores, THRESHOLD), metric)
    assert estimate.se == pytest.approx(metrics[metric].std(ddof=1), rel=0.08)


@pytest.mark.parametrize("metric", ["sensitivity", "specificity", "ppv"])
def test_interval_covers_the_realised_metric_at_the_nominal_rate(
    realised: tuple[np.ndarray, dict[str, np.ndarray]], metric: str
) -> None:
    scores, metrics = realised
    estimate = getattr(estimate_performance(scores, THRESHOLD, alpha=0.1), metric)
    covered = ((metrics[metric] >= estimate.lower) & (metrics[metric] <= estimate.upper)).mean()
    assert 0.87 <= covered <= 0.93


def test_no_expected_positive_decisions_gives_nan_ppv_not_a_crash() -> None:
    estimated = estimate_performance([0.1, 0.2, 0.05], threshold=0.9)
    assert np.isnan(estimated.ppv.estimate) and (estimated.ppv.lower, estimated.ppv.upper) == (0, 1)


def test_spiegelhalter_p_values_are_uniform_under_calibration() -> None:
    rng = np.random.default_rng(1)
    p_values = []
    for _ in range(300):
        scores = rng.beta(1, 3, 400)
        p_values.append(spiegelhalter_z_test(scores, rng.random(400) < scores)[1])
    assert kstest(p_values, "uniform").pvalue > 0.01


def test_assumption_holds_on_calibrated_labelled_cases() -> None:
    rng = np.random.default_rng(2)
    scores = rng.beta(0.7, 2.0, 1500)
    assert check_calibration_assumption(scores, rng.random(1500) < scores).holds


@pytest.mark.parametrize(("slope", "shift"), [(1.0, 0.6), (0.6, 0.0)])
def test_assumption_fails_on_miscalibrated_labelled_cases(slope: float, shift: float) -> None:
    rng = np.random.default_rng(3)
    scores = rng.beta(0.7, 2.0, 1500)
    truth = expit(shift + slope * logit(scores))
    assert not check_calibration_assumption(scores, rng.random(1500) < truth).holds
