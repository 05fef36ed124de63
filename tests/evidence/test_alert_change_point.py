"""Where a CUSUM's alert places the change, in ``postmarket alerts show`` and the report's alert
table: the charted cases since the case after the CUSUM last sat at zero (its evidence's
``run_length``), and that case's time when the alert carries it."""

from __future__ import annotations

import re
import uuid
from datetime import timedelta

from evidence_builders import ACTOR, T0, make_alert, make_stream
from report_builders import DEVICE, FIRST_DAY, LAST_DAY, populated_store
from typer.testing import CliRunner

from evidence.report import build_report
from evidence.report_alerts import change_point_sentence
from evidence.report_render import render_html
from evidence.report_tables import report_tables
from evidence.store import EvidenceStore
from launcher.cli import app
from postmarket.versions import preset

CUSUM_ALERT = make_alert(
    alert_id=uuid.UUID("5e1f0c2a-0000-4000-8000-00000000c05a"),
    stream=make_stream(site_id="site-c"),
    detector="sensitivity_cusum",
    evidence={"charted_cases": 412, "run_length": 57, "true_positives": 300},
    change_began_at=T0 + timedelta(days=2, hours=3),
)
DRIFT_ALERT = make_alert(
    alert_id=uuid.UUID("5e1f0c2a-0000-4000-8000-00000000d71f"),
    detector="score_drift",
    evidence={"charted_cases": 250, "run_length": 250},
)


def test_a_cusum_alert_says_where_the_change_began() -> None:
    assert change_point_sentence(CUSUM_ALERT) == (
        f"change began 57 charted cases back (CUSUM estimate), at the case of "
        f"{T0 + timedelta(days=2, hours=3):%Y-%m-%d %H:%M} UTC"
    )


def test_a_cusum_alert_without_the_time_still_gives_the_cases() -> None:
    stored_before = CUSUM_ALERT.model_copy(update={"change_began_at": None})
    assert (
        change_point_sentence(stored_before)
        == "change began 57 charted cases back (CUSUM estimate)"
    )


def test_other_tests_place_no_change() -> None:
    assert change_point_sentence(DRIFT_ALERT) is None


def test_alerts_show_prints_where_the_change_began(sqlite_url: str) -> None:
    with EvidenceStore(sqlite_url) as store:
        store.record_alert(CUSUM_ALERT, actor=ACTOR)
        store.record_alert(DRIFT_ALERT, actor=ACTOR)
    runner = CliRunner()
    shown = runner.invoke(app, ["alerts", "show", "5e1f0c2a-0000-4000-8000-00000000c05a",
                                "--url", sqlite_url])  # fmt: skip
    assert shown.exit_code == 0, shown.output
    assert re.search(
        r"^change +change began 57 charted cases back \(CUSUM estimate\)", shown.output, re.M
    )
    drift = runner.invoke(app, ["alerts", "show", "5e1f0c2a-0000-4000-8000-00000000d71f",
                                "--url", sqlite_url])  # fmt: skip
    assert drift.exit_code == 0 and "change began" not in drift.output


def test_the_reports_alert_table_places_the_change(sqlite_url: str) -> None:
    with EvidenceStore(sqlite_url) as store:
        populated_store(store)
        store.record_alert(CUSUM_ALERT, actor=ACTOR)
        report = build_report(store, DEVICE, FIRST_DAY, LAST_DAY, preset("nmpa-syzb"))
    (alerts,) = [table for table in report_tables(report) if table.name == "alerts"]
    row = next(r for r in alerts.records() if r["alert_id"] == str(CUSUM_ALERT.alert_id))
    assert row["change_run_cases"] == 57
    section = re.search(r'<section id="alerts">.*?</section>', render_html(report))
    assert section and "change began 57 charted cases back (CUSUM estimate)" in section.group(0)
