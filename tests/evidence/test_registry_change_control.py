"""The registry under change control: registration status, claims and tasks change only as a
regulator expects, and every change is in the audit trail with who, why and the old value."""

from __future__ import annotations

import json
from datetime import date
from typing import get_args

import pytest
from evidence_builders import ACTOR, DEVICE, SENSITIVITY, TASK, registered_device

from evidence.audit import AuditRecord
from evidence.registration import (
    REGISTRATION_STATUSES,
    STATUS_CHANGES,
    check_status_change,
)
from evidence.registry_topic import registry_entries
from evidence.store import EvidenceError, EvidenceStore, NotFound
from postmarket.contracts.events import RegistryEntry

NEW_VERSION = "2.2.0.0"


def last_payload(store: EvidenceStore) -> tuple[AuditRecord, dict[str, object]]:
    entry = store.audit_entries()[-1]
    return entry, json.loads(entry.payload)


def statuses(store: EvidenceStore) -> dict[str, str]:
    return {str(v.version): v.registration_status for v in store.device(DEVICE).versions}


def test_a_pending_version_is_registered_then_withdrawn_with_who_and_why(
    store: EvidenceStore,
) -> None:
    registered_device(store)
    store.add_version(DEVICE, NEW_VERSION, status="pending", actor=ACTOR)
    store.set_registration_status(
        DEVICE, NEW_VERSION, "registered", reference="NMPA-2024-417",
        registered_on=date(2024, 5, 20), why="approved", actor="ra-lead",
    )  # fmt: skip
    store.set_registration_status(DEVICE, NEW_VERSION, "withdrawn", why="recalled", actor="ra-lead")
    assert statuses(store)[NEW_VERSION] == "withdrawn"
    entry, payload = last_payload(store)
    assert (entry.action, entry.actor) == ("registry.set_registration_status", "ra-lead")
    assert payload["why"] == "recalled"
    assert payload["previous"] == {
        "status": "registered",
        "regulator": "",
        "reference": "NMPA-2024-417",
        "registered_on": "2024-05-20",
    }


@pytest.mark.parametrize("target", ["pending", "unregistered"])
def test_a_registration_is_never_undone_only_withdrawn(store: EvidenceStore, target: str) -> None:
    registered_device(store)
    entries = len(store.audit_entries())
    with pytest.raises(EvidenceError, match="a registration is never undone: withdraw it"):
        store.set_registration_status(DEVICE, "2.1.0.3", target, why="oops", actor=ACTOR)
    assert statuses(store)["2.1.0.3"] == "registered"
    assert len(store.audit_entries()) == entries


def test_a_withdrawn_version_is_registered_again_only_with_a_new_reference(
    store: EvidenceStore,
) -> None:
    registered_device(store)
    store.set_registration_status(DEVICE, "2.1.0.3", "withdrawn", why="recall", actor=ACTOR)
    with pytest.raises(EvidenceError, match="needs a new registration entry"):
        store.set_registration_status(
            DEVICE, "2.1.0.3", "registered", reference="NMPA-2020-3-001", why="x", actor=ACTOR
        )
    store.set_registration_status(
        DEVICE, "2.1.0.3", "registered", reference="NMPA-2026-9-002", why="re-registered",
        actor=ACTOR,
    )  # fmt: skip
    assert statuses(store)["2.1.0.3"] == "registered"


def test_registering_needs_a_reference(store: EvidenceStore) -> None:
    registered_device(store)
    store.add_version(DEVICE, NEW_VERSION, status="pending", actor=ACTOR)
    with pytest.raises(EvidenceError, match="give --reference"):
        store.set_registration_status(DEVICE, NEW_VERSION, "registered", why="x", actor=ACTOR)


def test_change_control_knows_every_status_the_registry_topic_publishes() -> None:
    published = get_args(RegistryEntry.model_fields["registration_status"].annotation)
    assert set(published) == set(REGISTRATION_STATUSES) == set(STATUS_CHANGES)


@pytest.mark.parametrize("current", sorted(STATUS_CHANGES))
def test_no_status_moves_to_itself(current: str) -> None:
    with pytest.raises(ValueError, match=f"already {current}"):
        check_status_change(current, current, reference_on_record="R", new_reference="R2")


