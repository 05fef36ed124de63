"""The demo's own logic: its detectors' ARL, its report window and its final table."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

import pytest
from rich.console import Console

from launcher.demo import (
    FALSE_ALARM_BUDGET,
    WORKER_PID_FILE,
    demo_plan,
    report_window,
    stop_kept_worker,
)
from launcher.demo_render import detection_table
from simulator.scenario import Scenario
from simulator.scoring import Bound, ChangeScore, Scorecard
from streams.false_alarm_budget import POOLED_TESTS_PER_GROUP
from streams.monitor_policy import TESTS_PER_STREAM, MonitorPolicy


def _stream(device: str, cases: int) -> dict[str, object]:
    return {"stream_key": f"{device}|1.0.0.0|site-a|task", "cases": cases}


def test_the_demo_plan_expects_its_budget_over_the_run_from_every_test_of_every_stream() -> None:
    truth = {"days": 73, "streams": [_stream("dr", 1000), _stream("lung", 3000)]}
    plan = demo_plan(truth, {"dr": 0.9, "lung": 0.7})
    assert plan["fleet_streams"] == 2
    assert plan["fleet_pooled_groups"] == 2  # each device's version and task
    assert plan["stream_predictions_per_year"] == 2000 * 5  # 73 days: a fifth of a year
    assert plan["followup_completeness"] == pytest.approx((900 + 2100) / 4000)
    policy = MonitorPolicy(**plan)
    share = policy.budget().share_per_test(TESTS_PER_STREAM)  # type: ignore[union-attr]
    # The charts spend their share for a fifth of a year, each claims test its whole alpha;
    # per group the pooled stage runs two charts and two claims tests.
    claims_tests = 2
    per_stream = (TESTS_PER_STREAM - claims_tests) / 5 + claims_tests
    per_group = (POOLED_TESTS_PER_GROUP - claims_tests) / 5 + claims_tests
    over_the_run = 2 * share * per_stream + 2 * share * per_group
    assert over_the_run == pytest.approx(FALSE_ALARM_BUDGET)
    # A claims test and its restarts after reviews expect alpha + alpha^2 + ... = share.
    assert policy.test_alpha() == pytest.approx(share / (1 + share))


def test_the_report_window_reaches_back_to_the_retrospective_uploads(
    demo_scenario: Scenario,
) -> None:
    first, last = report_window(demo_scenario)
    assert first == date(2025, 11, 6)  # 60 days before the start: the backfill
    assert last == date(2026, 3, 5)


def change(name: str, detected: bool, delay_cases: int | None) -> ChangeScore:
    return ChangeScore(
        name=name,
        kind="scanner_change",
        expected_signal="performance_drift",
        detected=detected,
        detectors=("sensitivity_cusum",) if detected else (),
        streams_detected=1 if detected else 0,
        streams_affected=1,
        delay_cases=delay_cases,
        delay_days=2.0 if detected else None,
        bound=Bound(cases=100, days=10.0),
    )


def test_the_table_says_yes_late_or_no_for_each_change() -> None:
    card = Scorecard(
        (change("on-time", True, 50), change("late", True, 500), change("missed", False, None)),
        (),
        alerts=2,
    )
    out = io.StringIO()
    Console(file=out, width=200).print(detection_table(card))
    rows = {line.split("│")[1].strip(): line for line in out.getvalue().splitlines() if "│" in line}
    assert "yes" in rows["on-time"]
    assert "late" in rows["late"]
    assert " no " in rows["missed"]


def sleeper(home: Path) -> subprocess.Popen[bytes]:
    """A stand-in for a kept demo worker: 'worker' in its command line, its home in env."""
    process = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(60)", "worker"],
        env={**os.environ, "POSTMARKET_HOME": str(home)},
        start_new_session=True,
    )
    # Just after exec, /proc/<pid>/cmdline can still read empty: wait until it shows, as a
    # worker a previous demo kept running has long done.
    cmdline = Path(f"/proc/{process.pid}/cmdline")
    deadline = time.monotonic() + 10
    while b"worker" not in cmdline.read_bytes() and time.monotonic() < deadline:
        time.sleep(0.01)
    return process


def test_the_next_demo_stops_the_worker_a_kept_run_left(tmp_path: Path) -> None:
    kept = sleeper(tmp_path)
    (tmp_path / WORKER_PID_FILE).write_text(str(kept.pid))
    stop_kept_worker(tmp_path, timeout_s=10)
    assert kept.wait(timeout=10) is not None
    assert not (tmp_path / WORKER_PID_FILE).exists()


def test_a_process_of_another_home_is_never_signalled(tmp_path: Path) -> None:
    other = sleeper(tmp_path / "elsewhere")
    try:
        (tmp_path / WORKER_PID_FILE).write_text(str(other.pid))
        stop_kept_worker(tmp_path, timeout_s=1)
        assert other.poll() is None
    finally:
        other.kill()
        other.wait()
