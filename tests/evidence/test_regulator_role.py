"""The regulator's PostgreSQL role reads the evidence store and can change nothing."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from evidence_builders import make_alert, registered_device
from evidence_databases import fresh_postgres_database
from sqlalchemy import Engine, create_engine, make_url
from sqlalchemy.exc import DBAPIError

from evidence.regulator import grant_regulator_read_access
from evidence.store import EvidenceStore

pytestmark = pytest.mark.integration

LOGIN = "regulator_reviewer"


@pytest.fixture
def regulator(postgres_url: str) -> Iterator[tuple[EvidenceStore, Engine]]:
    for url in fresh_postgres_database(postgres_url):
        with EvidenceStore(url) as store:
            registered_device(store)
            store.record_alert(make_alert(), actor="worker")
            grant_regulator_read_access(store.engine, login=LOGIN)
            reviewer = create_engine(make_url(url).set(username=LOGIN))
            try:
                yield store, reviewer
            finally:
                reviewer.dispose()


def test_regulator_reads_every_table(regulator: tuple[EvidenceStore, Engine]) -> None:
    _, reviewer = regulator
    with reviewer.connect() as connection:
        for table in ("devices", "claims", "alerts", "audit_entries", "performance_snapshots"):
            connection.exec_driver_sql(f"SELECT count(*) FROM {table}").scalar_one()  # noqa: S608
        assert connection.exec_driver_sql("SELECT count(*) FROM alerts").scalar_one() == 1


@pytest.mark.parametrize(
    "statement",
    [
        "INSERT INTO sites (site_key, name, created_at) VALUES ('x', 'x', now())",
        "UPDATE alerts SET status = 'resolved'",
        "DELETE FROM claims",
        "CREATE TABLE notes (id int)",
    ],
)
def test_regulator_cannot_write(regulator: tuple[EvidenceStore, Engine], statement: str) -> None:
    store, reviewer = regulator
    with pytest.raises(DBAPIError, match="permission denied"), reviewer.begin() as connection:
        # Leave read-only mode so the test proves the privileges, not just the session setting.
        connection.exec_driver_sql("SET TRANSACTION READ WRITE")
        connection.exec_driver_sql(statement)
    assert store.alerts()[0].status.value == "open"
    assert store.verify_audit_chain().intact


def test_granting_twice_is_harmless(regulator: tuple[EvidenceStore, Engine]) -> None:
    store, _ = regulator
    grant_regulator_read_access(store.engine, login=LOGIN)
