"""Alembic migrations: an empty database and one at the previous revision reach head."""

from __future__ import annotations

from datetime import UTC, datetime

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect, text

from postmarket.evidence.migrate import current_revision, head_revision, make_engine, upgrade
from postmarket.evidence.models import Base
from postmarket.evidence.store import EvidenceStore

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

    from postmarket.evidence.migrate import INI_PATH

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
