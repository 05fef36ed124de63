"""Alembic migrations: an empty database and one at the previous revision reach head."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from evidence_builders import make_alert, make_stream
from sqlalchemy import Engine, inspect, text
from sqlalchemy.exc import IntegrityError

from evidence.migrate import (
    alembic_config,
    current_revision,
    head_revision,
    make_engine,
    upgrade,
)
from evidence.models import Base
from evidence.store import EvidenceStore

PREVIOUS = "0002"
ADDED_BY_HEAD = {"field_outcomes", "field_predictions"}


def test_empty_database_upgrades_to_head(evidence_url: str) -> None:
    engine = make_engine(evidence_url)
    try:
        upgrade(engine)
        assert current_revision(engine) == head_revision()
        assert ADDED_BY_HEAD <= set(inspect(engine).get_table_names())
    finally:
        engine.dispose()


def test_database_two_revisions_behind_upgrades_to_head(evidence_url: str) -> None:
    engine = make_engine(evidence_url)
    try:
        upgrade(engine, "0001")
        upgrade(engine)
        assert current_revision(engine) == head_revision()
    finally:
        engine.dispose()


def test_database_at_previous_revision_upgrades_and_keeps_its_data(evidence_url: str) -> None:
    engine = make_engine(evidence_url)
    try:
        upgrade(engine, PREVIOUS)
        assert current_revision(engine) == PREVIOUS
        assert not ADDED_BY_HEAD & set(inspect(engine).get_table_names())
        with engine.begin() as connection:
            connection.execute(
                text(
                    "INSERT INTO devices (device_key, name, manufacturer, created_at) "
                    "VALUES ('dr-screen', 'DR Screen', 'Acme', :now)"
                ),
                {"now": datetime(2026, 3, 1, tzinfo=UTC)},
            )
    finally:
        engine.dispose()
    with EvidenceStore(evidence_url) as store:
        assert current_revision(store.engine) == head_revision()
        assert [device.device_id for device in store.devices()] == ["dr-screen"]


def test_migrated_schema_matches_the_models(evidence_url: str) -> None:
    engine = make_engine(evidence_url)
    try:
        upgrade(engine)
        with engine.connect() as connection:
            differences = compare_metadata(MigrationContext.configure(connection), Base.metadata)
        assert differences == []
    finally:
        engine.dispose()


def test_opening_a_store_twice_is_harmless(evidence_url: str) -> None:
    with EvidenceStore(evidence_url):
        pass
    with EvidenceStore(evidence_url) as store:
        assert current_revision(store.engine) == head_revision()


def test_stock_alembic_command_upgrades_from_the_packaged_ini(sqlite_url: str) -> None:
    import os
    import subprocess
    import sys
    from pathlib import Path

    from evidence.migrate import INI_PATH

    alembic = Path(sys.executable).parent / "alembic"
    environment = {**os.environ, "POSTMARKET_EVIDENCE_URL": sqlite_url}
    subprocess.run(
        [str(alembic), "-c", str(INI_PATH), "upgrade", "head"],
        check=True,
        env=environment,
        cwd="/",
        capture_output=True,
    )
    engine = make_engine(sqlite_url)
    try:
        assert current_revision(engine) == head_revision()
    finally:
        engine.dispose()


def downgrade(engine: Engine, revision: str) -> None:
    config = alembic_config()
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.downgrade(config, revision)


def device_version_columns(engine: Engine) -> set[str]:
    return {column["name"] for column in inspect(engine).get_columns("device_versions")}


def seed_version_at_0006(engine: Engine) -> None:
    """A device with a registered version (referenced by its registration) at revision 6."""
    now = datetime(2026, 3, 1, tzinfo=UTC)
    with engine.begin() as connection:
        connection.execute(
            text(
                "INSERT INTO devices (id, device_key, name, manufacturer, created_at) "
                "VALUES (1, 'dr-screen', 'DR Screen', 'Acme', :now)"
            ),
            {"now": now},
        )
        connection.execute(
            text(
                "INSERT INTO device_versions "
                "(id, device_id, version, major, minor, corrective, bugfix, created_at) "
                "VALUES (1, 1, '2.1.0.3', 2, 1, 0, 3, :now)"
            ),
            {"now": now},
        )
        connection.execute(
            text(
                "INSERT INTO registrations "
                "(version_id, status, regulator, reference, created_at) "
                "VALUES (1, 'registered', 'NMPA', 'R-1', :now)"
            ),
            {"now": now},
        )


def test_revision_7_adds_the_reference_prevalence_and_removes_it_again(
    evidence_url: str,
) -> None:
    engine = make_engine(evidence_url)
    try:
        upgrade(engine, "0006")
        seed_version_at_0006(engine)
        assert "reference_prevalence" not in device_version_columns(engine)

        upgrade(engine, "0007")
        assert "reference_prevalence" in device_version_columns(engine)
        with engine.begin() as connection:
            assert connection.execute(
                text("SELECT version, reference_prevalence FROM device_versions")
            ).all() == [("2.1.0.3", None)]
            connection.execute(text("UPDATE device_versions SET reference_prevalence = 0.24"))

        downgrade(engine, "0006")
        assert current_revision(engine) == "0006"
        assert "reference_prevalence" not in device_version_columns(engine)
        with engine.connect() as connection:
            assert connection.execute(text("SELECT version FROM device_versions")).all() == [
                ("2.1.0.3",)
            ]
            assert connection.execute(text("SELECT count(*) FROM registrations")).scalar() == 1

        upgrade(engine)
        assert current_revision(engine) == head_revision()
    finally:
        engine.dispose()


@pytest.mark.parametrize("value", [0.0, 1.0, -0.2, 1.5])
def test_the_database_refuses_a_reference_prevalence_outside_0_1(
    evidence_url: str, value: float
) -> None:
    engine = make_engine(evidence_url)
    try:
        upgrade(engine, "0006")
        seed_version_at_0006(engine)
        upgrade(engine)
        with pytest.raises(IntegrityError, match="reference_prevalence_between_0_and_1"):
            with engine.begin() as connection:
                connection.execute(
                    text("UPDATE device_versions SET reference_prevalence = :value"),
                    {"value": value},
                )
    finally:
        engine.dispose()


def seed_open_alerts_at_0007(engine: Engine, alert_ids: list[str]) -> None:
    """Open alerts of one stream and detector, as stores before revision 8 kept every signal."""
    with engine.begin() as connection:
        for day, alert_id in enumerate(alert_ids, start=1):
            connection.execute(
                text(
                    "INSERT INTO alerts (alert_id, device_key, device_version, site_key, task, "
                    "detector, statistic, threshold, evidence, first_case_time, last_case_time, "
                    "raised_at, severity, message, status) VALUES (:alert_id, 'dr-screen', "
                    "'2.1.0.3', 'site-a', 'referable_dr', 'sensitivity_cusum', 5.3, 4.0, "
                    "'{\"cases\": 412}', :at, :at, :at, 'warning', 'below claim', 'open')"
                ),
                {"alert_id": alert_id, "at": datetime(2026, 3, day, tzinfo=UTC)},
            )


def test_revision_8_keeps_the_alerts_and_recurs_the_oldest_unresolved(evidence_url: str) -> None:
    older, newer = str(uuid.UUID(int=1)), str(uuid.UUID(int=2))
    engine = make_engine(evidence_url)
    try:
        upgrade(engine, "0007")
        seed_open_alerts_at_0007(engine, [older, newer])
    finally:
        engine.dispose()
    signal = make_alert(stream=make_stream(), raised_at=datetime(2026, 3, 9, tzinfo=UTC))
    with EvidenceStore(evidence_url) as store:
        assert current_revision(store.engine) == head_revision()
        views = store.alerts()
        assert [(str(v.alert.alert_id), v.recurrences) for v in views] == [(newer, 0), (older, 0)]
        assert store.record_alert(signal, actor="worker") is True
        assert [v.recurrences for v in store.alerts()] == [0, 1]
        assert store.alert_recurrences(older) == [signal]


def test_revision_8_removes_the_recurrences_again(evidence_url: str) -> None:
    engine = make_engine(evidence_url)
    try:
        upgrade(engine, "0007")
        seed_open_alerts_at_0007(engine, [str(uuid.UUID(int=1))])
        upgrade(engine, "0008")
        assert "alert_recurrences" in inspect(engine).get_table_names()
        downgrade(engine, "0007")
        assert "alert_recurrences" not in inspect(engine).get_table_names()
        with engine.connect() as connection:
            assert connection.execute(text("SELECT count(*) FROM alerts")).scalar() == 1
        upgrade(engine)
        assert current_revision(engine) == head_revision()
    finally:
        engine.dispose()


def test_the_audit_trail_is_read_by_action_and_subject_through_its_index(
    evidence_url: str,
) -> None:
    """A trend plan's entries (``plan show``, the PSUR) are found through the index of
    revision 13, not by reading the whole trail; the plan each database chooses says so."""
    engine = make_engine(evidence_url)
    query = (
        "SELECT payload FROM audit_entries WHERE action IN ('plan.record', 'plan.amend') "
        "AND subject = 'plan:dr-screen:sensitivity' ORDER BY sequence"
    )
    try:
        upgrade(engine)
        with engine.connect() as connection:
            if engine.dialect.name == "postgresql":
                connection.exec_driver_sql("SET enable_seqscan = off")  # an empty table
                plan = connection.exec_driver_sql(f"EXPLAIN {query}").scalars().all()
            else:
                plan = [
                    row[-1] for row in connection.exec_driver_sql(f"EXPLAIN QUERY PLAN {query}")
                ]
        assert any("ix_audit_entries_action_subject" in line for line in plan), plan
    finally:
        engine.dispose()
