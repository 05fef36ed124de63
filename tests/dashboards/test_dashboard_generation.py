"""Dashboards as code: the committed JSON is what the builders produce, and it is sound."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml
from prometheus_client import CollectorRegistry

from collectors.metrics import CollectorMetrics
from dashboards import metric_names
from dashboards.build import DASHBOARDS, render_all, stale_files, write_all
from dashboards.panels import DATASOURCE_UID
from dashboards.queries import panel_queries, variable_queries

METRIC = re.compile(r"\b(postmarket_[a-z0-9_]+)\b")
PROVISIONING = Path(__file__).resolve().parents[2] / "deploy" / "grafana" / "provisioning"


def test_committed_json_matches_a_fresh_build() -> None:
    assert stale_files() == [], "run: postmarket dashboards build"


def test_building_twice_gives_identical_json() -> None:
    assert render_all() == render_all()


def test_a_changed_file_is_reported_stale(tmp_path: Path) -> None:
    write_all(tmp_path)
    (tmp_path / "fleet.json").write_text("{}\n")
    (tmp_path / "old.json").write_text("{}\n")
    assert stale_files(tmp_path) == ["fleet.json", "old.json"]


def test_one_dashboard_per_audience(generated_dashboards: dict[str, dict[str, Any]]) -> None:
    assert set(generated_dashboards) == {f"{stem}.json" for stem in DASHBOARDS}
    uids = [d["uid"] for d in generated_dashboards.values()]
    assert sorted(uids) == [
        "postmarket-fleet",
        "postmarket-regulator",
        "postmarket-site-collector",
    ]


def test_every_panel_has_a_query_and_an_id_of_its_own(
    generated_dashboards: dict[str, dict[str, Any]],
) -> None:
    for dashboard in generated_dashboards.values():
        ids = [panel["id"] for panel in dashboard["panels"]]
        assert len(ids) == len(set(ids)), dashboard["uid"]
        for panel in dashboard["panels"]:
            if panel["type"] != "row":
                assert [t["expr"] for t in panel["targets"]], panel["title"]


def test_every_query_uses_the_provisioned_datasource(
    generated_dashboards: dict[str, dict[str, Any]],
) -> None:
    provisioned = yaml.safe_load(
        (PROVISIONING / "datasources" / "postmarket.yml").read_text(encoding="utf-8")
    )
    assert [d["uid"] for d in provisioned["datasources"]] == [DATASOURCE_UID]
    for dashboard in generated_dashboards.values():
        for panel in dashboard["panels"]:
            for target in panel.get("targets", []):
                assert target["datasource"]["uid"] == DATASOURCE_UID, panel["title"]


def test_panel_metrics_are_defined_in_the_kernel_or_proposed(
    generated_dashboards: dict[str, dict[str, Any]],
) -> None:
    known = metric_names.emitted_names() | metric_names.proposed_names()
    used = {
        name
        for dashboard in generated_dashboards.values()
        for query in panel_queries(dashboard)
        for name in METRIC.findall(query.expr)
    }
    assert used - known == set()


def test_every_collector_counter_is_on_the_site_collector_dashboard(
    generated_dashboards: dict[str, dict[str, Any]],
) -> None:
    registry = CollectorRegistry()
    CollectorMetrics.create(registry)
    counters = {f"{family.name}_total" for family in registry.collect() if family.type == "counter"}
    dashboard = generated_dashboards["site-collector-health.json"]
    used = {name for query in panel_queries(dashboard) for name in METRIC.findall(query.expr)}
    assert metric_names.COLLECTOR_MLLP_CONNECTIONS_REFUSED in counters
    assert counters - used == set()


def test_fleet_filters_by_device_version_site_and_task(
    generated_dashboards: dict[str, dict[str, Any]],
) -> None:
    fleet = generated_dashboards["fleet.json"]
    assert [(v.variable, v.label) for v in variable_queries(fleet)] == [
        ("device", "device_id"),
        ("version", "device_version"),
        ("site", "site_id"),
        ("task", "task"),
    ]
    assert all(v["includeAll"] and v["allValue"] == ".*" for v in fleet["templating"]["list"])


def test_regulator_dashboard_is_read_only(
    generated_dashboards: dict[str, dict[str, Any]],
) -> None:
    assert generated_dashboards["regulator-evidence.json"]["editable"] is False


def test_provisioning_loads_the_generated_folder() -> None:
    provider = yaml.safe_load(
        (PROVISIONING / "dashboards" / "postmarket.yml").read_text(encoding="utf-8")
    )["providers"][0]
    assert provider["type"] == "file"
    assert provider["options"]["path"]
    assert provider["allowUiUpdates"] is False
