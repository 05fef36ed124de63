"""The demo scenario end to end on a real stack: every injected change detected in bound.

Runs what ``postmarket demo`` runs (collectors -> Kafka -> worker -> evidence store ->
reports) on a stack of its own, since the scoring reads whole topics and must see only
this run. Takes 2-4 minutes on two cores.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from rich.console import Console

from launcher.demo import DEMO_SCENARIO, DemoResult, run_demo
from launcher.stack import manager
from postmarket.config import Settings
from tests.conftest import release_stack_home
from tests.integration.pipeline_io import free_port

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(900)]


@pytest.fixture(scope="module")
def demo_run(
    request: pytest.FixtureRequest, stack_home_factory: Callable[[str], Path]
) -> Iterator[DemoResult]:
    home = stack_home_factory("pms-demo-")
    settings = Settings(home=home, worker_metrics_port=free_port())
    try:
        stack = manager.up(settings)
        yield run_demo(stack.settings, Console(file=io.StringIO()), DEMO_SCENARIO, 900.0)
    finally:
        manager.down(settings)
        release_stack_home(request, home)


def test_every_injected_change_is_detected_within_its_stated_bound(demo_run: DemoResult) -> None:
    late = {
        change.name: (change.detected, change.delay_cases, change.delay_days, str(change.bound))
        for change in demo_run.scorecard.changes
        if not change.within_bound
    }
    assert late == {}
    assert len(demo_run.scorecard.changes) == 7


def test_no_false_alarm_on_the_streams_and_sites_no_change_touched(demo_run: DemoResult) -> None:
    assert demo_run.scorecard.false_alarms_on_untouched == ()


def test_the_run_writes_a_report_per_device_with_its_alerts(demo_run: DemoResult) -> None:
    assert set(demo_run.reports) == {"dr-screen", "lung-nodule"}
    dr_report = demo_run.reports["dr-screen"].read_text(encoding="utf-8")
    assert "2.2.0.0" in dr_report
    assert demo_run.alerts_stored == demo_run.scorecard.alerts
