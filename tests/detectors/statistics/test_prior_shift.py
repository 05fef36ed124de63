"""EM prior-shift adjustment (Saerens et al. 2002) against Bayes' theorem on known classes."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.optimize import minimize_scalar
from scipy.stats import norm

from detectors.statistics import (
    adjust_to_prevalence,
    adjusted_posterior_slope,
    estimate_prevalence,
    prevalence_standard_error,
)

NEGATIVE_MEAN, POSITIVE_MEAN = 0.0, 1.5
REFERENCE = 0.3


def bayes_posterior(x: np.ndarray, prevalence: float) -> np.ndarray:
    """P(positive | x) for two unit-variance Gaussian classes, straight from the densities."""
    positive = prevalence * norm.pdf(x, POSITIVE_MEAN)
    result: np.ndarray = positive / (positive + (1.0 - prevalence) * norm.pdf(x, NEGATIVE_MEAN))
    return result


def sample(rng: np.random.Generator, n: int, prevalence: float) -> np.ndarray:
    positive = rng.random(n) < prevalence
    return rng.normal(np.where(positive, POSITIVE_MEAN, NEGATIVE_MEAN), 1.0)


@pytest.mark.parametrize("prevalence", [0.05, 0.18, 0.3, 0.6])
def test_em_recovers_the_prevalence_the_cases_were_drawn_at(prevalence: float) -> None:
    x = sample(np.random.default_rng(1), 40_000, prevalence)
    shift = estimate_prevalence(bayes_posterior(x, REFERENCE), REFERENCE)
    se = prevalence_standard_error(bayes_posterior(x, REFERENCE), REFERENCE, shift.prevalence)
    assert shift.converged
    assert abs(shift.prevalence - prevalence) < 4 * se
    assert se < 0.01


def test_em_estimate_is_the_maximum_likelihood_of_the_two_gaussian_mixture() -> None:
    x = sample(np.random.default_rng(2), 3000, 0.12)
    f1, f0 = norm.pdf(x, POSITIVE_MEAN), norm.pdf(x, NEGATIVE_MEAN)
    found = minimize_scalar(
        lambda pi: -np.sum(np.log(pi * f1 + (1 - pi) * f0)),
        bounds=(1e-9, 1 - 1e-9),
        method="bounded",
        options={"xatol": 1e-10},
    )
    shift = estimate_prevalence(bayes_posterior(x, REFERENCE), REFERENCE, tol=1e-13)
    assert shift.prevalence == pytest.approx(found.x, abs=1e-6)


def test_standard_error_is_the_spread_of_the_estimate_over_samples() -> None:
    rng = np.random.default_rng(3)
    estimates, errors = [], []
    for _ in range(300):
        scores = bayes_posterior(sample(rng, 1000, 0.2), REFERENCE)
        shift = estimate_prevalence(scores, REFERENCE)
        estimates.append(shift.prevalence)
        errors.append(prevalence_standard_error(scores, REFERENCE, shift.prevalence))
    assert np.std(estimates) == pytest.approx(np.mean(errors), rel=0.15)
    spread = float(np.std(estimates)) / math.sqrt(300)
    assert np.mean(estimates) == pytest.approx(0.2, abs=3 * spread)


@pytest.mark.parametrize("prevalence", [0.01, 0.18, 0.5, 0.9])
def test_adjusted_posteriors_are_the_bayes_posteriors_at_the_new_prevalence(
    prevalence: float,
) -> None:
    x = np.linspace(-4, 6, 201)
    adjusted = adjust_to_prevalence(bayes_posterior(x, REFERENCE), REFERENCE, prevalence)
    np.testing.assert_allclose(adjusted, bayes_posterior(x, prevalence), rtol=1e-10)


def test_adjusting_to_the_reference_prevalence_gives_the_scores_back() -> None:
    scores = np.random.default_rng(4).random(1000)
    np.testing.assert_allclose(adjust_to_prevalence(scores, 0.24, 0.24), scores, rtol=1e-14)


def test_em_is_at_its_fixed_point_when_the_mean_score_is_the_reference() -> None:
    scores = np.array([0.1, 0.2, 0.3, 0.6])  # mean 0.3
    shift = estimate_prevalence(scores, 0.3)
    assert shift.prevalence == pytest.approx(0.3, abs=1e-12)
    assert shift.iterations == 1


def test_slope_is_the_derivative_of_the_adjusted_posterior() -> None:
    scores = np.array([0.0, 0.01, 0.3, 0.7, 0.99, 1.0])
    h = 1e-6
    numeric = (
        adjust_to_prevalence(scores, 0.24, 0.18 + h) - adjust_to_prevalence(scores, 0.24, 0.18 - h)
    ) / (2 * h)
    np.testing.assert_allclose(adjusted_posterior_slope(scores, 0.24, 0.18), numeric, atol=1e-7)


def test_weights_count_repeated_scores() -> None:
    scores = np.array([0.05, 0.4, 0.9])
    counts = np.array([30, 5, 2])
    weighted = estimate_prevalence(scores, 0.2, weights=counts)
    repeated = estimate_prevalence(np.repeat(scores, counts), 0.2)
    assert weighted.prevalence == pytest.approx(repeated.prevalence, rel=1e-12)


def test_scores_of_exactly_zero_and_one_give_the_share_of_ones() -> None:
    shift = estimate_prevalence([0.0, 1.0, 1.0, 0.0, 0.0], 0.6)
    assert shift.converged
    assert shift.prevalence == pytest.approx(0.4)


@pytest.mark.parametrize(("score", "boundary"), [(0.5, 1.0), (0.1, 0.0)])
def test_identical_scores_away_from_the_reference_put_the_prevalence_on_the_boundary(
    score: float, boundary: float
) -> None:
    shift = estimate_prevalence([score] * 50, 0.3)
    assert shift.converged
    assert shift.prevalence == pytest.approx(boundary, abs=1e-8)
    assert math.isnan(prevalence_standard_error([score] * 50, 0.3, boundary))


def test_adjusting_to_a_boundary_prevalence_keeps_certain_scores() -> None:
    adjusted = adjust_to_prevalence([0.0, 0.5, 1.0], 0.3, 0.0)
    np.testing.assert_array_equal(adjusted, [0.0, 0.0, 1.0])


def test_too_few_iterations_report_non_convergence() -> None:
    scores = bayes_posterior(sample(np.random.default_rng(5), 500, 0.1), REFERENCE)
    shift = estimate_prevalence(scores, REFERENCE, max_iter=1)
    assert not shift.converged
    assert shift.iterations == 1
    assert 0.0 < shift.prevalence < 1.0


def test_uninformative_scores_have_an_infinite_standard_error() -> None:
    assert prevalence_standard_error([0.3] * 10, 0.3, 0.3) == math.inf


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"scores": [], "reference_prevalence": 0.2}, "scores must not be empty"),
        ({"scores": [0.2, float("nan")], "reference_prevalence": 0.2}, "scores must be finite"),
        ({"scores": [0.2, 1.2], "reference_prevalence": 0.2}, "in \\[0, 1\\]"),
        ({"scores": [0.2], "reference_prevalence": 0.0}, "reference_prevalence"),
        ({"scores": [0.2], "reference_prevalence": 1.0}, "reference_prevalence"),
        ({"scores": [0.2], "reference_prevalence": float("nan")}, "reference_prevalence"),
        ({"scores": [0.2], "reference_prevalence": True}, "reference_prevalence"),
        ({"scores": [0.2], "reference_prevalence": 0.2, "weights": [-1.0]}, "weights"),
        ({"scores": [0.2], "reference_prevalence": 0.2, "weights": [1.0, 2.0]}, "weights"),
        ({"scores": [0.2], "reference_prevalence": 0.2, "weights": [0.0]}, "weights"),
        ({"scores": [0.2], "reference_prevalence": 0.2, "max_iter": 0}, "max_iter"),
        ({"scores": [0.2], "reference_prevalence": 0.2, "tol": 0.0}, "tol"),
    ],
)
def test_invalid_arguments_name_what_is_wrong(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        estimate_prevalence(**kwargs)  # type: ignore[arg-type]


def test_adjusting_to_a_prevalence_outside_zero_one_is_rejected() -> None:
    with pytest.raises(ValueError, match="prevalence must lie in \\[0, 1\\]"):
        adjust_to_prevalence([0.2], 0.3, 1.5)


_score = st.one_of(
    st.floats(min_value=0.0, max_value=1.0), st.sampled_from([0.0, 1.0, 5e-324, 1 - 2**-53])
)


@settings(max_examples=300, deadline=None)
@given(
    scores=st.lists(_score, min_size=1, max_size=80),
    reference=st.floats(min_value=1e-6, max_value=1 - 1e-6),
)
def test_any_scores_give_a_prevalence_and_posteriors_in_zero_one(
    scores: list[float], reference: float
) -> None:
    shift = estimate_prevalence(scores, reference, max_iter=200)
    assert 0.0 <= shift.prevalence <= 1.0
    adjusted = adjust_to_prevalence(scores, reference, shift.prevalence)
    assert np.all((adjusted >= 0.0) & (adjusted <= 1.0))
    assert np.all(np.isfinite(adjusted_posterior_slope(scores, reference, shift.prevalence)))
    se = prevalence_standard_error(scores, reference, shift.prevalence)
    assert math.isnan(se) or se >= 0.0
