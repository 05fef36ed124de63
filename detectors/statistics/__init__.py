"""Batch statistics: functions and result classes over a whole sample, computed once.

What belongs here: an estimate, interval or test of a sample that is complete when it is
called (AUC with DeLong's variance, proportion intervals, Cohen's and Fleiss' kappa,
DerSimonian-Laird meta-analysis, funnel-plot limits, Holm's adjustment, calibration by
logistic recalibration, ECE and Spiegelhalter's z, the two-sample drift tests, the prior-shift
and confidence-based performance estimates). The reports, the standard test database gate and
the fleet review read them; a sequential detector may build on one (the windowed performance
estimate is the streaming form of :func:`estimate_performance`).

What does not: anything fed one case at a time with state carried between calls. A sequential
detector, its design (thresholds, ARLs, critical values, the fleet's false-alarm budget) and
the contract they follow are the package above, :mod:`detectors`; nothing here imports them.
A module here may take the input checks of :mod:`detectors.base` (``check_*``) and the other
modules of this package, always by absolute import.
"""

from __future__ import annotations

from detectors.statistics.calibration_drift import WindowCalibration, calibration_over_windows
from detectors.statistics.chi_square_drift import CategoricalDrift, chi_square_drift
from detectors.statistics.cohen_kappa import (
    KappaEstimate,
    agreement_table,
    cohen_kappa,
    cohen_kappa_from_table,
)
from detectors.statistics.confidence_based_performance_estimation import (
    CalibrationAssumption,
    EstimatedPerformance,
    PerformanceEstimate,
    check_calibration_assumption,
    estimate_performance,
)
from detectors.statistics.dersimonian_laird import (
    RandomEffectsMetaAnalysis,
    dersimonian_laird,
    i2_interval,
    logit_proportion_effects,
    pooled_proportion,
)
from detectors.statistics.expected_calibration_error import (
    expected_calibration_error,
    expected_calibration_error_under_calibration,
)
from detectors.statistics.fleiss_kappa import fleiss_kappa
from detectors.statistics.funnel_plot_limits import funnel_plot_limits, site_funnel_position
from detectors.statistics.holm_bonferroni import holm_adjusted_p_values
from detectors.statistics.kolmogorov_smirnov import (
    KSResult,
    binned_ks_statistic,
    ks_critical_value,
    ks_p_value,
    ks_two_sample,
)
from detectors.statistics.logistic_recalibration import CalibrationFit, calibration_intercept_slope
from detectors.statistics.population_stability_index import population_stability_index, psi_p_value
from detectors.statistics.prior_shift import (
    PriorShift,
    adjust_to_prevalence,
    adjusted_posterior_slope,
    estimate_prevalence,
    prevalence_standard_error,
)
from detectors.statistics.proportion_intervals import clopper_pearson_interval, wilson_interval
from detectors.statistics.roc_auc import (
    AUCComparison,
    AUCEstimate,
    delong_covariance,
    delong_test,
    roc_auc,
    roc_auc_ci,
)
from detectors.statistics.spiegelhalter_z_test import spiegelhalter_z_test

__all__ = [
    "AUCComparison",
    "AUCEstimate",
    "CalibrationAssumption",
    "CalibrationFit",
    "CategoricalDrift",
    "EstimatedPerformance",
    "KSResult",
    "KappaEstimate",
    "PerformanceEstimate",
    "PriorShift",
    "RandomEffectsMetaAnalysis",
    "WindowCalibration",
    "adjust_to_prevalence",
    "adjusted_posterior_slope",
    "agreement_table",
    "binned_ks_statistic",
    "calibration_intercept_slope",
    "calibration_over_windows",
    "check_calibration_assumption",
    "chi_square_drift",
    "clopper_pearson_interval",
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
    "population_stability_index",
    "prevalence_standard_error",
    "psi_p_value",
    "roc_auc",
    "roc_auc_ci",
    "site_funnel_position",
    "spiegelhalter_z_test",
    "wilson_interval",
]
