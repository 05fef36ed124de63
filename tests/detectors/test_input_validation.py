"""Bad numbers in, an error out: NaN and infinity are refused by name, numpy scalars accepted,
and a restored state is checked against its detector's settings."""

from __future__ import annotations

import copy
import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest

import detectors as d
import detectors.statistics as s
from detectors import Detector, StateError

NON_FINITE = (math.nan, math.inf, -math.inf)


def names(name: str) -> str:
    """A pattern for ``name`` as a word of an error message."""
    return rf"(^|[^\w]){re.escape(name)}([^\w]|$)"


# -- update ------------------------------------------------------------------------------


@pytest.mark.parametrize("bad", NON_FINITE)
def test_update_with_a_non_finite_case_raises_and_leaves_the_state_unchanged(
    detector_case: Any, bad: float
) -> None:
    detector = detector_case.make()
    cases = detector_case.cases(np.random.default_rng(9), 101)
    for x, risk in cases[:100]:
        detector.update(x, risk=risk)
    x, risk = cases[100]
    before = copy.deepcopy(detector.to_state())
    for bad_x, bad_risk in ((bad, risk), (x, bad)):
        with pytest.raises(ValueError):
            detector.update(bad_x, risk=bad_risk)
        assert detector.to_state() == before


# -- constructors and public functions ----------------------------------------------------

rng = np.random.default_rng(0)
SCORES = rng.beta(1.2, 3.0, 200)
LABELS = (rng.random(200) < SCORES).astype(float)
Y_TRUE = np.r_[np.ones(40), np.zeros(160)]
Y_SCORE = np.r_[rng.normal(1.0, 1.0, 40), rng.normal(0.0, 1.0, 160)]
FLEISS = [[0, 0, 0, 0, 14], [0, 2, 6, 4, 2], [0, 0, 3, 5, 6], [0, 3, 9, 2, 0], [2, 2, 8, 1, 1]]


@dataclass(frozen=True)
class Call:
    """A public function or constructor with valid arguments, and which of them are numbers."""

    function: Callable[..., Any]
    kwargs: dict[str, Any]
    numeric: tuple[str, ...]

    @property
    def id(self) -> str:
        return getattr(self.function, "__qualname__", str(self.function))


