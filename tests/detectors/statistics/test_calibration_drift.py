"""Calibration drift (item 8): recalibration vs statsmodels GLM, ECE vs scikit-learn."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.special import expit, logit

from detectors.statistics import (
    calibration_intercept_slope,
    calibration_over_windows,
    expected_calibration_error,
    expected_calibration_error_under_calibration,
)


def _cases(
    seed: int, n: int, slope: float = 1.0, shift: float = 0.0
) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    scores = rng.beta(1.2, 3.5, n)
    truth = expit(shift + slope * logit(scores))
    return scores, (rng.random(n) < truth).astype(float)


@pytest.mark.parametrize(("slope", "shift"), [(1.0, 0.0), (0.7, 0.3), (1.3, -0.5)])
def test_slope_matches_statsmodels_logistic_glm(slope: float, shift: float) -> None:
    sm = pytest.importorskip("statsmodels.api")
    scores, labels = _cases(1, 3000, slope, shift)
    glm = sm.GLM(labels, sm.add_constant(logit(scores)), family=sm.families.Binomial()).fit()
    fit = calibration_intercept_slope(scores, labels)
    assert fit.slope == pytest.approx(glm.params[1], rel=1e-8)
    assert fit.slope_se == pytest.approx(glm.bse[1], rel=1e-5)  # statsmodels stops at 1e-8


def test_calibration_in_the_large_matches_statsmodels_glm_with_offset() -> None:
    sm = pytest.importorskip("statsmodels.api")
    scores, labels = _cases(2, 3000, 1.0, 0.4)
    glm = sm.GLM(
        labels, np.ones((scores.size, 1)), family=sm.families.Binomial(), offset=logit(scores)
    ).fit()
    fit = calibration_intercept_slope(scores, labels)
    assert fit.intercept == pytest.approx(glm.params[0], rel=1e-8)
    assert fit.intercept_se == pytest.approx(glm.bse[0], rel=1e-5)


def test_calibrated_scores_have_intercept_zero_and_slope_one_within_their_intervals() -> None:
    fit = calibration_intercept_slope(*_cases(3, 5000))
    assert fit.intercept_lower <= 0.0 <= fit.intercept_upper
    assert fit.slope_lower <= 1.0 <= fit.slope_upper


def test_ece_matches_scikit_learn_calibration_curve() -> None:
    calibration = pytest.importorskip("sklearn.calibration")
    scores, labels = _cases(4, 2000, 0.8, 0.2)
    prob_true, prob_pred = calibration.calibration_curve(labels, scores, n_bins=10)
    counts, _ = np.histogram(scores, bins=np.linspace(0, 1, 11))
    weights = counts[counts > 0] / scores.size
    expected = float(np.sum(weights * np.abs(prob_true - prob_pred)))
    assert expected_calibration_error(scores, labels, 10) == pytest.approx(expected, rel=1e-12)


def test_ece_of_miscalibrated_scores_exceeds_what_calibration_would_give() -> None:
    scores, labels = _cases(5, 1000, 1.0, 0.6)
    _, upper = expected_calibration_error_under_calibration(scores, n_simulations=500, seed=1)
    assert expected_calibration_error(scores, labels) > upper


def test_ece_of_calibrated_scores_is_within_what_calibration_gives() -> None:
    scores, labels = _cases(6, 1000)
    mean, upper = expected_calibration_error_under_calibration(scores, n_simulations=500, seed=2)
    assert 0 < mean < upper
    assert expected_calibration_error(scores, labels) <= upper


def test_windows_after_a_calibration_change_are_flagged() -> None:
    before, after = _cases(7, 3000), _cases(8, 3000, 1.0, 0.6)
    scores = np.concatenate([before[0], after[0]])
    labels = np.concatenate([before[1], after[1]])
    flags = [w.miscalibrated for w in calibration_over_windows(scores, labels, window=1500)]
    assert flags[2:] == [True, True]
    assert sum(flags[:2]) <= 1  # each window is tested at 5 % twice: a chance flag may occur


def test_a_window_with_a_single_outcome_has_no_fit_but_no_crash() -> None:
    windows = calibration_over_windows([0.1, 0.2, 0.3, 0.2], [0, 0, 0, 0], window=2)
    assert [w.fit for w in windows] == [None, None]
    assert not any(w.miscalibrated for w in windows)


def test_scores_outside_zero_one_are_rejected() -> None:
    with pytest.raises(ValueError):
        expected_calibration_error([0.2, 1.2], [0, 1])


def test_scores_that_separate_the_outcomes_have_no_finite_slope_and_say_so() -> None:
    scores = np.random.default_rng(0).random(50)
    with pytest.raises(ValueError, match="no finite maximum-likelihood estimate"):
        calibration_intercept_slope(scores, scores > 0.5)


def test_a_window_whose_scores_separate_the_outcomes_has_no_fit() -> None:
    scores, labels = _cases(4, 300)
    separated = np.concatenate([scores, np.linspace(0.1, 0.9, 100)])
    windows = calibration_over_windows(separated, np.r_[labels, np.arange(100) >= 50], 100)
    assert [w.fit is None for w in windows] == [False, False, False, True]
