"""Standard test databases in the evidence store: imported once, frozen, audited.

A version's cases never change after its import: a corrected database is a new version,
made from a case file or from an earlier version with cases added, relabelled or removed,
and :func:`~evidence.testdb.diff` says how large the change was.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from evidence.models import TestDatabaseCaseRow, TestDatabaseVersion
from evidence.store import EvidenceStore
from evidence.testdb import (
    MAJOR_CHANGE_FRACTION,
    DatabaseCase,
    DatabaseDiff,
    Label,
    content_hash,
    diff,
)


class TestDatabaseError(ValueError):
    """A database version that cannot be stored or found, saying which and why."""

    __test__ = False  # a domain name, not a pytest class


@dataclass(frozen=True)
class DatabaseVersion:
    """One stored version of a standard test database."""

    name: str
    version: str
    task: str
    description: str
    content_sha256: str
    cases: tuple[DatabaseCase, ...]
    strata: tuple[str, ...]
    based_on: str | None
    source: str
    imported_at: datetime
    imported_by: str

    @property
    def reference(self) -> str:
        """How a claim names it: ``name@version``."""
        return f"{self.name}@{self.version}"


@dataclass(frozen=True)
class ImportedVersion:
    """What an import stored, and how it differs from the version it was based on."""

    version: DatabaseVersion
    change: DatabaseDiff | None
    classification: str | None


def file_source(path: Path) -> str:
    """A case file as an import's provenance: its name and SHA-256."""
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    return f"{path.name} sha256:{digest}"[:256]


def import_version(
    store: EvidenceStore,
    name: str,
    version: str,
    task: str,
    cases: Sequence[DatabaseCase],
    *,
    by: str,
    source: str,
    description: str = "",
    based_on: str | None = None,
    extra_strata: Sequence[str] = (),
    major_fraction: float = MAJOR_CHANGE_FRACTION,
) -> ImportedVersion:
    """Store ``cases`` as version ``version`` of database ``name``, with one audit entry.

    Refused if that version exists (versions are frozen) or if ``cases`` is empty; with
    ``based_on``, the change from that version is measured and recorded in the audit entry.
    """
    if not cases:
        raise TestDatabaseError(f"{name}@{version}: a test database needs at least one case")
    previous = load_version(store, name, based_on) if based_on is not None else None
    change = diff(previous.cases, cases) if previous is not None else None
    classification = change.classification(major_fraction) if change is not None else None
    digest = content_hash(cases)
    now = datetime.now(UTC)
    with store.writing() as session:
        if _row(session, name, version) is not None:
            raise TestDatabaseError(
                f"{name}@{version} exists and is frozen: import the corrected cases as a new "
                "version (--based-on it, to measure the change)"
            )
        session.add(
            TestDatabaseVersion(
                name=name,
                version=version,
                task=task,
                description=description,
                content_sha256=digest,
                case_count=len(cases),
                strata=list(extra_strata),
                based_on=based_on,
                source=source,
                imported_at=now,
                imported_by=by,
                cases=[_case_row(case) for case in cases],
            )
        )
        payload: dict[str, object] = {
            "task": task,
            "cases": len(cases),
            "content_sha256": digest,
            "source": source,
        }
        if change is not None:
            payload |= {
                "based_on": based_on,
                "added": change.added,
                "removed": change.removed,
                "relabelled": change.relabelled,
                "changed_fraction": round(change.changed_fraction, 6),
                "classification": classification,
            }
        store.audit(session, by, "testdb.import", f"{name}@{version}", payload)
    return ImportedVersion(load_version(store, name, version), change, classification)


def load_version(store: EvidenceStore, name: str, version: str) -> DatabaseVersion:
    """The stored version, or :class:`TestDatabaseError` naming the versions there are."""
    with store.reading() as session:
        row = _row(session, name, version, with_cases=True)
        if row is None:
            known = [v.version for v in list_versions(store) if v.name == name]
            there = f"its versions are {', '.join(known)}" if known else "no such database"
            raise TestDatabaseError(f"{name}@{version} is not in the store ({there})")
        return _version(row, tuple(_case(case) for case in row.cases))


def list_versions(store: EvidenceStore) -> list[DatabaseVersion]:
    """Every stored version, by name and then import time, without their cases."""
    with store.reading() as session:
        rows = session.scalars(
            select(TestDatabaseVersion).order_by(
                TestDatabaseVersion.name, TestDatabaseVersion.imported_at
            )
        )
        return [_version(row, ()) for row in rows]


def _row(
    session: Session, name: str, version: str, with_cases: bool = False
) -> TestDatabaseVersion | None:
    query = select(TestDatabaseVersion).where(
        TestDatabaseVersion.name == name, TestDatabaseVersion.version == version
    )
    if with_cases:
        query = query.options(selectinload(TestDatabaseVersion.cases))
    return session.scalars(query).first()


def _case_row(case: DatabaseCase) -> TestDatabaseCaseRow:
    return TestDatabaseCaseRow(
        case_pseudonym=case.case_pseudonym,
        label=case.label,
        truth_source=case.truth_source,
        first_read=case.first_read,
        second_read=case.second_read,
        adjudication=case.adjudication,
        strata=dict(case.strata),
    )


def _case(row: TestDatabaseCaseRow) -> DatabaseCase:
    return DatabaseCase(
        case_pseudonym=row.case_pseudonym,
        label=_label(row.label),
        truth_source=row.truth_source,
        first_read=_label(row.first_read) if row.first_read else None,
        second_read=_label(row.second_read) if row.second_read else None,
        adjudication=_label(row.adjudication) if row.adjudication else None,
        strata={str(k): str(v) for k, v in row.strata.items()},
    )


def _label(value: str) -> Label:
    return "positive" if value == "positive" else "negative"


def _version(row: TestDatabaseVersion, cases: tuple[DatabaseCase, ...]) -> DatabaseVersion:
    return DatabaseVersion(
        name=row.name,
        version=row.version,
        task=row.task,
        description=row.description,
        content_sha256=row.content_sha256,
        cases=cases,
        strata=tuple(row.strata),
        based_on=row.based_on,
        source=row.source,
        imported_at=row.imported_at,
        imported_by=row.imported_by,
    )