def test_an_amended_claim_keeps_its_old_value_in_the_audit_trail(store: EvidenceStore) -> None:
    registered_device(store)
    amended = SENSITIVITY.model_copy(update={"ci_upper": 0.914})
    old = store.amend_claim(DEVICE, "2.1.0.3", amended, why="mistyped bound", actor="ra-lead")
    assert old == SENSITIVITY
    assert store.device(DEVICE).versions[0].claims == (amended,)
    entry, payload = last_payload(store)
    assert (entry.action, entry.actor) == ("registry.amend_claim", "ra-lead")
    assert payload["from"]["ci_upper"] == 0.915  # type: ignore[index]
    assert payload["to"]["ci_upper"] == 0.914  # type: ignore[index]
    assert payload["why"] == "mistyped bound"


def test_a_registered_claim_is_not_amended_without_a_reason(store: EvidenceStore) -> None:
    registered_device(store)
    amended = SENSITIVITY.model_copy(update={"value": 0.88})
    with pytest.raises(EvidenceError, match="only with a reason"):
        store.amend_claim(DEVICE, "2.1.0.3", amended, why=" ", actor=ACTOR)
    assert store.device(DEVICE).versions[0].claims == (SENSITIVITY,)


def test_claims_of_a_withdrawn_version_are_never_changed(store: EvidenceStore) -> None:
    registered_device(store)
    store.set_registration_status(DEVICE, "2.1.0.3", "withdrawn", why="recall", actor=ACTOR)
    amended = SENSITIVITY.model_copy(update={"value": 0.88})
    with pytest.raises(EvidenceError, match="withdrawn"):
        store.amend_claim(DEVICE, "2.1.0.3", amended, why="x", actor=ACTOR)
    with pytest.raises(EvidenceError, match="withdrawn"):
        store.withdraw_claim(DEVICE, "2.1.0.3", TASK, "sensitivity", why="x", actor=ACTOR)
    specificity = SENSITIVITY.model_copy(update={"metric": "specificity"})
    with pytest.raises(EvidenceError, match="withdrawn"):
        store.add_claim(DEVICE, "2.1.0.3", specificity, actor=ACTOR)
    assert store.device(DEVICE).versions[0].claims == (SENSITIVITY,)


def test_a_withdrawn_claim_is_no_longer_claimed_and_kept_whole_in_the_audit_trail(
    store: EvidenceStore,
) -> None:
    registered_device(store)
    store.withdraw_claim(DEVICE, "2.1.0.3", TASK, "sensitivity", why="wrong version", actor=ACTOR)
    assert store.device(DEVICE).versions[0].claims == ()
    entry, payload = last_payload(store)
    assert entry.action == "registry.withdraw_claim"
    assert payload["withdrawn"]["value"] == SENSITIVITY.value  # type: ignore[index]
    assert store.verify_audit_chain().intact


def test_amending_a_claim_that_does_not_exist_names_the_claims(store: EvidenceStore) -> None:
    registered_device(store)
    specificity = SENSITIVITY.model_copy(update={"metric": "specificity"})
    with pytest.raises(NotFound, match="claims: referable_dr sensitivity"):
        store.amend_claim(DEVICE, "2.1.0.3", specificity, why="x", actor=ACTOR)


def test_an_added_task_is_audited_with_why(store: EvidenceStore) -> None:
    registered_device(store)
    store.add_task(DEVICE, "dme", why="indication approved", actor="ra-lead")
    assert store.device(DEVICE).tasks == ("dme", TASK)
    entry, payload = last_payload(store)
    assert (entry.action, entry.subject) == ("registry.add_task", f"device:{DEVICE}/task:dme")
    assert payload["why"] == "indication approved"


def test_registry_entries_carry_the_changed_status_and_claims(store: EvidenceStore) -> None:
    registered_device(store)
    store.add_version(DEVICE, NEW_VERSION, status="pending", actor=ACTOR)
    store.add_claim(DEVICE, NEW_VERSION, SENSITIVITY, actor=ACTOR)
    store.set_registration_status(
        DEVICE, NEW_VERSION, "registered", reference="R-2", why="approved", actor=ACTOR
    )
    amended = SENSITIVITY.model_copy(update={"value": 0.88})
    store.amend_claim(DEVICE, NEW_VERSION, amended, why="typo", actor=ACTOR)
    store.set_registration_status(DEVICE, "2.1.0.3", "withdrawn", why="superseded", actor=ACTOR)
    entries = {entry.device_version: entry for entry in registry_entries(store.devices())}
    assert entries["2.1.0.3"].registration_status == "withdrawn"
    assert entries[NEW_VERSION].registration_status == "registered"
    assert entries[NEW_VERSION].claims == (amended,)
