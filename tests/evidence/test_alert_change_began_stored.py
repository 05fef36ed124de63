"""The store keeps when a CUSUM's change began (``Alert.change_began_at``, revision 12), on
an alert and on each recurrence, so ``alerts show`` and the report give the time for stored
alerts; alerts stored before the revision, and other tests' alerts, read back without it.

The store tests run on SQLite and on a real PostgreSQL (the ``store`` and ``evidence_url``
fixtures).
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from evidence_builders import ACTOR, T0, make_alert, make_stream
from report_builders import DEVICE, FIRST_DAY, LAST_DAY, populated_store
from sqlalchemy import Engine, inspect, text
from test_evidence_migrations import downgrade, seed_open_alerts_at_0007
from typer.testing import CliRunner

from evidence.migrate import current_revision, head_revision, make_engine, upgrade
from evidence.report import build_report
from evidence.report_render import render_html
from evidence.report_tables import report_tables
from evidence.store import EvidenceStore
from launcher.cli import app
from postmarket.versions import preset

BEGAN = T0 + timedelta(days=2, hours=3, minutes=17)
CUSUM_ALERT = make_alert(
    alert_id=uuid.UUID("0c4a9e51-0000-4000-8000-0000000be6a1"),
    stream=make_stream(site_id="site-c"),
    detector="sensitivity_cusum",
    evidence={"charted_cases": 412, "run_length": 57, "true_positives": 300},
    change_began_at=BEGAN,
)


def test_a_stored_alert_keeps_when_its_change_began(store: EvidenceStore) -> None:
    store.record_alert(CUSUM_ALERT, actor=ACTOR)
    assert store.alert(CUSUM_ALERT.alert_id).alert == CUSUM_ALERT
    (listed,) = store.alerts()
    assert listed.alert.change_began_at == BEGAN


def test_a_recurrence_keeps_when_its_change_began(store: EvidenceStore) -> None:
    store.record_alert(CUSUM_ALERT, actor=ACTOR)
    again = make_alert(
        stream=CUSUM_ALERT.stream,
        detector=CUSUM_ALERT.detector,
        evidence={"charted_cases": 300, "run_length": 41},
        change_began_at=BEGAN + timedelta(days=9),
        raised_at=CUSUM_ALERT.raised_at + timedelta(days=10),
    )
    store.record_alert(again, actor=ACTOR)
    assert store.alert_recurrences(CUSUM_ALERT.alert_id) == [again]


def alert_columns(engine: Engine, table: str) -> set[str]:
    return {column["name"] for column in inspect(engine).get_columns(table)}


def test_an_alert_stored_before_revision_12_reads_without_the_time_and_its_recurrence_keeps_it(
    evidence_url: str,
) -> None:
    old = str(uuid.UUID(int=7))
    engine = make_engine(evidence_url)
    try:
        upgrade(engine, "0011")
        seed_open_alerts_at_0007(engine, [old])
    finally:
        engine.dispose()
    recurrence = make_alert(
        stream=make_stream(),
        change_began_at=datetime(2026, 3, 5, 8, 30, tzinfo=UTC),
        raised_at=datetime(2026, 3, 9, tzinfo=UTC),
    )
    with EvidenceStore(evidence_url) as store:
        assert store.alert(old).alert.change_began_at is None
        store.record_alert(recurrence, actor=ACTOR)
        assert store.alert_recurrences(old) == [recurrence]


def test_revision_12_adds_the_column_to_both_tables_and_removes_it_again(
    evidence_url: str,
) -> None:
    engine = make_engine(evidence_url)
    try:
        upgrade(engine, "0011")
        seed_open_alerts_at_0007(engine, [str(uuid.UUID(int=1))])
        upgrade(engine, "0012")
        for table in ("alerts", "alert_recurrences"):
            assert "change_began_at" in alert_columns(engine, table)
        with engine.connect() as connection:
            assert connection.execute(text("SELECT change_began_at FROM alerts")).all() == [(None,)]

        downgrade(engine, "0011")
        assert current_revision(engine) == "0011"
        for table in ("alerts", "alert_recurrences"):
            assert "change_began_at" not in alert_columns(engine, table)
        with engine.connect() as connection:
            assert connection.execute(text("SELECT count(*) FROM alerts")).scalar() == 1

        upgrade(engine)
        assert current_revision(engine) == head_revision()
    finally:
        engine.dispose()


def test_alerts_show_gives_the_time_the_change_began_for_a_stored_alert(sqlite_url: str) -> None:
    with EvidenceStore(sqlite_url) as store:
        store.record_alert(CUSUM_ALERT, actor=ACTOR)
    shown = CliRunner().invoke(
        app, ["alerts", "show", str(CUSUM_ALERT.alert_id), "--url", sqlite_url]
    )
    assert shown.exit_code == 0, shown.output
    assert f"at the case of {BEGAN:%Y-%m-%d %H:%M} UTC" in shown.output


def test_the_report_gives_the_time_the_change_began_for_a_stored_alert(sqlite_url: str) -> None:
    with EvidenceStore(sqlite_url) as store:
        populated_store(store)
        store.record_alert(CUSUM_ALERT, actor=ACTOR)
        report = build_report(store, DEVICE, FIRST_DAY, LAST_DAY, preset("nmpa-syzb"))
    (alerts,) = [table for table in report_tables(report) if table.name == "alerts"]
    row = next(r for r in alerts.records() if r["alert_id"] == str(CUSUM_ALERT.alert_id))
    assert row["change_began_at"] == BEGAN.isoformat()
    assert f"at the case of {BEGAN:%Y-%m-%d %H:%M} UTC" in render_html(report)
