"""Evidence-store fixtures: every store test runs on SQLite and on a real PostgreSQL.

Each PostgreSQL test gets a database of its own (created from the session's server and
dropped afterwards), so tests are independent and can run in any order.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from evidence_databases import fresh_postgres_database

from evidence.store import EvidenceStore


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
