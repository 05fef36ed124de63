"""A withdrawn claim stays in the registry, marked withdrawn with when, who and why, and is
never monitored: not among a version's claims, not published to the workers, not reported.

Every test runs on SQLite and on a real PostgreSQL (the ``store`` and ``evidence_url``
fixtures), as the store itself and revision 11 of its schema must behave the same on both.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from evidence_builders import ACTOR, DEVICE, SENSITIVITY, TASK, registered_device
from sqlalchemy import Engine, inspect, text
from sqlalchemy.exc import IntegrityError
from test_evidence_migrations import downgrade

from evidence.migrate import current_revision, head_revision, make_engine
from evidence.migrate import upgrade as migrate_up
from evidence.registry_topic import registry_entries
from evidence.report_claims import claim_checks
from evidence.store import EvidenceStore, NotFound
from evidence.views import WithdrawnClaim

VERSION = "2.1.0.3"
CORRECTED = SENSITIVITY.model_copy(update={"value": 0.881, "ci_upper": 0.92})


def withdraw(store: EvidenceStore, why: str = "entered on the wrong version") -> None:
    store.withdraw_claim(DEVICE, VERSION, TASK, "sensitivity", why=why, actor="ra-lead")


def test_a_withdrawn_claim_stays_marked_with_when_who_and_why(store: EvidenceStore) -> None:
    registered_device(store)
    before = datetime.now(UTC)
    withdraw(store)
    (kept,) = store.device(DEVICE).versions[0].withdrawn_claims
    assert kept == WithdrawnClaim(
        claim=SENSITIVITY,
        withdrawn_at=kept.withdrawn_at,
        withdrawn_by="ra-lead",
        why="entered on the wrong version",
    )
    assert before <= kept.withdrawn_at <= datetime.now(UTC)


def test_a_withdrawn_claim_is_no_longer_one_of_the_version_s_claims(store: EvidenceStore) -> None:
    registered_device(store)
    withdraw(store)
    assert store.device(DEVICE).versions[0].claims == ()


def test_the_workers_registry_leaves_a_withdrawn_claim_out(store: EvidenceStore) -> None:
    registered_device(store)
    withdraw(store)
    (entry,) = registry_entries(store.devices())
    assert entry.claims == ()


def test_the_report_judges_no_withdrawn_claim(store: EvidenceStore) -> None:
    registered_device(store)
    specificity = SENSITIVITY.model_copy(update={"metric": "specificity", "value": 0.9})
    store.add_claim(DEVICE, VERSION, specificity, actor=ACTOR)
    store.withdraw_claim(DEVICE, VERSION, TASK, "specificity", why="mistyped", actor=ACTOR)
    checks = {c.metric: c for c in claim_checks(store.device(DEVICE).versions, [])}
    assert checks["sensitivity"].claim == SENSITIVITY
    assert (checks["specificity"].claim, checks["specificity"].verdict) == (
        None,
        "no registered claim",
    )


def test_a_withdrawn_claim_is_neither_amended_nor_withdrawn_again(store: EvidenceStore) -> None:
    registered_device(store)
    withdraw(store)
    with pytest.raises(NotFound, match="claims no sensitivity"):
        store.amend_claim(DEVICE, VERSION, CORRECTED, why="typo", actor=ACTOR)
    with pytest.raises(NotFound, match="claims no sensitivity"):
        withdraw(store, "again")
    assert len(store.device(DEVICE).versions[0].withdrawn_claims) == 1


def test_a_claim_added_again_after_its_withdrawal_is_current_beside_the_withdrawn_one(
    store: EvidenceStore,
) -> None:
    registered_device(store)
    withdraw(store, "first entry")
    store.add_claim(DEVICE, VERSION, CORRECTED, actor=ACTOR)
    withdraw(store, "second entry")
    store.add_claim(DEVICE, VERSION, SENSITIVITY, actor=ACTOR)
    view = store.device(DEVICE).versions[0]
    assert view.claims == (SENSITIVITY,)
    assert [(w.claim, w.why) for w in view.withdrawn_claims] == [
        (SENSITIVITY, "first entry"),
        (CORRECTED, "second entry"),
    ]


def test_the_database_refuses_two_current_claims_of_one_task_and_metric(
    store: EvidenceStore,
) -> None:
    registered_device(store)
    with pytest.raises(IntegrityError), store.engine.begin() as connection:
        connection.execute(text(DUPLICATE_CLAIM))


def test_the_database_keeps_a_withdrawn_claim_beside_the_current_one(
    store: EvidenceStore,
) -> None:
    registered_device(store)
    with store.engine.begin() as connection:
        connection.execute(text(WITHDRAWN_DUPLICATE), {"at": datetime(2026, 3, 1, tzinfo=UTC)})
    assert store.device(DEVICE).versions[0].claims == (SENSITIVITY,)
    assert len(store.device(DEVICE).versions[0].withdrawn_claims) == 1


DUPLICATE_CLAIM = (
    "INSERT INTO claims (registration_id, task_id, metric, value, ci_lower, ci_upper, "
    "test_database, intended_acquisitions, intended_populations) VALUES ("
    "(SELECT min(registration_id) FROM claims), (SELECT min(task_id) FROM claims), "
    "(SELECT min(metric) FROM claims), 0.5, 0.4, 0.6, 'db', '[]', '[]')"
)
"""A second claim of the (first) stored claim's registration, task and metric."""
WITHDRAWN_DUPLICATE = (
    "INSERT INTO claims (registration_id, task_id, metric, value, ci_lower, ci_upper, "
    "test_database, intended_acquisitions, intended_populations, withdrawn_at, withdrawn_by, "
    "withdrawn_why) VALUES ("
    "(SELECT min(registration_id) FROM claims), (SELECT min(task_id) FROM claims), "
    "'sensitivity', 0.5, 0.4, 0.6, 'db', '[]', '[]', :at, 'ra-lead', 'mistyped')"
)
"""The same, withdrawn."""


