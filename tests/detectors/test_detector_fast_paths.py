"""Shortcuts in the detectors' updates give bit-for-bit what the plain computation gives."""

from __future__ import annotations

import copy
import dataclasses
import math
from typing import Any

import numpy as np
import pytest
from scipy.special import betaincc

from detectors import BetaBinomialConfidenceSequence, DetectorResult, WindowedPerformanceEstimate
from detectors.base import check_finite


def log_evidence_computed_in_full(test: BetaBinomialConfidenceSequence, s: int, t: int) -> float:
    """``log M_t(p0)`` with every term computed anew (the claims test before it kept its
    prior's terms)."""

    def log_beta(x: float, y: float) -> float:
        return math.lgamma(x) + math.lgamma(y) - math.lgamma(x + y)

    def log_tail(x: float, y: float) -> float:
        if test.alternative == "two_sided":
            return 0.0
        tail = float(betaincc(x, y, test.p0))
        return math.log(tail) if tail > 0.0 else -math.inf

    a, b, p = test.p0 * test.prior_strength, (1 - test.p0) * test.prior_strength, test.p0
    tail = log_tail(a + s, b + t - s) - log_tail(a, b)
    evidence = (
        log_beta(a + s, b + t - s) - log_beta(a, b) - s * math.log(p) - (t - s) * math.log1p(-p)
    ) + tail
    return max(evidence, -700.0)


@pytest.mark.parametrize("alternative", ["greater", "two_sided"])
@pytest.mark.parametrize("p0", [0.05, 0.182, 0.6])
def test_the_claims_tests_evidence_is_bit_for_bit_the_full_computation(
    alternative: Any, p0: float
) -> None:
    test = BetaBinomialConfidenceSequence(p0, alpha=1e-9, alternative=alternative)
    rng = np.random.default_rng(11)
    events = 0
    for case, adverse in enumerate(rng.random(3000) < p0 * 1.3, start=1):
        events += int(adverse)
        result = test.update(int(adverse))
        assert result.statistic == log_evidence_computed_in_full(test, events, case)


@pytest.mark.parametrize(
    "value",
    [0.5, 3, True, np.float64(0.25), np.int64(4), np.bool_(True), np.float32(0.5)],
)
def test_any_finite_real_is_accepted_as_its_float(value: Any) -> None:
    assert check_finite(value) == float(value)
    assert type(check_finite(value)) is float


@pytest.mark.parametrize(
    "value", [math.nan, math.inf, -math.inf, np.float64("nan"), "0.5", None, 1j, [0.5]]
)
def test_anything_else_is_refused(value: Any) -> None:
    with pytest.raises(ValueError, match="finite number"):
        check_finite(value)


@pytest.mark.parametrize("decision", [1.0, 0.0, 1, 0, True, np.float64(1.0), np.bool_(False)])
def test_the_estimate_takes_a_decision_of_any_real_type(decision: Any) -> None:
    estimate = WindowedPerformanceEstimate("sensitivity", 0.87, window=10, arl0=100.0)
    assert estimate.update(0.7, decision).n_events == int(decision)


@pytest.mark.parametrize("decision", [0.5, 2, "1", None, math.nan])
def test_the_estimate_refuses_what_is_no_decision(decision: Any) -> None:
    estimate = WindowedPerformanceEstimate("sensitivity", 0.87, window=10, arl0=100.0)
    with pytest.raises(ValueError):
        estimate.update(0.7, decision)


def test_a_result_is_the_same_frozen_record_however_it_is_built() -> None:
    positional = DetectorResult(True, 4.1, 4.0, 120, 30, 21)
    by_name = DetectorResult(
        fired=True, statistic=4.1, threshold=4.0, n_cases=120, n_events=30, run_length=21
    )
    assert positional == by_name and hash(positional) == hash(by_name)
    assert dataclasses.astuple(positional) == (True, 4.1, 4.0, 120, 30, 21)
    assert dataclasses.replace(positional, fired=False).fired is False
    assert copy.deepcopy(positional) == positional
    with pytest.raises(dataclasses.FrozenInstanceError):
        positional.fired = False  # type: ignore[misc]
    with pytest.raises(TypeError):
        DetectorResult(True, 4.1)  # type: ignore[call-arg]
