"""The evidence store's shared unit: the connection, read sessions, and write transactions
with their audit entries chained inside them, so the trail and the data cannot disagree.

Every concept of the store (registry, sightings, alerts, field events, snapshots, test
databases) writes through this one unit; opening it migrates the database to the newest
schema unless asked not to (commands that only read).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, Self

from sqlalchemy import Connection, Engine, event, select, text
from sqlalchemy.engine.interfaces import DBAPIConnection
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import ConnectionPoolEntry

from evidence.audit import AuditRecord, ChainVerdict, chain_entry, verify_chain
from evidence.migrate import make_engine, upgrade
from evidence.models import AuditEntryRow
from postmarket.contracts.events import utc_now


class StoreUnit:
    """The evidence database at ``url`` (SQLite file or PostgreSQL), migrated to head on open:
    its sessions, and the one unit every concept writes through (a transaction with its
    audit entries chained inside it)."""

    def __init__(self, url: str, *, migrate: bool = True) -> None:
        self.url = url
        self.engine: Engine = make_engine(url)
        if self.engine.dialect.name == "sqlite":
            _serialize_sqlite_writers(self.engine)
        writes = self.engine.execution_options(**{_WRITES: True})
        if migrate:
            upgrade(writes)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        self._writes = sessionmaker(writes, expire_on_commit=False)

    def close(self) -> None:
        self.engine.dispose()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    # --- transactions and the audit trail ---------------------------------------------------

    @contextmanager
    def _transaction(self) -> Iterator[Session]:
        """A write transaction; reads use plain ``self._sessions()`` (deferred on SQLite)."""
        with self._writes.begin() as session:
            yield session

    def _audit(
        self, session: Session, actor: str, action: str, subject: str, payload: Mapping[str, Any]
    ) -> None:
        """Append one entry chained to the newest, inside the caller's transaction."""
        queue_writers(session)
        newest = session.scalars(
            select(AuditEntryRow).order_by(AuditEntryRow.sequence.desc()).limit(1)
        ).first()
        entry = chain_entry(
            None if newest is None else _audit_record(newest),
            utc_now(),
            actor,
            action,
            subject,
            payload,
        )
        session.add(AuditEntryRow(**entry.hashed_fields(), entry_hash=entry.entry_hash))

    # The unit the store's concept modules outside the class (evidence.testdb_store)
    # write through: one transaction, and audit entries chained inside it.
    def writing(self) -> AbstractContextManager[Session]:
        """A write transaction (everything in it, audit entries included, or nothing)."""
        return self._transaction()

    def reading(self) -> Session:
        """A read session (use it as a context manager)."""
        return self._sessions()

    def audit(
        self, session: Session, actor: str, action: str, subject: str, payload: Mapping[str, Any]
    ) -> None:
        """Append one audit entry inside ``session``'s write transaction."""
        self._audit(session, actor, action, subject, payload)

    def audit_entries(self) -> list[AuditRecord]:
        """The whole audit trail, oldest first."""
        with self._sessions() as session:
            rows = session.scalars(select(AuditEntryRow).order_by(AuditEntryRow.sequence))
            return [_audit_record(row) for row in rows]

    def verify_audit_chain(self) -> ChainVerdict:
        """Check every entry's hash and link; the verdict names the first bad entry."""
        return verify_chain(self.audit_entries())


def aware(value: datetime | str) -> datetime:
    """Aggregates bypass the column type on SQLite, which returns naive (UTC) times or text."""
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _audit_record(row: AuditEntryRow) -> AuditRecord:
    return AuditRecord(
        sequence=row.sequence,
        recorded_at=row.recorded_at,
        actor=row.actor,
        action=row.action,
        subject=row.subject,
        payload=row.payload,
        previous_hash=row.previous_hash,
        entry_hash=row.entry_hash,
    )


def queue_writers(session: Session) -> None:
    """On PostgreSQL, wait for other writers' transactions, and make them wait for this one.

    So two transactions never chain onto the same audit entry, nor both open an alert for
    one stream and detector. (On SQLite a write transaction already holds the one writer
    lock from its BEGIN IMMEDIATE: :func:`_serialize_sqlite_writers`.)
    """
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("LOCK TABLE audit_entries IN SHARE ROW EXCLUSIVE MODE"))


_WRITES = "evidence_writes"
"""Execution option marking the store's write transactions (and migrations)."""
SQLITE_BUSY_TIMEOUT_MS = 60_000
"""How long a SQLite writer waits for another's lock before "database is locked"."""


def _serialize_sqlite_writers(engine: Engine) -> None:
    """Make SQLite write transactions take the writer lock at BEGIN, before their reads.

    pysqlite would BEGIN only at the first INSERT or UPDATE, after the reads that decided
    what to write, so two writers could both find no unresolved alert and both open one.
    As SQLAlchemy documents, pysqlite's BEGIN is disabled and the engine emits its own.
    """
    event.listen(engine, "connect", _take_over_sqlite_begin)
    event.listen(engine, "begin", _begin_sqlite_transaction)


def _take_over_sqlite_begin(connection: DBAPIConnection, _: ConnectionPoolEntry) -> None:
    connection.isolation_level = None  # pysqlite emits no BEGIN of its own
    cursor = connection.cursor()
    cursor.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")
    cursor.close()


def _begin_sqlite_transaction(connection: Connection) -> None:
    """Writes begin IMMEDIATE (queued behind other writers); reads deferred, so a writer's
    lock does not hold them up and they still see one consistent snapshot."""
    writes = connection.get_execution_options().get(_WRITES, False)
    connection.exec_driver_sql("BEGIN IMMEDIATE" if writes else "BEGIN")