# --- revision 11 ------------------------------------------------------------------------------


def seed_claim_at_0010(engine: Engine) -> None:
    """A device, task, registered version and one sensitivity claim, as revision 10 kept them."""
    now = datetime(2026, 3, 1, tzinfo=UTC)
    statements = [
        "INSERT INTO devices (id, device_key, name, manufacturer, created_at) "
        "VALUES (1, 'dr-screen', 'DR Screen', 'Acme', :now)",
        "INSERT INTO tasks (id, device_id, name, description) VALUES (1, 1, 'referable_dr', '')",
        "INSERT INTO device_versions (id, device_id, version, major, minor, corrective, "
        "bugfix, created_at) VALUES (1, 1, '2.1.0.3', 2, 1, 0, 3, :now)",
        "INSERT INTO registrations (id, version_id, status, regulator, reference, created_at) "
        "VALUES (1, 1, 'registered', 'NMPA', 'R-1', :now)",
        "INSERT INTO claims (registration_id, task_id, metric, value, ci_lower, ci_upper, "
        "test_database, intended_acquisitions, intended_populations) "
        "VALUES (1, 1, 'sensitivity', 0.872, 0.818, 0.915, 'NIFDC', '[]', '[]')",
    ]
    with engine.begin() as connection:
        for statement in statements:
            connection.execute(text(statement), {"now": now})


def claim_columns(engine: Engine) -> set[str]:
    return {column["name"] for column in inspect(engine).get_columns("claims")}


def test_revision_11_keeps_every_stored_claim_current(evidence_url: str) -> None:
    engine = make_engine(evidence_url)
    try:
        migrate_up(engine, "0010")
        seed_claim_at_0010(engine)
        migrate_up(engine, "0011")
        assert {"withdrawn_at", "withdrawn_by", "withdrawn_why"} <= claim_columns(engine)
    finally:
        engine.dispose()
    with EvidenceStore(evidence_url) as store:
        (version,) = store.device(DEVICE).versions
        assert [(c.metric, c.value) for c in version.claims] == [("sensitivity", 0.872)]
        assert version.withdrawn_claims == ()


def test_revision_11_downgrades_dropping_only_the_withdrawn_claims(evidence_url: str) -> None:
    engine = make_engine(evidence_url)
    try:
        migrate_up(engine, "0010")
        seed_claim_at_0010(engine)
    finally:
        engine.dispose()
    with EvidenceStore(evidence_url) as store:
        store.add_claim(
            DEVICE, VERSION, SENSITIVITY.model_copy(update={"metric": "specificity"}), actor=ACTOR
        )
        withdraw(store)
    engine = make_engine(evidence_url)
    try:
        downgrade(engine, "0010")
        assert current_revision(engine) == "0010"
        assert "withdrawn_at" not in claim_columns(engine)
        with engine.connect() as connection:
            assert connection.execute(text("SELECT metric FROM claims")).scalars().all() == [
                "specificity"
            ]
        with pytest.raises(IntegrityError), engine.begin() as connection:
            connection.execute(text(DUPLICATE_CLAIM))
        migrate_up(engine)
        assert current_revision(engine) == head_revision()
    finally:
        engine.dispose()
