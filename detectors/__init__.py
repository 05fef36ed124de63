"""Statistical core of post-market surveillance, in two groups.

**Sequential detectors** (this package's own modules): fed one case at a time, each follows
the contract in :mod:`detectors.base` (``update(x, risk=None) -> DetectorResult``,
``reset()``, and ``to_state()`` / ``Detector.from_state()`` through JSON-able dicts), and
every one is in the contract checklist of ``tests/detectors/test_contract.py``. Beside them
sit their design: thresholds and ARLs in each detector's module, the windowed drift tests'
critical values (:mod:`detectors.reference_calibration`) and the fleet's false-alarm budget
(:mod:`detectors.fleet_false_alarm_budget`).

**Batch statistics** (:mod:`detectors.statistics`): estimates, intervals and tests over a
whole sample (AUC, proportion intervals, kappa, meta-analysis, funnel limits, calibration,
the two-sample drift tests); import them from there. A detector may use a batch statistic,
never the reverse.

A pure library (numpy, scipy and the standard library only).
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
from detectors.fleet_false_alarm_budget import (
    expected_fleet_false_alarms,
    per_stream_arl0,
    stream_false_alarm_probability,
)
from detectors.normal_cusum import (
    NormalCUSUM,
    normal_cusum_arl,
    normal_cusum_threshold,
    siegmund_arl,
)
from detectors.risk_adjusted_cusum import RiskAdjustedCUSUM, risk_adjusted_cusum_arl
from detectors.windowed_calibration_test import CalibrationInTheLarge, WindowedCalibrationTest
from detectors.windowed_chi_square_drift import WindowedChiSquareDrift
from detectors.windowed_ks_drift import WindowedKSDrift
from detectors.windowed_performance_estimate import WindowedPerformanceEstimate

__all__ = [
    "SCHEMA_VERSION",
    "BernoulliCUSUM",
    "BernoulliGLRCUSUM",
    "BernoulliMultiCUSUM",
    "BetaBinomialConfidenceSequence",
    "CalibrationInTheLarge",
    "Detector",
    "DetectorResult",
    "MultiCUSUMDesign",
    "NormalCUSUM",
    "RiskAdjustedCUSUM",
    "StateError",
    "WindowedCalibrationTest",
    "WindowedChiSquareDrift",
    "WindowedKSDrift",
    "WindowedPerformanceEstimate",
    "bernoulli_cusum_arl",
    "bernoulli_cusum_arl0",
    "bernoulli_cusum_arl1",
    "bernoulli_cusum_threshold",
    "glr_arl",
    "glr_design",
    "glr_threshold",
    "multi_cusum_design",
    "multi_cusum_resolution",
    "expected_fleet_false_alarms",
    "normal_cusum_arl",
    "normal_cusum_threshold",
    "per_stream_arl0",
    "risk_adjusted_cusum_arl",
    "siegmund_arl",
    "state_size_bytes",
    "stream_false_alarm_probability",
]