CALLS = [
    Call(
        d.BernoulliCUSUM,
        {"p0": 0.128, "p1": 0.2, "h": 3.0, "resolution": 100},
        ("p0", "p1", "h", "resolution"),
    ),
    Call(
        d.BernoulliCUSUM.for_arl0,
        {"p0": 0.128, "p1": 0.2, "arl0": 500.0, "resolution": 100},
        ("p0", "p1", "arl0", "resolution"),
    ),
    Call(
        d.BernoulliCUSUM.for_sensitivity,
        {"claimed": 0.872, "detect": 0.8, "arl0": 500.0},
        ("arl0",),
    ),
    Call(
        d.bernoulli_cusum_arl,
        {"p": 0.15, "p0": 0.128, "p1": 0.2, "h": 3.0, "resolution": 100},
        ("p", "p0", "p1", "h", "resolution"),
    ),
    Call(
        d.bernoulli_cusum_threshold,
        {"p0": 0.128, "p1": 0.2, "arl0": 500.0, "resolution": 100},
        ("p0", "p1", "arl0", "resolution"),
    ),
    Call(
        d.NormalCUSUM,
        {"target": 0.3, "sigma": 0.1, "k": 0.5, "h": 4.0},
        ("target", "sigma", "k", "h"),
    ),
    Call(d.normal_cusum_arl, {"shift": 0.5, "k": 0.5, "h": 4.0, "n": 32}, ("shift", "k", "h", "n")),
    Call(d.normal_cusum_threshold, {"arl0": 370.4, "k": 0.5}, ("arl0", "k")),
    Call(d.siegmund_arl, {"shift": 0.5, "k": 0.5, "h": 4.0}, ("shift", "k", "h")),
    Call(
        d.RiskAdjustedCUSUM,
        {"odds_ratio": 2.0, "h": 3.0, "null_odds_ratio": 1.0},
        ("odds_ratio", "h", "null_odds_ratio"),
    ),
    Call(
        d.risk_adjusted_cusum_arl,
        {
            "risks": [0.1, 0.2, 0.3],
            "odds_ratio": 2.0,
            "h": 2.0,
            "true_odds_ratio": 1.5,
            "null_odds_ratio": 1.0,
            "n_states": 100,
        },
        ("risks", "odds_ratio", "h", "true_odds_ratio", "null_odds_ratio", "n_states"),
    ),
    Call(
        d.BetaBinomialConfidenceSequence,
        {"p0": 0.128, "alpha": 0.05, "prior_strength": 20.0},
        ("p0", "alpha", "prior_strength"),
    ),
    Call(d.WindowedCalibrationTest, {"window": 200, "arl0": 20_000.0}, ("window", "arl0")),
    Call(
        d.WindowedPerformanceEstimate,
        {
            "metric": "sensitivity",
            "claimed": 0.65,
            "window": 200,
            "arl0": 20_000.0,
            "reference_prevalence": 0.3,
        },
        ("claimed", "window", "arl0", "reference_prevalence"),
    ),
    Call(
        s.ks_p_value,
        {"statistic": 0.1, "n_reference": 500, "n_recent": 100},
        ("statistic", "n_reference", "n_recent"),
    ),
    Call(
        s.ks_critical_value,
        {"alpha": 0.05, "n_reference": 500, "n_recent": 100},
        ("alpha", "n_reference", "n_recent"),
    ),
    Call(
        s.ks_two_sample,
        {"reference": SCORES[:100], "recent": SCORES[100:]},
        ("reference", "recent"),
    ),
    Call(
        s.binned_ks_statistic,
        {"reference_counts": [50, 30, 20], "recent_counts": [20, 30, 50]},
        ("reference_counts", "recent_counts"),
    ),
    Call(
        s.population_stability_index,
        {"reference_counts": [50, 30, 20], "recent_counts": [20, 30, 50], "pseudo_count": 0.5},
        ("reference_counts", "recent_counts", "pseudo_count"),
    ),
    Call(
        s.psi_p_value,
        {"psi": 0.02, "n_reference": 5000, "n_recent": 500, "n_bins": 10},
        ("psi", "n_reference", "n_recent", "n_bins"),
    ),
    Call(
        d.per_stream_arl0,
        {
            "cases_per_year": [500, 2000],
            "fleet_false_alarms_per_year": 2.0,
            "detectors_per_stream": 2,
        },
        ("cases_per_year", "fleet_false_alarms_per_year", "detectors_per_stream"),
    ),
    Call(
        d.expected_fleet_false_alarms,
        {"cases_per_year": [500, 2000], "arl0": [750, 3000], "detectors_per_stream": 1},
        ("cases_per_year", "arl0", "detectors_per_stream"),
    ),
    Call(
        d.stream_false_alarm_probability,
        {"cases_per_year": 2000, "arl0": 3000},
        ("cases_per_year", "arl0"),
    ),
    Call(
        s.calibration_intercept_slope,
        {"scores": SCORES, "labels": LABELS, "alpha": 0.05},
        ("scores", "labels", "alpha"),
    ),
    Call(
        s.calibration_over_windows,
        {"scores": SCORES, "labels": LABELS, "window": 100, "alpha": 0.05, "n_bins": 10},
        ("scores", "labels", "window", "alpha", "n_bins"),
    ),
    Call(
        s.expected_calibration_error,
        {"scores": SCORES, "labels": LABELS, "n_bins": 10},
        ("scores", "labels", "n_bins"),
    ),
    Call(
        s.expected_calibration_error_under_calibration,
        {"scores": SCORES, "n_bins": 10, "n_simulations": 20, "seed": 0},
        ("scores", "n_bins", "n_simulations", "seed"),
    ),
    Call(s.spiegelhalter_z_test, {"scores": SCORES, "labels": LABELS}, ("scores", "labels")),
    Call(
        s.check_calibration_assumption,
        {"scores": SCORES, "labels": LABELS, "alpha": 0.05},
        ("scores", "labels", "alpha"),
    ),
    Call(
        s.estimate_performance,
        {"scores": SCORES, "threshold": 0.3, "alpha": 0.05, "reference_prevalence": 0.3},
        ("scores", "threshold", "alpha", "reference_prevalence"),
    ),
    Call(
        s.wilson_interval, {"successes": 87, "n": 100, "alpha": 0.05}, ("successes", "n", "alpha")
    ),
    Call(
        s.clopper_pearson_interval,
        {"successes": 87, "n": 100, "alpha": 0.05},
        ("successes", "n", "alpha"),
    ),
    Call(
        s.cohen_kappa_from_table, {"table": [[20, 5], [10, 65]], "alpha": 0.05}, ("table", "alpha")
    ),
    Call(
        s.cohen_kappa,
        {"reader_a": [0, 1, 1, 0, 1], "reader_b": [0, 1, 0, 0, 1], "alpha": 0.05},
        ("alpha",),
    ),
    Call(
        s.fleiss_kappa,
        {"counts": FLEISS, "alpha": 0.05, "n_bootstrap": 50, "seed": 0},
        ("counts", "alpha", "n_bootstrap", "seed"),
    ),
    Call(
        s.dersimonian_laird,
        {"effects": [1.9, 2.2, 1.5], "variances": [0.1, 0.2, 0.15], "alpha": 0.05},
        ("effects", "variances", "alpha"),
    ),
    Call(
        s.logit_proportion_effects,
        {"successes": [88, 45], "n": [100, 50], "correction": 0.5},
        ("successes", "n", "correction"),
    ),
    Call(
        s.funnel_plot_limits,
        {"target": 0.87, "n": [120, 300], "coverage": 0.95},
        ("target", "n", "coverage"),
    ),
    Call(
        s.site_funnel_position,
        {"successes": 88, "n": 120, "target": 0.87, "coverage": 0.998},
        ("successes", "n", "target", "coverage"),
    ),
    Call(s.holm_adjusted_p_values, {"p_values": [0.01, 0.04, 0.2]}, ("p_values",)),
    Call(
        s.adjust_to_prevalence,
        {"scores": SCORES, "reference_prevalence": 0.5, "prevalence": 0.2},
        ("scores", "reference_prevalence", "prevalence"),
    ),
    Call(
        s.adjusted_posterior_slope,
        {"scores": SCORES, "reference_prevalence": 0.5, "prevalence": 0.2},
        ("scores", "reference_prevalence", "prevalence"),
    ),
    Call(
        s.estimate_prevalence,
        {
            "scores": SCORES,
            "reference_prevalence": 0.3,
            "weights": np.ones(200),
            "max_iter": 100,
            "tol": 1e-8,
        },
        ("scores", "reference_prevalence", "weights", "max_iter", "tol"),
    ),
    Call(
        s.prevalence_standard_error,
        {"scores": SCORES, "reference_prevalence": 0.3, "prevalence": 0.2, "weights": np.ones(200)},
        ("scores", "reference_prevalence", "prevalence", "weights"),
    ),
    Call(s.roc_auc, {"y_true": Y_TRUE, "y_score": Y_SCORE}, ("y_true", "y_score")),
    Call(
        s.roc_auc_ci,
        {"y_true": Y_TRUE, "y_score": Y_SCORE, "alpha": 0.05},
        ("y_true", "y_score", "alpha"),
    ),
    Call(
        s.delong_test,
        {"y_true": Y_TRUE, "y_score_a": Y_SCORE, "y_score_b": Y_SCORE[::-1], "alpha": 0.05},
        ("y_true", "y_score_a", "y_score_b", "alpha"),
    ),
]
"""Every public function and constructor of ``detectors`` (``d``, the sequential detectors and
their design) and ``detectors.statistics`` (``s``, the batch statistics) that takes numbers,
except those of the windowed KS and chi-square drift tests (their owners' to do)."""


