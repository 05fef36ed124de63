"""The Prometheus alerting rules: valid, unit-tested both ways, documented, and linked."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from dashboards import metric_names
from dashboards.build import DASHBOARDS, render_all

PROMETHEUS_DIR = Path(__file__).resolve().parents[2] / "deploy" / "prometheus"
RULES_DIR = PROMETHEUS_DIR / "rules"
RULE_TESTS_DIR = PROMETHEUS_DIR / "tests"
PROMTOOL = shutil.which("promtool") or "/usr/bin/promtool"
METRIC = re.compile(r"\b(postmarket_[a-z0-9_]+)\b")

pytestmark = pytest.mark.skipif(not Path(PROMTOOL).is_file(), reason="promtool not installed")


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([PROMTOOL, *args], capture_output=True, text=True, timeout=120)


def test_rule_files_pass_promtool_check() -> None:
    result = promtool("check", "rules", *map(str, sorted(RULES_DIR.glob("*.yml"))))
    assert result.returncode == 0, result.stdout + result.stderr


def test_rule_unit_tests_pass_promtool_test() -> None:
    result = promtool("test", "rules", *map(str, sorted(RULE_TESTS_DIR.glob("*.yml"))))
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_rule_has_a_firing_and_a_silent_case(
    alert_rules: list[dict[str, Any]], rule_test_cases: list[dict[str, Any]]
) -> None:
    firing = {case["alertname"] for case in rule_test_cases if case.get("exp_alerts")}
    silent = {case["alertname"] for case in rule_test_cases if not case.get("exp_alerts")}
    names = {rule["alert"] for rule in alert_rules}
    assert names - firing == set(), "rules never seen firing"
    assert names - silent == set(), "rules never seen silent"


def test_issue_rules_are_all_present(alert_rules: list[dict[str, Any]]) -> None:
    assert {rule["alert"] for rule in alert_rules} >= {
        "PostmarketDetectorAlert",
        "PostmarketPerformanceBelowClaim",
        "PostmarketUnregisteredVersionInField",
        "PostmarketDeadLetterSurge",
        "PostmarketCollectorSilent",
        "PostmarketOutboxNotDraining",
        "PostmarketOutboxNearLimit",
        "PostmarketConsumerLagHigh",
        "PostmarketFollowupCompletenessLow",
        "PostmarketWorkerDown",
    }


def test_every_rule_has_summary_description_and_dashboard_link(
    alert_rules: list[dict[str, Any]],
) -> None:
    uids = {f"/d/{build().uid}" for build in DASHBOARDS.values()}
    for rule in alert_rules:
        annotations = rule.get("annotations", {})
        assert annotations.get("summary"), rule["alert"]
        assert annotations.get("description"), rule["alert"]
        link = annotations.get("dashboard_url", "")
        assert link.split("?")[0] in uids, f"{rule['alert']}: {link!r} is no generated dashboard"


def test_every_rule_has_a_known_severity(alert_rules: list[dict[str, Any]]) -> None:
    for rule in alert_rules:
        severity = rule.get("labels", {}).get("severity")
        # The detector alert takes its severity from the counter's own label.
        if rule["alert"] == "PostmarketDetectorAlert":
            assert "severity" in rule["expr"]
        else:
            assert severity in {"info", "warning", "critical"}, rule["alert"]


def test_rule_metrics_are_defined_in_the_kernel_or_proposed(
    alert_rules: list[dict[str, Any]],
) -> None:
    known = metric_names.emitted_names() | metric_names.proposed_names()
    used = {name for rule in alert_rules for name in METRIC.findall(rule["expr"])}
    assert used - known == set()


def test_unregistered_version_rule_uses_the_kernel_detector_label(
    alert_rules: list[dict[str, Any]],
) -> None:
    rule = next(r for r in alert_rules if r["alert"] == "PostmarketUnregisteredVersionInField")
    assert f'detector="{metric_names.UNREGISTERED_CHANGE_DETECTOR}"' in rule["expr"]


def test_dashboard_links_in_rules_name_variables_the_dashboards_define(
    alert_rules: list[dict[str, Any]],
) -> None:
    import json

    variables = {
        f"/d/{d['uid']}": {v["name"] for v in d["templating"]["list"]}
        for d in (json.loads(text) for text in render_all().values())
    }
    for rule in alert_rules:
        path, _, query = rule["annotations"]["dashboard_url"].partition("?")
        named = set(re.findall(r"var-(\w+)=", query))
        assert named <= variables[path], rule["alert"]
