"""Render every dashboard to JSON, write it under ``dashboards/generated/``, or check it.

The generated files are committed: Grafana's file provisioning reads them as they are, and
a test fails when regenerating them would change anything.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import dashboard as model

from dashboards import fleet, regulator, site_collector

GENERATED_DIR = Path(__file__).resolve().parent / "generated"

DASHBOARDS: Mapping[str, Callable[[], model.Dashboard]] = {
    "fleet": fleet.build,
    "site-collector-health": site_collector.build,
    "regulator-evidence": regulator.build,
}
"""File stem -> builder; each dashboard is written to ``<stem>.json``."""


def to_json(dashboard: model.Dashboard) -> str:
    """The dashboard as stable JSON: sorted keys, two-space indent, final newline."""
    return json.dumps(dashboard, cls=JSONEncoder, indent=2, sort_keys=True) + "\n"


def to_dict(dashboard: model.Dashboard) -> dict[str, Any]:
    """The dashboard as Grafana's JSON model (what the HTTP API takes)."""
    loaded: dict[str, Any] = json.loads(to_json(dashboard))
    return loaded


def render_all() -> dict[str, str]:
    """File name -> JSON text of every dashboard."""
    return {f"{stem}.json": to_json(build()) for stem, build in DASHBOARDS.items()}


def write_all(directory: Path = GENERATED_DIR) -> list[Path]:
    """Write every dashboard into ``directory``; return the paths written."""
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name, text in render_all().items():
        path = directory / name
        path.write_text(text, encoding="utf-8")
        written.append(path)
    return written


def stale_files(directory: Path = GENERATED_DIR) -> list[str]:
    """Names of generated files that are missing, differ from a fresh build, or are extra."""
    fresh = render_all()
    stale = [
        name
        for name, text in fresh.items()
        if not (directory / name).is_file()
        or (directory / name).read_text(encoding="utf-8") != text
    ]
    extra = [p.name for p in directory.glob("*.json") if p.name not in fresh]
    return sorted(stale + extra)