def with_value(value: Any, bad: float) -> Any:
    """``value`` with ``bad`` in it: in place of a number, or as an array's first element."""
    if isinstance(value, int | float):
        return bad
    array = np.array(value, dtype=np.float64)
    array.flat[0] = bad
    return array


BAD_ARGUMENTS = [
    pytest.param(call, name, bad, id=f"{call.id}-{name}-{bad}")
    for call in CALLS
    for name in call.numeric
    for bad in NON_FINITE
]


@pytest.mark.parametrize(("call", "name", "bad"), BAD_ARGUMENTS)
def test_a_non_finite_argument_is_refused_by_name(call: Call, name: str, bad: float) -> None:
    kwargs = {**call.kwargs, name: with_value(call.kwargs[name], bad)}
    with pytest.raises(ValueError, match=names(name)):
        call.function(**kwargs)


@pytest.mark.parametrize("call", CALLS, ids=[c.id for c in CALLS])
def test_numpy_scalars_are_taken_as_the_numbers_they_are(call: Call) -> None:
    def as_numpy(value: Any) -> Any:
        if isinstance(value, bool) or not isinstance(value, int | float):
            return value
        return np.int64(value) if isinstance(value, int) else np.float64(value)

    numpy_kwargs = {k: as_numpy(v) for k, v in call.kwargs.items()}
    assert repr(call.function(**numpy_kwargs)) == repr(call.function(**call.kwargs))


