"""Evidence-store fixtures: every store test runs on SQLite and on a real PostgreSQL.

Each PostgreSQL test gets a database of its own (created from the session's server and
dropped afterwards), so tests are independent and can run in any order.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, make_url

from postmarket.evidence.store import EvidenceStore


def fresh_postgres_database(server_url: str) -> Iterator[str]:
    """Create an empty database on the server, yield its URL, drop it afterwards."""
    name = f"evidence_{uuid.uuid4().hex[:16]}"
    admin = create_engine(server_url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as connection:
            connection.exec_driver_sql(f'CREATE DATABASE "{name}"')
        yield make_url(server_url).set(database=name).render_as_string(hide_password=False)
        with admin.connect() as connection:
            connection.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        admin.dispose()


@pytest.fixture(
    params=["sqlite", pytest.param("postgresql", marks=pytest.mark.integration)],
)
def evidence_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty evidence database URL: a SQLite file, or a fresh PostgreSQL database."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'evidence.db'}"
        return
    yield from fresh_postgres_database(request.getfixturevalue("postgres_url"))


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'evidence.db'}"


@pytest.fixture
def store(evidence_url: str) -> Iterator[EvidenceStore]:
    """An evidence store migrated to head, on each engine in turn."""
    with EvidenceStore(evidence_url) as opened:
        yield opened
