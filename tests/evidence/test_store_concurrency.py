"""Concurrent writers to one evidence database are serialized, on SQLite as on PostgreSQL.

Two evidence sinks, a sink and the fleet review, or the CLI may write at the same moment:
they must not both open an alert for one stream and detector, nor fork the audit chain.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from evidence_builders import make_alert
from sqlalchemy import event

from evidence.lifecycle import AlertStatus
from evidence.store import EvidenceStore
from postmarket.contracts import Alert

WRITERS = 4
RACE_WINDOW_S = 0.2
"""How long each writer dawdles after looking for the unresolved alert, before inserting."""


def _dawdle_after_the_lookup(store: EvidenceStore) -> None:
    """Widen the window between "is there an unresolved alert?" and storing the signal."""

    def after_execute(*args: Any) -> None:
        statement: str = args[2]
        if "FROM alerts" in statement and "alerts.status IN" in statement:
            time.sleep(RACE_WINDOW_S)

    event.listen(store.engine, "after_cursor_execute", after_execute)


def _record_at_once(store: EvidenceStore, signals: list[Alert]) -> list[bool]:
    """Record each signal from its own thread, all released at the same moment."""
    start = threading.Barrier(len(signals))
    stored: list[bool] = [False] * len(signals)
    errors: list[BaseException] = []

    def write(index: int) -> None:
        try:
            start.wait()
            stored[index] = store.record_alert(signals[index], actor=f"writer-{index}")
        except BaseException as error:  # re-raised in the test's thread
            errors.append(error)

    threads = [threading.Thread(target=write, args=(i,)) for i in range(len(signals))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]
    return stored


def test_racing_writers_open_one_alert_and_recur_it(store: EvidenceStore) -> None:
    _dawdle_after_the_lookup(store)
    signals = [make_alert(message=f"signal {i}") for i in range(WRITERS)]
    assert _record_at_once(store, signals) == [True] * WRITERS
    (view,) = store.alerts()
    assert (view.status, view.recurrences) == (AlertStatus.OPEN, WRITERS - 1)
    recurrences = store.alert_recurrences(view.alert.alert_id)
    stored = {view.alert.alert_id} | {recurrence.alert_id for recurrence in recurrences}
    assert stored == {signal.alert_id for signal in signals}
    assert store.verify_audit_chain().intact
    assert len(store.audit_entries()) == WRITERS


@pytest.fixture
def sqlite_store(sqlite_url: str) -> Iterator[EvidenceStore]:
    with EvidenceStore(sqlite_url) as opened:
        yield opened


@pytest.fixture
def held_writer_lock(sqlite_url: str) -> Iterator[sqlite3.Connection]:
    """Another connection holding SQLite's writer lock, as a writer mid-transaction does."""
    other = sqlite3.connect(sqlite_url.removeprefix("sqlite:///"), isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    yield other
    other.execute("ROLLBACK")
    other.close()


def test_sqlite_writers_wait_long_for_the_lock(sqlite_store: EvidenceStore) -> None:
    """Long enough that a writer queued behind a fleet review waits instead of failing."""
    with sqlite_store.engine.connect() as connection:
        assert connection.exec_driver_sql("PRAGMA busy_timeout").scalar_one() >= 30_000


def test_sqlite_reads_do_not_wait_for_a_writer(
    sqlite_store: EvidenceStore, held_writer_lock: sqlite3.Connection
) -> None:
    """Reads begin deferred transactions: a writer's lock does not hold up the dashboards."""
    started = time.monotonic()
    assert sqlite_store.alerts() == []
    assert sqlite_store.verify_audit_chain().intact
    assert time.monotonic() - started < 1.0
