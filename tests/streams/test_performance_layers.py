"""A stream's monitoring in concepts, bottom first: each module imports only those below it,
and ``streams.performance`` is a façade that still names everything it named."""

from __future__ import annotations

import ast
from pathlib import Path

import streams.performance

STREAMS = Path(__file__).resolve().parents[2] / "streams"
MONITORING_LAYERS = (
    "monitor_policy",
    "charted_claims",
    "detector_design",
    "stream_state",
    "stream_monitor",
    "performance",
)
"""How hard a stream is watched, what it charts, its detectors, its state, what it does with a
case, and the façade over them."""


def streams_modules_imported(stem: str) -> set[str]:
    """The ``streams`` modules a module imports, at its top or inside functions."""
    tree = ast.parse((STREAMS / f"{stem}.py").read_text())
    imported = {
        alias.name for n in ast.walk(tree) if isinstance(n, ast.Import) for alias in n.names
    }
    imported |= {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
    return {m.split(".")[1] for m in imported if m.startswith("streams.")}


def test_a_monitoring_module_imports_only_those_below_it() -> None:
    found = [
        f"{stem} imports streams.{module}"
        for level, stem in enumerate(MONITORING_LAYERS)
        for module in sorted(streams_modules_imported(stem) & set(MONITORING_LAYERS))
        if module not in MONITORING_LAYERS[:level]
    ]
    assert found == []


def test_the_facade_is_short_and_defines_nothing_of_its_own() -> None:
    source = (STREAMS / "performance.py").read_text()
    tree = ast.parse(source)
    defined = [n for n in tree.body if isinstance(n, ast.FunctionDef | ast.ClassDef)]
    assert len(source.splitlines()) < 100 and defined == []


NAMED_BEFORE_THE_SPLIT = frozenset(
    {
        "BUDGET_FIELDS",
        "CELLS",
        "CHARTED_METRICS",
        "CHART_ALTERNATIVES",
        "ClaimedMetric",
        "Design",
        "LABEL_FREE_KINDS",
        "MAX_REFERENCE_CATEGORIES",
        "MAX_STRATA",
        "MIN_READ_PAIRS",
        "Metric",
        "MonitorPolicy",
        "OTHER_CATEGORY",
        "REFERENCE_DRIFT_DETECTORS",
        "SCORE_EDGES",
        "STATE_VERSION",
        "STRATUM_DIMENSIONS",
        "SURVEILLANCE_YEAR",
        "Signal",
        "StreamMonitor",
        "StreamStates",
        "TESTS_PER_STREAM",
        "UNKNOWN_CATEGORY",
        "UNMONITORED_STREAM",
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
    }
)
"""Every public name ``streams/performance.py`` defined when it held all five concepts."""


def test_the_facade_still_names_everything_the_module_named() -> None:
    assert sorted(NAMED_BEFORE_THE_SPLIT - set(dir(streams.performance))) == []
