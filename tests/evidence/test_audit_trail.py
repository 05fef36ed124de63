"""The append-only, hash-chained audit trail, on SQLite and PostgreSQL."""

from __future__ import annotations

import pytest
from evidence_builders import make_alert, registered_device
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from evidence.audit import GENESIS_HASH, AuditRecord, chain_entry, verify_chain
from evidence.store import EvidenceStore


def _disable_append_only_guard(store: EvidenceStore) -> None:
    """What an attacker with owner rights does first: drop the triggers."""
    with store.engine.begin() as connection:
        if store.engine.dialect.name == "postgresql":
            connection.exec_driver_sql("ALTER TABLE audit_entries DISABLE TRIGGER USER")
        else:
            connection.exec_driver_sql("DROP TRIGGER audit_entries_no_update")
            connection.exec_driver_sql("DROP TRIGGER audit_entries_no_delete")


def _populated(store: EvidenceStore) -> None:
    registered_device(store)
    store.record_alert(make_alert(), actor="worker")


def test_fresh_chain_is_intact(store: EvidenceStore) -> None:
    _populated(store)
    verdict = store.verify_audit_chain()
    assert (verdict.intact, verdict.entries) == (True, 4)
    assert verdict.head_hash == store.audit_entries()[-1].entry_hash


def test_entries_chain_each_to_the_previous_hash(store: EvidenceStore) -> None:
    _populated(store)
    entries = store.audit_entries()
    assert entries[0].previous_hash == GENESIS_HASH
    assert [e.previous_hash for e in entries[1:]] == [e.entry_hash for e in entries[:-1]]


@pytest.mark.parametrize(
    "statement", ["UPDATE audit_entries SET actor = 'x'", "DELETE FROM audit_entries"]
)
def test_database_refuses_to_change_stored_entries(store: EvidenceStore, statement: str) -> None:
    _populated(store)
    with pytest.raises(DBAPIError, match="append-only"), store.engine.begin() as connection:
        connection.exec_driver_sql(statement)
    assert store.verify_audit_chain().intact


TAMPERINGS: dict[str, str] = {
    "actor": "UPDATE audit_entries SET actor = 'someone-else' WHERE sequence = 3",
    "payload": "UPDATE audit_entries SET payload = '{\"value\":0.95}' WHERE sequence = 3",
    "recorded_at": "UPDATE audit_entries SET recorded_at = '2020-01-01T00:00:00+00:00' "
    "WHERE sequence = 3",
    "entry_hash": "UPDATE audit_entries SET entry_hash = repeat('a', 64) WHERE sequence = 3",
    "previous_hash": "UPDATE audit_entries SET previous_hash = repeat('b', 64) WHERE sequence = 3",
    "deleted": "DELETE FROM audit_entries WHERE sequence = 3",
}


@pytest.mark.parametrize("column", sorted(TAMPERINGS))
def test_altering_any_stored_entry_names_it(store: EvidenceStore, column: str) -> None:
    _populated(store)
    _disable_append_only_guard(store)
    statement = TAMPERINGS[column]
    if store.engine.dialect.name == "sqlite":
        statement = statement.replace("repeat('a', 64)", "'" + "a" * 64 + "'")
        statement = statement.replace("repeat('b', 64)", "'" + "b" * 64 + "'")
    with store.engine.begin() as connection:
        connection.exec_driver_sql(statement)
    problem = store.verify_audit_chain().problem
    assert problem is not None
    expected = 4 if column == "deleted" else 3
    assert problem.sequence == expected, problem


@pytest.mark.parametrize("pure_field", ["actor", "action", "subject", "payload", "recorded_at"])
def test_verify_chain_catches_each_hashed_field(pure_field: str) -> None:
    import dataclasses
    from datetime import UTC, datetime

    first = chain_entry(None, datetime(2026, 3, 1, tzinfo=UTC), "a", "x", "s", {"k": 1})
    second = chain_entry(first, datetime(2026, 3, 2, tzinfo=UTC), "b", "y", "t", {"k": 2})
    forged: AuditRecord = dataclasses.replace(second, **{pure_field: "forged"})
    verdict = verify_chain([first, forged])
    assert verdict.problem is not None and verdict.problem.sequence == 2


def test_a_second_entry_on_the_same_predecessor_is_refused(store: EvidenceStore) -> None:
    _populated(store)
    first = store.audit_entries()[0]
    with pytest.raises(DBAPIError), store.engine.begin() as connection:
        connection.execute(
            text(
                "INSERT INTO audit_entries (sequence, recorded_at, actor, action, subject, "
                "payload, previous_hash, entry_hash) VALUES (99, 'now', 'x', 'x', 'x', '{}', "
                ":previous, :hash)"
            ),
            {"previous": first.previous_hash, "hash": "c" * 64},
        )
