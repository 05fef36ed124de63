"""Statistical core of post-market surveillance: sequential tests, drift tests, estimators.

A pure library (numpy, scipy and the standard library only). Every detector follows the
contract in :mod:`detectors.base`: ``update(x, risk=None) -> DetectorResult``,
``reset()``, and ``to_state()`` / ``Detector.from_state()`` through JSON-able dicts.
"""

from __future__ import annotations

from detectors.base import SCHEMA_VERSION, Detector, DetectorResult, StateError, state_size_bytes
from detectors.bernoulli_cusum import (
    BernoulliCUSUM,
    bernoulli_cusum_arl,
    bernoulli_cusum_arl0,
    bernoulli_cusum_arl1,
    bernoulli_cusum_threshold,
)
from detectors.bernoulli_glr_cusum import BernoulliGLRCUSUM, glr_arl, glr_design, glr_threshold
from detectors.bernoulli_multi_cusum import (
    BernoulliMultiCUSUM,
    MultiCUSUMDesign,
    multi_cusum_design,
    multi_cusum_resolution,
)
from detectors.beta_binomial_confidence_sequence import BetaBinomialConfidenceSequence
from detectors.calibration_drift import WindowCalibration, calibration_over_windows
from detectors.chi_square_drift import CategoricalDrift, chi_square_drift
from detectors.cohen_kappa import (
    KappaEstimate,
    agreement_table,
    cohen_kappa,
    cohen_kappa_from_table,
)
from detectors.confidence_based_performance_estimation import (
    CalibrationAssumption,
    EstimatedPerformance,
    PerformanceEstimate,
    check_calibration_assumption,
    estimate_performance,
)
from detectors.dersimonian_laird import (
    RandomEffectsMetaAnalysis,
    dersimonian_laird,
    i2_interval,
    logit_proportion_effects,
    pooled_proportion,
)
from detectors.expected_calibration_error import (
    expected_calibration_error,
    expected_calibration_error_under_calibration,
)
from detectors.fleet_false_alarm_budget import (
    expected_fleet_false_alarms,
    per_stream_arl0,
    stream_false_alarm_probability,
)
from detectors.fleiss_kappa import fleiss_kappa
from detectors.funnel_plot_limits import funnel_plot_limits, site_funnel_position
from detectors.holm_bonferroni import holm_adjusted_p_values
from detectors.kolmogorov_smirnov import (
    KSResult,
    binned_ks_statistic,
    ks_critical_value,
    ks_p_value,
    ks_two_sample,
)
from detectors.logistic_recalibration import CalibrationFit, calibration_intercept_slope
from detectors.normal_cusum import (
    NormalCUSUM,
    normal_cusum_arl,
    normal_cusum_threshold,
    siegmund_arl,
)
from detectors.population_stability_index import population_stability_index, psi_p_value
from detectors.prior_shift import (
    PriorShift,
    adjust_to_prevalence,
    adjusted_posterior_slope,
    estimate_prevalence,
    prevalence_standard_error,
)
from detectors.proportion_intervals import clopper_pearson_interval, wilson_interval
from detectors.risk_adjusted_cusum import RiskAdjustedCUSUM, risk_adjusted_cusum_arl
from detectors.roc_auc import (
    AUCComparison,
    AUCEstimate,
    delong_covariance,
    delong_test,
    roc_auc,
    roc_auc_ci,
)
from detectors.spiegelhalter_z_test import spiegelhalter_z_test
from detectors.windowed_calibration_test import CalibrationInTheLarge, WindowedCalibrationTest
from detectors.windowed_chi_square_drift import WindowedChiSquareDrift
from detectors.windowed_ks_drift import WindowedKSDrift
from detectors.windowed_performance_estimate import WindowedPerformanceEstimate

__all__ = [
    "SCHEMA_VERSION",
    "AUCComparison",
    "AUCEstimate",
    "BernoulliCUSUM",
    "BernoulliGLRCUSUM",
    "BernoulliMultiCUSUM",
    "BetaBinomialConfidenceSequence",
    "CalibrationAssumption",
    "CalibrationFit",
    "CalibrationInTheLarge",
    "CategoricalDrift",
    "Detector",
    "DetectorResult",
    "EstimatedPerformance",
    "KSResult",
    "KappaEstimate",
    "MultiCUSUMDesign",
    "NormalCUSUM",
    "PerformanceEstimate",
    "PriorShift",
    "RandomEffectsMetaAnalysis",
    "RiskAdjustedCUSUM",
    "StateError",
    "WindowCalibration",
    "WindowedCalibrationTest",
    "WindowedChiSquareDrift",
    "WindowedKSDrift",
    "WindowedPerformanceEstimate",
    "adjust_to_prevalence",
    "adjusted_posterior_slope",
    "agreement_table",
    "binned_ks_statistic",
    "calibration_intercept_slope",
    "calibration_over_windows",
    "check_calibration_assumption",
    "chi_square_drift",
    "cohen_kappa",
    "cohen_kappa_from_table",
    "delong_covariance",
    "delong_test",
    "dersimonian_laird",
    "estimate_performance",
    "estimate_prevalence",
    "expected_calibration_error",
    "expected_calibration_error_under_calibration",
    "fleiss_kappa",
    "funnel_plot_limits",
    "holm_adjusted_p_values",
    "i2_interval",
    "ks_critical_value",
    "ks_p_value",
    "ks_two_sample",
    "logit_proportion_effects",
    "pooled_proportion",
    "prevalence_standard_error",
    "population_stability_index",
    "psi_p_value",
    "roc_auc",
    "roc_auc_ci",
    "bernoulli_cusum_arl",
    "bernoulli_cusum_arl0",
    "bernoulli_cusum_arl1",
    "bernoulli_cusum_threshold",
    "glr_arl",
    "glr_design",
    "glr_threshold",
    "multi_cusum_design",
    "multi_cusum_resolution",
    "clopper_pearson_interval",
    "expected_fleet_false_alarms",
    "normal_cusum_arl",
    "normal_cusum_threshold",
    "per_stream_arl0",
    "risk_adjusted_cusum_arl",
    "siegmund_arl",
    "site_funnel_position",
    "spiegelhalter_z_test",
    "state_size_bytes",
    "stream_false_alarm_probability",
    "wilson_interval",
]
