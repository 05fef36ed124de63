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
from detectors.proportion_intervals import clopper_pearson_interval, wilson_interval
from detectors.risk_adjusted_cusum import RiskAdjustedCUSUM, risk_adjusted_cusum_arl

__all__ = [
    "SCHEMA_VERSION",
    "BernoulliCUSUM",
    "BetaBinomialConfidenceSequence",
    "Detector",
    "DetectorResult",
    "NormalCUSUM",
    "RiskAdjustedCUSUM",
    "StateError",
    "bernoulli_cusum_arl",
    "bernoulli_cusum_arl0",
    "bernoulli_cusum_arl1",
    "bernoulli_cusum_threshold",
    "clopper_pearson_interval",
    "expected_fleet_false_alarms",
    "normal_cusum_arl",
    "normal_cusum_threshold",
    "per_stream_arl0",
    "risk_adjusted_cusum_arl",
    "siegmund_arl",
    "state_size_bytes",
    "stream_false_alarm_probability",
    "wilson_interval",
]
