"""Label-free performance under label shift: sensitivity and specificity stay, prevalence moves.

Two unit-variance Gaussian classes; each case's score is its exact posterior at the
reference prevalence 0.24 (a calibrated device), so the device's true sensitivity and
specificity at a score threshold follow from the normal distribution alone.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from scipy.optimize import brentq
from scipy.stats import norm

from detectors import Detector, StateError, WindowedPerformanceEstimate
from detectors.statistics import adjust_to_prevalence, estimate_performance
from detectors.statistics.confidence_based_performance_estimation import (
    performance_from_sums,
    score_sums,
)

REFERENCE = 0.24
POSITIVE_MEAN = 2.0
THRESHOLD = 0.4


def posterior(x: np.ndarray, prevalence: float = REFERENCE) -> np.ndarray:
    positive = prevalence * norm.pdf(x, POSITIVE_MEAN)
    result: np.ndarray = positive / (positive + (1.0 - prevalence) * norm.pdf(x, 0.0))
    return result


CUT = brentq(lambda x: float(posterior(np.array([x]))[0]) - THRESHOLD, -10, 10)
SENSITIVITY = float(norm.sf(CUT - POSITIVE_MEAN))
SPECIFICITY = float(norm.cdf(CUT))


def device_scores(
    rng: np.random.Generator, n: int, prevalence: float, positive_mean: float = POSITIVE_MEAN
) -> tuple[np.ndarray, np.ndarray]:
    """Calibrated-at-reference scores of ``n`` cases drawn at ``prevalence``, and labels."""
    positive = rng.random(n) < prevalence
    x = rng.normal(np.where(positive, positive_mean, 0.0), 1.0)
    return posterior(x), positive


def window_alarms(
    metric: str, claimed: float, scores: np.ndarray, reference: float | None, cut: float
) -> list[bool]:
    detector = WindowedPerformanceEstimate(metric, claimed, 500, 5000, reference)  # type: ignore[arg-type]
    results = [detector.update(float(s), risk=float(s >= cut)) for s in scores]
    return [r.fired for r in results[499::500]]


@pytest.mark.parametrize("prevalence", [0.18, 0.30])
def test_unadjusted_estimate_is_biased_when_only_the_prevalence_moves(prevalence: float) -> None:
    scores, _ = device_scores(np.random.default_rng(1), 100_000, prevalence)
    plain = estimate_performance(scores, THRESHOLD)
    for estimated, truth in ((plain.sensitivity, SENSITIVITY), (plain.specificity, SPECIFICITY)):
        assert abs(estimated.estimate - truth) > 0.01
        assert not estimated.lower <= truth <= estimated.upper


@pytest.mark.parametrize("prevalence", [0.18, 0.24, 0.30])
def test_adjusted_estimate_covers_the_devices_unchanged_performance(prevalence: float) -> None:
    scores, _ = device_scores(np.random.default_rng(2), 100_000, prevalence)
    adjusted = estimate_performance(scores, THRESHOLD, reference_prevalence=REFERENCE)
    assert adjusted.expected_prevalence == pytest.approx(prevalence, abs=0.006)
    for estimated, truth in (
        (adjusted.sensitivity, SENSITIVITY),
        (adjusted.specificity, SPECIFICITY),
    ):
        assert estimated.lower <= truth <= estimated.upper
        assert abs(estimated.estimate - truth) < 0.006


def test_adjusted_interval_covers_the_realised_metric_at_its_nominal_rate() -> None:
    rng = np.random.default_rng(3)
    covered = []
    for _ in range(400):
        scores, labels = device_scores(rng, 2000, 0.18)
        estimated = estimate_performance(scores, THRESHOLD, reference_prevalence=REFERENCE)
        realised = float(np.mean(scores[labels] >= THRESHOLD))
        covered.append(estimated.sensitivity.lower <= realised <= estimated.sensitivity.upper)
    assert 0.92 <= np.mean(covered) <= 0.98


def test_adjusted_interval_is_wider_than_at_a_known_prevalence() -> None:
    scores, _ = device_scores(np.random.default_rng(4), 2000, 0.18)
    adjusted = estimate_performance(scores, THRESHOLD, reference_prevalence=REFERENCE)
    at_known = performance_from_sums(
        score_sums(adjust_to_prevalence(scores, REFERENCE, 0.18), scores >= THRESHOLD)
    )
    assert adjusted.sensitivity.se > 1.05 * at_known.sensitivity.se
    assert adjusted.specificity.se > 1.05 * at_known.specificity.se


@pytest.mark.parametrize(
    ("prevalence", "metric", "claimed"),
    [(0.18, "sensitivity", SENSITIVITY), (0.30, "specificity", SPECIFICITY)],
)
def test_windowed_test_against_the_claim_keeps_its_false_alarm_rate_under_label_shift(
    prevalence: float, metric: str, claimed: float
) -> None:
    scores, _ = device_scores(np.random.default_rng(5), 500 * 200, prevalence)
    adjusted = window_alarms(metric, claimed, scores, REFERENCE, THRESHOLD)
    plain = window_alarms(metric, claimed, scores, None, THRESHOLD)
    nominal = 500 / 5000
    assert np.mean(adjusted) <= nominal + 3 * math.sqrt(nominal * (1 - nominal) / 200)
    assert np.mean(plain) >= 2.5 * nominal


def test_a_sensitivity_drop_from_a_raised_threshold_is_still_detected() -> None:
    scores, labels = device_scores(np.random.default_rng(6), 500 * 40, 0.18)
    raised = 0.6
    assert np.mean(scores[labels] >= raised) < SENSITIVITY - 0.1
    alarms = window_alarms("sensitivity", SENSITIVITY, scores, REFERENCE, raised)
    assert np.mean(alarms) >= 0.9


def test_a_drop_of_the_positives_scores_reads_mostly_as_a_lower_prevalence() -> None:
    """The adjustment's blind spot, pinned: with P(score | y) changed, EM takes fewer high
    scores for fewer positives, so the adjusted estimate hides most of the drop (the
    unadjusted one, and the score-drift test, see more of it)."""
    scores, labels = device_scores(np.random.default_rng(7), 20_000, 0.18, positive_mean=1.4)
    realised = float(np.mean(scores[labels] >= THRESHOLD))
    adjusted = estimate_performance(scores, THRESHOLD, reference_prevalence=REFERENCE)
    plain = estimate_performance(scores, THRESHOLD)
    assert adjusted.expected_prevalence < 0.15
    assert adjusted.sensitivity.estimate > realised + 0.1
    assert plain.sensitivity.estimate < adjusted.sensitivity.estimate


def test_completed_window_agrees_with_the_batch_adjusted_estimate() -> None:
    scores, _ = device_scores(np.random.default_rng(8), 500, 0.18)
    detector = WindowedPerformanceEstimate("sensitivity", 0.7, 500, 5000, REFERENCE)
    for s in scores:
        detector.update(float(s), risk=float(s >= THRESHOLD))
    windowed = detector.last_window()
    batch = estimate_performance(scores, THRESHOLD, reference_prevalence=REFERENCE)
    assert windowed is not None
    assert windowed.expected_prevalence == pytest.approx(batch.expected_prevalence, abs=2e-3)
    for metric in ("sensitivity", "specificity", "ppv"):
        got, expected = getattr(windowed, metric), getattr(batch, metric)
        assert got.estimate == pytest.approx(expected.estimate, abs=2e-3)
        assert got.se == pytest.approx(expected.se, rel=0.05)


# Written by the release before the prior-shift option and the shared window-state helper
# (specificity, claimed 0.8, window 50, arl0 1000; Beta(1, 3) scores, seed 11, 76 cases).
OLD_STATE = {
    "schema_version": 1,
    "detector": "WindowedPerformanceEstimate",
    "settings": {"metric": "specificity", "claimed": 0.8, "window": 50, "arl0": 1000.0},
    "state": {
        "last": [18, 9.68172973800744, 4.181690005570389, 5.558199872160821, 0.7953622498166859],
        "open": [
            26,
            9,
            4.162645677325874,
            3.494378524635916,
            2.015930642024657,
            0.7893117692919298,
        ],
    },
}


def test_a_state_from_before_the_option_loads_and_writes_the_same_running_state() -> None:
    restored = Detector.from_state(json.loads(json.dumps(OLD_STATE)))
    assert isinstance(restored, WindowedPerformanceEstimate)
    assert restored.reference_prevalence is None
    assert restored.to_state()["state"] == OLD_STATE["state"]


def test_running_state_json_is_what_the_release_before_wrote() -> None:
    rng = np.random.default_rng(11)
    detector = WindowedPerformanceEstimate("specificity", claimed=0.8, window=50, arl0=1000)
    scores = rng.beta(1, 3, 130)
    rng.random(130)
    for s in scores[:76]:
        detector.update(float(s), risk=float(s >= 0.3))
    assert detector.to_state()["state"] == OLD_STATE["state"]


def _adjusted_after(n: int) -> WindowedPerformanceEstimate:
    detector = WindowedPerformanceEstimate("sensitivity", 0.7, 50, 1000, REFERENCE)
    scores, _ = device_scores(np.random.default_rng(9), n, 0.2)
    for s in scores:
        detector.update(float(s), risk=float(s >= THRESHOLD))
    return detector


@pytest.mark.parametrize(
    "tamper",
    [
        lambda s: s["state"]["histogram"]["counts"][0].__setitem__(0, 999),
        lambda s: s["state"]["histogram"]["sums"][1].__setitem__(0, 5.0),
        lambda s: s["state"].pop("histogram"),
        lambda s: s["state"].__setitem__("last_prior_shift", [2.0, 0.0, None, None, None]),
        lambda s: s["state"].__setitem__("last_prior_shift", None),
    ],
)
def test_an_inconsistent_adjusted_state_is_rejected(tamper: object) -> None:
    state = json.loads(json.dumps(_adjusted_after(70).to_state()))
    tamper(state)  # type: ignore[operator]
    with pytest.raises(StateError):
        Detector.from_state(state)


@pytest.mark.parametrize("reference", [0.0, 1.0, -0.2, float("nan"), True, "0.2"])
def test_invalid_reference_prevalence_is_rejected(reference: object) -> None:
    with pytest.raises(ValueError, match="reference_prevalence"):
        WindowedPerformanceEstimate("sensitivity", 0.7, reference_prevalence=reference)  # type: ignore[arg-type]


_score = st.one_of(
    st.floats(min_value=0.0, max_value=1.0), st.sampled_from([0.0, 1.0, 5e-324, 0.24])
)
_case = st.tuples(_score, st.sampled_from([0.0, 1.0]))


@settings(max_examples=200, deadline=None)
@given(
    cases=st.lists(_case, max_size=40),
    split=st.integers(min_value=0, max_value=40),
    metric=st.sampled_from(["sensitivity", "specificity"]),
)
# Found by CI: a slope over a vanishing denominator overflowed squaring it.
@example(
    cases=[(0.0, 0.0), (0.0, 0.0), (2.0858818718495128e-100, 0.0), (2.0858818718495128e-100, 1.0)],
    split=0,
    metric="sensitivity",
)
def test_any_scores_are_processed_and_round_trip_with_small_windows(
    cases: list[tuple[float, float]], split: int, metric: str
) -> None:
    original = WindowedPerformanceEstimate(metric, 0.7, 4, 100, REFERENCE)  # type: ignore[arg-type]
    before = [original.update(s, risk=d) for s, d in cases[:split]]
    restored = Detector.from_state(json.loads(json.dumps(original.to_state(), allow_nan=False)))
    after = [original.update(s, risk=d) for s, d in cases[split:]]
    assert [restored.update(s, risk=d) for s, d in cases[split:]] == after
    for result in before + after:
        assert math.isfinite(result.statistic)
    last = original.last_window()
    if last is not None:
        for estimate in (last.sensitivity, last.specificity, last.ppv):
            assert math.isnan(estimate.estimate) or 0.0 <= estimate.estimate <= 1.0
            assert 0.0 <= estimate.lower <= estimate.upper <= 1.0


def test_a_state_taken_does_not_change_as_the_detector_moves_on() -> None:
    detector = _adjusted_after(70)
    state = detector.to_state()
    taken = json.dumps(state)
    scores, _ = device_scores(np.random.default_rng(10), 60, 0.3)
    for s in scores:
        detector.update(float(s), risk=float(s >= THRESHOLD))
    assert json.dumps(state) == taken != json.dumps(detector.to_state())
