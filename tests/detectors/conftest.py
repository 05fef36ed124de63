"""Factories shared by the detector tests: one valid configuration and one case stream per class."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pytest
from hypothesis import strategies as st

from detectors import (
    BernoulliCUSUM,
    BernoulliGLRCUSUM,
    BernoulliMultiCUSUM,
    BetaBinomialConfidenceSequence,
    Detector,
    NormalCUSUM,
    RiskAdjustedCUSUM,
    WindowedCalibrationTest,
    WindowedChiSquareDrift,
    WindowedKSDrift,
    WindowedPerformanceEstimate,
)

Case = tuple[float, float | None]
"""One case as passed to ``update``: ``(x, risk)``."""


@dataclass(frozen=True)
class DetectorCase:
    """How to build one detector class and feed it valid cases."""

    make: Callable[[], Detector]
    cases: Callable[[np.random.Generator, int], list[Case]]
    """``n`` valid cases drawn with ``rng``, part in control and part drifted."""
    hypothesis_case: st.SearchStrategy[Case]
    """Any valid case (for property tests)."""
    invalid_cases: tuple[Case, ...]
    """Cases that must raise ValueError and leave the state unchanged."""
    max_bytes: int = 700
    """In-process bytes per instance (``state_size_bytes``), as documented in its Notes."""
    max_json_bytes: int = 600
    """Bytes of its JSON state, settings included."""


def _binary_cases(
    p_before: float, p_after: float
) -> Callable[[np.random.Generator, int], list[Case]]:
    def draw(rng: np.random.Generator, n: int) -> list[Case]:
        rate = np.where(np.arange(n) < n // 2, p_before, p_after)
        return [(int(v), None) for v in rng.random(n) < rate]

    return draw


def _risk_cases(rng: np.random.Generator, n: int) -> list[Case]:
    risk = rng.uniform(0.01, 0.5, n)
    odds = np.where(np.arange(n) < n // 2, 1.0, 3.0) * risk / (1 - risk)
    event = rng.random(n) < odds / (1 + odds)
    return [(int(e), float(r)) for e, r in zip(event, risk, strict=True)]


def _normal_cases(rng: np.random.Generator, n: int) -> list[Case]:
    values = rng.normal(0.3, 0.1, n) + np.where(np.arange(n) < n // 2, 0.0, 0.15)
    return [(float(v), None) for v in values]


_SCORE_EDGES = [round(0.05 + 0.05 * i, 2) for i in range(10)]
_REFERENCE_SCORES = np.random.default_rng(12345).normal(0.3, 0.1, 5000)


def _make_windowed_ks() -> WindowedKSDrift:
    return WindowedKSDrift.from_reference(_REFERENCE_SCORES, _SCORE_EDGES, window=200, arl0=20_000)


_SCANNERS = ["Canon", "GE", "Philips", "Siemens", "United Imaging"]


def _make_windowed_chi_square() -> WindowedChiSquareDrift:
    return WindowedChiSquareDrift(_SCANNERS, [900, 1500, 700, 1400, 500], window=200, arl0=20_000)


def _scanner_cases(rng: np.random.Generator, n: int) -> list[Case]:
    before = rng.choice(5, size=n // 2, p=[0.18, 0.30, 0.14, 0.28, 0.10])
    after = rng.choice(6, size=n - n // 2, p=[0.10, 0.20, 0.14, 0.28, 0.25, 0.03])
    return [(int(code), None) for code in np.concatenate([before, after])]


def _scored_decision_cases(rng: np.random.Generator, n: int) -> list[Case]:
    """Calibrated scores; the cut-off moves from 0.35 to 0.6 halfway, so sensitivity drops."""
    scores = rng.beta(0.7, 2.0, n)
    called = scores >= np.where(np.arange(n) < n // 2, 0.35, 0.6)
    return [(float(p), float(d)) for p, d in zip(scores, called, strict=True)]


def _labelled_score_cases(rng: np.random.Generator, n: int) -> list[Case]:
    """Calibrated scores, then the odds of a positive label are 2.5 times what they say."""
    scores = rng.beta(1.0, 4.0, n)
    odds = np.where(np.arange(n) < n // 2, 1.0, 2.5) * scores / (1 - scores)
    labels = rng.random(n) < odds / (1 + odds)
    return [(int(y), float(p)) for y, p in zip(labels, scores, strict=True)]


_probability = st.floats(min_value=0.0, max_value=1.0)
_binary = st.tuples(st.sampled_from([0, 1, True, False, 0.0, 1.0]), st.none())
_finite = st.floats(allow_nan=False, allow_infinity=False)
_bad_binary: tuple[Case, ...] = (
    (float("nan"), None),
    (float("inf"), None),
    (2, None),
    (-1, None),
    (0.5, None),
    (1, 0.3),  # a risk given to a detector that does not use one
)

DETECTOR_CASES: dict[type[Detector], DetectorCase] = {
    BernoulliCUSUM: DetectorCase(
        make=lambda: BernoulliCUSUM(p0=0.128, p1=0.20, h=3.0, resolution=100),
        cases=_binary_cases(0.128, 0.30),
        hypothesis_case=_binary,
        invalid_cases=_bad_binary,
    ),
    BernoulliGLRCUSUM: DetectorCase(
        make=lambda: BernoulliGLRCUSUM(p0=0.128, p1=[0.2, 0.25, 0.4], h=[3.0, 4.0, 5.0]),
        cases=_binary_cases(0.128, 0.30),
        hypothesis_case=_binary,
        invalid_cases=_bad_binary,
    ),
    BernoulliMultiCUSUM: DetectorCase(
        make=lambda: BernoulliMultiCUSUM(p0=0.128, p1=[0.2, 0.25, 0.4], h=[3.0, 4.0, 5.0]),
        cases=_binary_cases(0.128, 0.30),
        hypothesis_case=_binary,
        invalid_cases=_bad_binary,
        max_bytes=900,  # per alternative its lattice constants (a, m, threshold) as well
    ),
    BetaBinomialConfidenceSequence: DetectorCase(
        make=lambda: BetaBinomialConfidenceSequence(p0=0.128, alpha=0.05),
        cases=_binary_cases(0.128, 0.30),
        hypothesis_case=_binary,
        invalid_cases=_bad_binary,
    ),
    NormalCUSUM: DetectorCase(
        make=lambda: NormalCUSUM(target=0.3, sigma=0.1, k=0.5, h=4.0),
        cases=_normal_cases,
        hypothesis_case=st.tuples(_finite, st.none()),
        invalid_cases=(
            (float("nan"), None),
            (float("inf"), None),
            (float("-inf"), None),
            (0.3, 0.5),
        ),
    ),
    RiskAdjustedCUSUM: DetectorCase(
        make=lambda: RiskAdjustedCUSUM(odds_ratio=2.0, h=3.0),
        cases=_risk_cases,
        hypothesis_case=st.tuples(st.sampled_from([0, 1]), st.floats(min_value=0.0, max_value=1.0)),
        invalid_cases=(
            (1, None),
            (1, float("nan")),
            (1, -0.1),
            (1, 1.5),
            (0.5, 0.2),
            (float("nan"), 0.2),
        ),
    ),
    WindowedKSDrift: DetectorCase(
        make=_make_windowed_ks,
        cases=_normal_cases,
        hypothesis_case=st.tuples(_finite, st.none()),
        invalid_cases=((float("nan"), None), (float("-inf"), None), (0.3, 0.5)),
        max_bytes=1200,
    ),
    WindowedChiSquareDrift: DetectorCase(
        make=_make_windowed_chi_square,
        cases=_scanner_cases,
        hypothesis_case=st.tuples(st.integers(min_value=0, max_value=5), st.none()),
        invalid_cases=((float("nan"), None), (6, None), (-1, None), (0.5, None), (1, 0.3)),
        max_bytes=1200,
    ),
    WindowedPerformanceEstimate: DetectorCase(
        make=lambda: WindowedPerformanceEstimate(
            "sensitivity", claimed=0.65, window=200, arl0=20_000
        ),
        cases=_scored_decision_cases,
        hypothesis_case=st.tuples(_probability, st.sampled_from([0, 1, 0.0, 1.0, True, False])),
        invalid_cases=(
            (float("nan"), 1.0),
            (float("inf"), 1.0),
            (1.5, 1.0),
            (-0.1, 0.0),
            (0.3, None),  # the decision is required
            (0.3, 0.5),
            (0.3, float("nan")),
            (0.3, 2.0),
        ),
        max_bytes=640,
        max_json_bytes=400,
    ),
    WindowedCalibrationTest: DetectorCase(
        make=lambda: WindowedCalibrationTest(window=200, arl0=20_000),
        cases=_labelled_score_cases,
        hypothesis_case=st.tuples(st.sampled_from([0, 1, 0.0, 1.0, True, False]), _probability),
        invalid_cases=(
            (1, None),
            (1, float("nan")),
            (1, -0.1),
            (1, 1.5),
            (0.5, 0.2),
            (float("nan"), 0.2),
        ),
        max_bytes=450,
        max_json_bytes=250,
    ),
}


VARIANT_CASES: dict[str, DetectorCase] = {
    "WindowedPerformanceEstimate[reference_prevalence]": DetectorCase(
        make=lambda: WindowedPerformanceEstimate(
            "sensitivity", claimed=0.65, window=200, arl0=20_000, reference_prevalence=0.26
        ),
        cases=_scored_decision_cases,
        hypothesis_case=DETECTOR_CASES[WindowedPerformanceEstimate].hypothesis_case,
        invalid_cases=DETECTOR_CASES[WindowedPerformanceEstimate].invalid_cases,
        max_bytes=2600,
        max_json_bytes=4700,
    ),
}
"""Settings of a class that change its state's layout: they run through the check list too."""


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Run every test that takes ``detector_case`` once per detector class (and variant)."""
    if "detector_case" in metafunc.fixturenames:
        metafunc.parametrize(
            "detector_case",
            [*DETECTOR_CASES.values(), *VARIANT_CASES.values()],
            ids=[*(klass.__name__ for klass in DETECTOR_CASES), *VARIANT_CASES],
        )


@pytest.fixture
def detector_cases() -> dict[type[Detector], DetectorCase]:
    """Every detector class with its test configuration."""
    return DETECTOR_CASES
