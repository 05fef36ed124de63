"""The PromQL inside dashboards: every panel target and variable, and how to resolve the
template variables Grafana would substitute, so the queries can be run without Grafana."""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

GRAFANA_INTERVALS = {"$__rate_interval": "1m", "$__interval": "15s", "$__range": "1h"}
LABEL_VALUES = re.compile(r"^label_values\((?:(?P<match>.+),\s*)?(?P<label>\w+)\)$")


@dataclass(frozen=True)
class PanelQuery:
    """One target of one panel."""

    dashboard: str
    panel: str
    ref_id: str
    expr: str

    @property
    def name(self) -> str:
        return f"{self.dashboard} / {self.panel} / {self.ref_id}"


@dataclass(frozen=True)
class LabelValuesQuery:
    """A ``label_values(match, label)`` variable query (Grafana syntax, not PromQL)."""

    variable: str
    label: str
    match: str


def panel_queries(dashboard: Mapping[str, Any]) -> Iterator[PanelQuery]:
    """Every Prometheus target of every panel, rows' nested panels included."""
    for panel in _panels(dashboard.get("panels", [])):
        for target in panel.get("targets") or []:
            if target.get("expr"):
                yield PanelQuery(
                    str(dashboard.get("uid", "")),
                    str(panel.get("title", "")),
                    str(target.get("refId", "")),
                    str(target["expr"]),
                )


def _panels(panels: list[Mapping[str, Any]]) -> Iterator[Mapping[str, Any]]:
    for panel in panels:
        yield panel
        yield from _panels(panel.get("panels") or [])


def variable_queries(dashboard: Mapping[str, Any]) -> list[LabelValuesQuery]:
    """The ``label_values`` query variables of a dashboard, in order."""
    found = []
    for variable in dashboard.get("templating", {}).get("list", []):
        query = variable.get("query")
        if variable.get("type") != "query" or not isinstance(query, str):
            continue
        parsed = LABEL_VALUES.match(query.strip())
        if parsed is None:
            raise ValueError(f"variable {variable.get('name')}: not a label_values query")
        found.append(
            LabelValuesQuery(str(variable["name"]), parsed["label"], parsed["match"] or "")
        )
    return found


def resolve(expr: str, values: Mapping[str, str]) -> str:
    """``expr`` with Grafana's interval macros and the template ``values`` filled in.

    Variables not in ``values`` become ``.*``, what the dashboards' "All" option sends.

    >>> resolve('rate(x{site_id=~"$site"}[$__rate_interval])', {})
    'rate(x{site_id=~".*"}[1m])'
    """
    for macro, value in GRAFANA_INTERVALS.items():
        expr = expr.replace(macro, value)
    return re.sub(r"\$(\w+)", lambda match: values.get(match[1], ".*"), expr)
