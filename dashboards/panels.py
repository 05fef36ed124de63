"""Small builders shared by the dashboards: the datasource, queries, panels and variables.

Every panel reads Prometheus through one datasource uid, which the provisioning file in
``deploy/grafana/provisioning/datasources/`` declares, so generated JSON needs no import
mapping. Panel ids are given in layout order by :func:`assemble`, which keeps the JSON
stable from one build to the next.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from grafana_foundation_sdk.builders import common as common_builders
from grafana_foundation_sdk.builders import dashboard as dashboard_builders
from grafana_foundation_sdk.builders import prometheus, stat, table, timeseries
from grafana_foundation_sdk.cog import builder as cogbuilder
from grafana_foundation_sdk.cog import variants as cogvariants
from grafana_foundation_sdk.models import common
from grafana_foundation_sdk.models import dashboard as model
from grafana_foundation_sdk.models.prometheus import PromQueryFormat

DATASOURCE_UID = "postmarket-prometheus"
DATASOURCE = model.DataSourceRef(type_val="prometheus", uid=DATASOURCE_UID)
TAG = "postmarket"
STREAM_VARIABLES = {"device_id": "device", "device_version": "version", "site_id": "site"}

PanelBuilder = cogbuilder.Builder[model.Panel]


@dataclass(frozen=True)
class Query:
    """One PromQL target: instant queries feed tables and stats, range queries graphs."""

    expr: str
    legend: str = ""
    instant: bool = False


def selector(*, with_site: bool = True, **matchers: str) -> str:
    """Label matchers of the stream template variables plus ``matchers`` (exact values).

    >>> selector(with_site=False, metric="sensitivity")
    'device_id=~"$device",device_version=~"$version",task=~"$task",metric="sensitivity"'
    """
    variables = {
        "device_id": "device",
        "device_version": "version",
        **({"site_id": "site"} if with_site else {}),
        "task": "task",
    }
    parts = [f'{label}=~"${variable}"' for label, variable in variables.items()]
    parts += [f'{label}="{value}"' for label, value in matchers.items()]
    return ",".join(parts)


def _targets(queries: Sequence[Query]) -> list[cogbuilder.Builder[cogvariants.Dataquery]]:
    targets: list[cogbuilder.Builder[cogvariants.Dataquery]] = []
    for index, query in enumerate(queries):
        target = (
            prometheus.Dataquery()
            .expr(query.expr)
            .legend_format(query.legend or "__auto")
            .ref_id(chr(ord("A") + index))
            .datasource(DATASOURCE)
        )
        if query.instant:
            target = target.instant().format(PromQueryFormat.TABLE)
        else:
            target = target.range()
        targets.append(target)
    return targets


def graph(
    title: str,
    description: str,
    queries: Sequence[Query],
    *,
    unit: str = "short",
    width: int = 12,
    height: int = 8,
    min_value: float | None = None,
    max_value: float | None = None,
) -> PanelBuilder:
    """A time series panel."""
    panel = (
        timeseries.Panel()
        .title(title)
        .description(description)
        .datasource(DATASOURCE)
        .targets(_targets(queries))
        .unit(unit)
        .span(width)
        .height(height)
        .line_width(1)
        .fill_opacity(10)
        .legend(
            common_builders.VizLegendOptions()
            .display_mode(common.LegendDisplayMode.TABLE)
            .placement(common.LegendPlacement.BOTTOM)
            .show_legend(True)
        )
    )
    if min_value is not None:
        panel = panel.min(min_value)
    if max_value is not None:
        panel = panel.max(max_value)
    return panel


def single_stat(
    title: str,
    description: str,
    query: Query,
    *,
    unit: str = "short",
    width: int = 6,
    height: int = 4,
    thresholds: Sequence[tuple[float | None, str]] = ((None, "green"),),
) -> PanelBuilder:
    """A stat panel of one instant query, coloured by ``thresholds`` (value, colour)."""
    return (
        stat.Panel()
        .title(title)
        .description(description)
        .datasource(DATASOURCE)
        .targets(_targets([Query(query.expr, query.legend, instant=True)]))
        .unit(unit)
        .span(width)
        .height(height)
        .color_mode(common.BigValueColorMode.BACKGROUND)
        .graph_mode(common.BigValueGraphMode.NONE)
        .reduce_options(common_builders.ReduceDataOptions().calcs(["lastNotNull"]).values(False))
        .thresholds(
            dashboard_builders.ThresholdsConfig()
            .mode(model.ThresholdsMode.ABSOLUTE)
            .steps([model.Threshold(value=value, color=color) for value, color in thresholds])
        )
    )


def instant_table(
    title: str,
    description: str,
    queries: Sequence[Query],
    *,
    width: int = 24,
    height: int = 8,
) -> PanelBuilder:
    """A table of instant queries, one row per series, merged on their common labels."""
    panel = (
        table.Panel()
        .title(title)
        .description(description)
        .datasource(DATASOURCE)
        .targets(_targets([Query(q.expr, q.legend, instant=True) for q in queries]))
        .span(width)
        .height(height)
        .with_transformation(model.DataTransformerConfig(id_val="merge", options={}))
    )
    return panel


def query_variable(
    name: str, label: str, metric: str, label_name: str, *, depends_on: str = ""
) -> dashboard_builders.QueryVariable:
    """A multi-select variable over a label's values; "All" means the regex ``.*``."""
    source = f"{metric}{{{depends_on}}}" if depends_on else metric
    return (
        dashboard_builders.QueryVariable(name)
        .label(label)
        .datasource(DATASOURCE)
        .query(f"label_values({source}, {label_name})")
        .refresh(model.VariableRefresh.ON_TIME_RANGE_CHANGED)
        .sort(model.VariableSort.ALPHABETICAL_ASC)
        .multi(True)
        .include_all(True)
        .all_value(".*")
        .current(model.VariableOption(selected=True, text="All", value="$__all"))
    )


def stream_variables(
    metric: str, *, with_site: bool = True
) -> list[cogbuilder.Builder[model.VariableModel]]:
    """device, version, (site,) task: each narrowed by the ones before it."""
    variables: list[cogbuilder.Builder[model.VariableModel]] = [
        query_variable("device", "Device", metric, "device_id"),
        query_variable(
            "version", "Version", metric, "device_version", depends_on='device_id=~"$device"'
        ),
    ]
    if with_site:
        variables.append(
            query_variable(
                "site",
                "Site",
                metric,
                "site_id",
                depends_on='device_id=~"$device",device_version=~"$version"',
            )
        )
    variables.append(
        query_variable("task", "Task", metric, "task", depends_on='device_id=~"$device"')
    )
    return variables


def link(title: str, uid: str) -> dashboard_builders.DashboardLink:
    """A link to another postmarket dashboard that keeps the time range and variables."""
    return (
        dashboard_builders.DashboardLink(title)
        .type(model.DashboardLinkType.LINK)
        .url(f"/d/{uid}")
        .keep_time(True)
        .include_vars(True)
        .icon("dashboard")
    )


def assemble(
    dashboard: dashboard_builders.Dashboard,
    rows: Sequence[tuple[str, Sequence[PanelBuilder]]],
) -> model.Dashboard:
    """Lay rows of panels out top to bottom with ids in reading order, and build."""
    panel_id = 0
    for title, panels in rows:
        panel_id += 1
        dashboard = dashboard.with_row(dashboard_builders.Row(title).id(panel_id))
        for panel in panels:
            panel_id += 1
            dashboard = dashboard.with_panel(panel.id(panel_id))  # type: ignore[attr-defined]
    return dashboard.build()
