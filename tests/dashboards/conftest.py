"""Fixtures reading the committed artefacts: generated dashboards and alert rules."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from dashboards.build import GENERATED_DIR

REPO = Path(__file__).resolve().parents[2]
RULES_DIR = REPO / "deploy" / "prometheus" / "rules"
RULE_TESTS_DIR = REPO / "deploy" / "prometheus" / "tests"
PROVISIONING_DIR = REPO / "deploy" / "grafana" / "provisioning"


@pytest.fixture(scope="session")
def generated_dashboards() -> dict[str, dict[str, Any]]:
    """File name -> the committed dashboard JSON."""
    return {
        path.name: json.loads(path.read_text(encoding="utf-8"))
        for path in sorted(GENERATED_DIR.glob("*.json"))
    }


@pytest.fixture(scope="session")
def alert_rules() -> list[dict[str, Any]]:
    """Every alerting rule of every rule file."""
    rules: list[dict[str, Any]] = []
    for path in sorted(RULES_DIR.glob("*.yml")):
        for group in yaml.safe_load(path.read_text(encoding="utf-8"))["groups"]:
            rules.extend(rule for rule in group["rules"] if "alert" in rule)
    return rules


@pytest.fixture(scope="session")
def rule_test_cases() -> list[dict[str, Any]]:
    """Every ``alert_rule_test`` entry of every promtool test file."""
    cases: list[dict[str, Any]] = []
    for path in sorted(RULE_TESTS_DIR.glob("*.yml")):
        for test in yaml.safe_load(path.read_text(encoding="utf-8"))["tests"]:
            cases.extend(test.get("alert_rule_test", []))
    return cases
