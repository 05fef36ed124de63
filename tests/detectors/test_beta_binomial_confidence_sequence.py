"""Anytime-valid claims test: type-I error under continuous monitoring, coverage, power."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from scipy.special import betaincc

from detectors import BetaBinomialConfidenceSequence, StateError
from detectors.beta_binomial_confidence_sequence import (
    _upper_regularized_beta,
    beta_binomial_log_evidence,
)
from detectors.statistics import wilson_interval

CLAIMED_MISS_RATE = 1 - 0.872


def ever_rejected(events: np.ndarray, p0: float, alpha: float, prior_strength: float) -> np.ndarray:
    """For each simulated stream (row), whether the claim is ever rejected by its last case."""
    s = np.cumsum(events, axis=1)
    t = np.arange(1, events.shape[1] + 1)
    a, b = p0 * prior_strength, (1 - p0) * prior_strength
    log_evidence = beta_binomial_log_evidence(s, t, p0, a, b)
    rejected = (log_evidence >= math.log(1 / alpha)) & (s > p0 * t)
    return np.asarray(rejected.any(axis=1))


def test_type_one_error_is_held_when_looking_after_every_case() -> None:
    # 3,000 streams of 4,000 cases at exactly the claimed rate (the worst case of the null)
    events = np.random.default_rng(31).random((3000, 4000)) < CLAIMED_MISS_RATE
    false_rejections = ever_rejected(events, CLAIMED_MISS_RATE, alpha=0.05, prior_strength=20.0)
    rate = false_rejections.mean()
    upper_99 = 0.05 + 2.33 * math.sqrt(0.05 * 0.95 / events.shape[0])
    assert rate <= upper_99, rate


def test_naive_repeated_wilson_test_does_not_hold_its_type_one_error() -> None:
    # the reason for the confidence sequence: a fixed-sample interval checked after every
    # 50 cases rejects a true claim far more often than alpha
    rng = np.random.default_rng(32)
    rejected = 0
    for _ in range(300):
        events = rng.random(5000) < CLAIMED_MISS_RATE
        s = np.cumsum(events)
        for n in range(50, 5001, 50):
            if wilson_interval(int(s[n - 1]), n)[0] > CLAIMED_MISS_RATE:
                rejected += 1
                break
    assert rejected / 300 > 0.10


def test_detector_agrees_with_the_vectorised_evidence() -> None:
    rng = np.random.default_rng(33)
    events = rng.random((20, 3000)) < 0.16
    expected = ever_rejected(events, CLAIMED_MISS_RATE, 0.05, 20.0)
    for row, should_reject in zip(events, expected, strict=True):
        detector = BetaBinomialConfidenceSequence(CLAIMED_MISS_RATE, alpha=0.05)
        fired = [detector.update(int(e)).fired for e in row.tolist()]
        assert any(fired) == should_reject
        assert sum(fired) <= 1


def test_a_drop_to_the_trial_lower_bound_is_detected() -> None:
    rng = np.random.default_rng(34)
    events = rng.random((200, 4000)) < 1 - 0.77
    assert ever_rejected(events, CLAIMED_MISS_RATE, 0.05, 20.0).mean() > 0.99


@pytest.mark.parametrize("true_rate", [0.05, 0.128, 0.3])
def test_interval_covers_the_true_rate_at_every_look(true_rate: float) -> None:
    rng = np.random.default_rng(35)
    misses = 0
    for _ in range(200):
        detector = BetaBinomialConfidenceSequence(true_rate, alpha=0.1)
        covered = True
        for n, event in enumerate((rng.random(400) < true_rate).tolist(), start=1):
            detector.update(int(event))
            if n % 40 == 0:
                low, high = detector.interval()
                covered &= low <= true_rate <= high
        misses += not covered
    assert misses / 200 <= 0.1 + 2.33 * math.sqrt(0.1 * 0.9 / 200)


def test_interval_contains_the_observed_rate_and_narrows() -> None:
    detector = BetaBinomialConfidenceSequence(0.1)
    widths = []
    for n, event in enumerate((np.random.default_rng(36).random(2000) < 0.1).tolist(), start=1):
        detector.update(int(event))
        if n in (100, 500, 2000):
            low, high = detector.interval()
            assert low <= detector.to_state()["state"]["n_events"] / n <= high
            widths.append(high - low)
    assert widths == sorted(widths, reverse=True)


def test_verdict_stays_below_claim_until_reset() -> None:
    detector = BetaBinomialConfidenceSequence(0.1, alpha=0.05)
    fired = [detector.update(1).fired for _ in range(30)]
    assert fired.count(True) == 1 and detector.verdict == "below claim"
    for _ in range(1000):
        detector.update(0)
    assert detector.verdict == "below claim"
    detector.reset()
    assert detector.verdict == "consistent"


def test_for_specificity_watches_the_false_positive_rate() -> None:
    assert BetaBinomialConfidenceSequence.for_specificity(0.907).p0 == pytest.approx(0.093)


def _evidence_after(
    events: int, cases: int, alternative: str
) -> tuple[BetaBinomialConfidenceSequence, float]:
    """The one-sided or two-sided test after ``events`` misses then non-misses, and its
    log-evidence then."""
    test = BetaBinomialConfidenceSequence(0.182, 0.05, alternative=alternative)  # type: ignore[arg-type]
    log_evidence = 0.0
    for case in range(cases):
        log_evidence = test.update(int(case < events)).statistic
    return test, log_evidence


def _expected_step(events: int, cases: int, p: float, alternative: str) -> float:
    """E_p[M_{t+1} / M_t] at (events, cases): at most 1 for a supermartingale under rate p."""
    test, now = _evidence_after(events, cases, alternative)
    state = test.to_state()
    after_miss = BetaBinomialConfidenceSequence.from_state(state).update(1).statistic
    after_hit = BetaBinomialConfidenceSequence.from_state(state).update(0).statistic
    return p * math.exp(after_miss - now) + (1 - p) * math.exp(after_hit - now)


@pytest.mark.parametrize("p", [0.182, 0.15, 0.10])
@pytest.mark.parametrize(("events", "cases"), [(5, 40), (30, 200), (60, 300), (200, 1000)])
def test_the_one_sided_evidence_is_a_supermartingale_at_and_below_the_acceptable_rate(
    p: float, events: int, cases: int
) -> None:
    assert _expected_step(events, cases, p, "greater") <= 1.0 + 1e-9


def test_the_two_sided_evidence_grows_in_expectation_below_the_claimed_rate() -> None:
    # Why the composite claim needs the one-sided mixture: far below p0 the two-sided one
    # gains on average (its mass below p0 fits the data), so Ville's bound would not hold.
    assert _expected_step(10, 200, 0.05, "two_sided") > 1.0
    assert _expected_step(10, 200, 0.05, "greater") <= 1.0


def test_the_one_sided_test_stays_finite_far_below_the_acceptable_rate() -> None:
    result = _evidence_after(0, 20_000, "greater")[0].update(0)
    assert math.isfinite(result.statistic) and not result.fired


@pytest.mark.parametrize(
    "running",
    [
        {"n_cases": 100, "n_events": 60, "run_length": 100, "rejected": False},  # past 1/alpha
        {"n_cases": 10, "n_events": 1, "run_length": 5, "rejected": False},  # run, no excess
        {"n_cases": 10, "n_events": 2, "run_length": 11, "rejected": False},
        {"n_cases": True, "n_events": 0, "run_length": 0, "rejected": False},
    ],
)
def test_a_restored_state_inconsistent_with_its_evidence_is_refused(
    running: dict[str, object],
) -> None:
    designed = BetaBinomialConfidenceSequence(0.182, 0.05, alternative="greater").to_state()
    with pytest.raises(StateError):
        BetaBinomialConfidenceSequence.from_state({**designed, "state": running})


@given(
    st.floats(min_value=1e-3, max_value=1e5),
    st.floats(min_value=1e-3, max_value=1e5),
    st.floats(min_value=0.0, max_value=1.0),
)
def test_the_one_sided_tail_is_scipys_betaincc_bit_for_bit(a: float, b: float, x: float) -> None:
    """The scalar routine the one-sided test calls gives what scipy's ufunc gives, exactly:
    the evidence, and so every state and signal, is unchanged by calling it directly."""
    expected, tail = float(betaincc(a, b, x)), _upper_regularized_beta(a, b, x)
    assert tail == expected or (math.isnan(expected) and math.isnan(tail))