@pytest.mark.parametrize("bad", [math.nan, math.inf, 2.5])
def test_chi_square_drift_refuses_a_count_that_is_not_a_whole_number(bad: float) -> None:
    with pytest.raises(ValueError, match=names("reference_counts['GE']")):
        s.chi_square_drift({"GE": bad, "Siemens": 40}, {"GE": 50, "Siemens": 40})  # type: ignore[dict-item]


def test_chi_square_drift_takes_numpy_counts() -> None:
    python = s.chi_square_drift({"GE": 60, "Siemens": 40}, {"GE": 50, "Siemens": 40})
    numpy = s.chi_square_drift(
        {"GE": np.int64(60), "Siemens": np.int32(40)}, {"GE": 50, "Siemens": 40}
    )  # type: ignore[dict-item]
    assert numpy == python


# -- restored states are checked against their settings ----------------------------------

STATE_DEFECTS: dict[str, list[dict[str, Any]]] = {
    "BernoulliCUSUM": [{"s": 10**6}, {"n_events": 10**6}, {"run_length": 10**6}, {"s": True}],
    "NormalCUSUM": [{"upper": 5.0}, {"lower": 1e6}, {"n_up": 10**6}, {"run_down": 10**6}],
    "RiskAdjustedCUSUM": [{"s": 3.0}, {"n_events": 10**6}, {"run_length": 10**6}],
    "WindowedCalibrationTest": [
        {"open": [3, 4, 1.0, 0.5]},  # more positives than cases
        {"open": [3, 1, 0.3, 0.6]},  # more variance p (1 - p) than expected positives p
    ],
    "WindowedPerformanceEstimate": [
        {"open": [3, 4, 1.0, 1.0, 0.5, 0.5]},  # more called cases than cases
        {"open": [True, 1, 0.5, 0.0, 0.25, 0.0]},
    ],
}
"""Running states no sequence of cases can produce, per detector (keys replaced)."""


@pytest.mark.parametrize(
    ("name", "defect"),
    [(name, defect) for name, defects in STATE_DEFECTS.items() for defect in defects],
)
def test_a_state_inconsistent_with_its_settings_is_refused(
    name: str, defect: dict[str, Any], detector_cases: dict[type[Detector], Any]
) -> None:
    case = next(c for klass, c in detector_cases.items() if klass.__name__ == name)
    detector = case.make()
    for x, risk in case.cases(np.random.default_rng(10), 3):
        detector.update(x, risk=risk)
    state = detector.to_state()
    state["state"].update(defect)
    with pytest.raises(StateError):
        Detector.from_state(state)
