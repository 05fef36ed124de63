"""A stream's performance against its claims and its own reference: a façade keeping every
import of ``streams.performance`` working. New code imports from the concept's module, each
importing only those listed before it: :mod:`streams.monitor_policy` (how hard a stream is
watched), :mod:`streams.charted_claims` (the claims it charts, at which levels),
:mod:`streams.detector_design` (its detectors), :mod:`streams.stream_state` (what its monitor
holds, its two table states) and :mod:`streams.stream_monitor` (what it does with each case).
"""

from __future__ import annotations

from streams.charted_claims import (
    claimed_lower_bounds,
    claimed_performance,
    design_levels,
)
from streams.detector_design import (
    CHART_ALTERNATIVES,
    LABEL_FREE_KINDS,
    MAX_REFERENCE_CATEGORIES,
    OTHER_CATEGORY,
    REFERENCE_DRIFT_DETECTORS,
    SCORE_EDGES,
    UNKNOWN_CATEGORY,
    Design,
    bounded_reference,
    chart_alternatives,
    design_acquisition_drift,
    design_detectors,
    is_label_free,
    labelled_chart,
)
from streams.monitor_policy import (
    CHARTED_METRICS,
    SURVEILLANCE_YEAR,
    TESTS_PER_STREAM,
    ClaimedMetric,
    MonitorPolicy,
    planned_policy,
)
from streams.stream_monitor import (
    CELLS,
    MAX_STRATA,
    MIN_READ_PAIRS,
    STRATUM_DIMENSIONS,
    UNMONITORED_STREAM,
    Metric,
    Signal,
    StreamMonitor,
    confusion_cell,
)
from streams.stream_state import (
    BUDGET_FIELDS,
    STATE_VERSION,
    StreamStates,
    budgeted_policy,
    migrate_single_cusum,
    predates_budget,
)

__all__ = [
    "BUDGET_FIELDS",
    "CELLS",
    "CHARTED_METRICS",
    "CHART_ALTERNATIVES",
    "LABEL_FREE_KINDS",
    "MAX_REFERENCE_CATEGORIES",
    "MAX_STRATA",
    "MIN_READ_PAIRS",
    "OTHER_CATEGORY",
    "REFERENCE_DRIFT_DETECTORS",
    "SCORE_EDGES",
    "STATE_VERSION",
    "STRATUM_DIMENSIONS",
    "SURVEILLANCE_YEAR",
    "TESTS_PER_STREAM",
    "UNKNOWN_CATEGORY",
    "UNMONITORED_STREAM",
    "ClaimedMetric",
    "Design",
    "Metric",
    "MonitorPolicy",
    "Signal",
    "StreamMonitor",
    "StreamStates",
    "bounded_reference",
    "budgeted_policy",
    "chart_alternatives",
    "claimed_lower_bounds",
    "claimed_performance",
    "confusion_cell",
    "design_acquisition_drift",
    "design_detectors",
    "design_levels",
    "is_label_free",
    "labelled_chart",
    "migrate_single_cusum",
    "planned_policy",
    "predates_budget",
]
