"""A stream's monitoring in concepts, bottom first: each module imports only those below it
(the façade ``streams.performance`` that once named them all is gone: nothing imported it)."""

from __future__ import annotations

import ast
from pathlib import Path

STREAMS = Path(__file__).resolve().parents[2] / "streams"
MONITORING_LAYERS = (
    "monitor_policy",
    "charted_claims",
    "detector_design",
    "stream_state",
    "stream_monitor",
)
"""How hard a stream is watched, what it charts, its detectors, its state, what it does with a
case."""


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
