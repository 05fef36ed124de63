"""The device registry in the evidence store, on SQLite and PostgreSQL."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from evidence_builders import ACTOR, DEVICE, SENSITIVITY, T0, TASK, make_stream, registered_device

from evidence.store import AlreadyExists, EvidenceError, EvidenceStore, NotFound
from postmarket.versions import ChangeKind, ChangeRecord, Version, VersionError


def test_registered_version_keeps_its_claims(store: EvidenceStore) -> None:
    registered_device(store)
    (version,) = store.device(DEVICE).versions
    assert version.registration_status == "registered"
    assert version.reference == "NMPA-2020-3-001"
    assert version.claims == (SENSITIVITY,)


def test_versions_are_listed_in_version_order(store: EvidenceStore) -> None:
    registered_device(store, "2.10.0.0")
    for version in ("2.9.0.0", "2.1.0.3"):
        store.add_version(DEVICE, version, actor=ACTOR)
    versions = [v.version for v in store.device(DEVICE).versions]
    assert versions == [Version(2, 1, 0, 3), Version(2, 9, 0, 0), Version(2, 10, 0, 0)]


def test_malformed_version_is_refused(store: EvidenceStore) -> None:
    registered_device(store)
    with pytest.raises(VersionError, match="'2.1' is not a version S.Y.Z.B"):
        store.add_version(DEVICE, "2.1", actor=ACTOR)


def test_duplicate_version_is_refused(store: EvidenceStore) -> None:
    registered_device(store)
    with pytest.raises(AlreadyExists, match="dr-screen 2.1.0.3 is already in the registry"):
        store.add_version(DEVICE, "2.1.0.3", actor=ACTOR)


def test_claim_for_unknown_task_names_the_known_tasks(store: EvidenceStore) -> None:
    registered_device(store)
    claim = SENSITIVITY.model_copy(update={"task": "macular_edema"})
    with pytest.raises(NotFound, match="no task 'macular_edema' \\(tasks: referable_dr\\)"):
        store.add_claim(DEVICE, "2.1.0.3", claim, actor=ACTOR)


def test_version_of_unknown_device_is_refused(store: EvidenceStore) -> None:
    with pytest.raises(NotFound, match="no device 'ct-nodule'"):
        store.add_version("ct-nodule", "1.0.0.0", actor=ACTOR)


def test_change_record_round_trips(store: EvidenceStore) -> None:
    registered_device(store)
    store.add_version(DEVICE, "2.2.0.0", status="pending", actor=ACTOR)
    change = ChangeRecord(ChangeKind.TRAINING_DATABASE, "added 3,000 cases", 0.15)
    store.add_change(DEVICE, "2.2.0.0", change, actor=ACTOR)
    assert store.device(DEVICE).versions[1].change == change


def test_registry_snapshot_counts_only_registered_versions(store: EvidenceStore) -> None:
    registered_device(store)
    store.add_version(DEVICE, "2.2.0.0", status="pending", actor=ACTOR)
    change = ChangeRecord(ChangeKind.BUG_FIX, "tiling fix")
    store.add_change(DEVICE, "2.2.0.0", change, actor=ACTOR)
    snapshot = store.registry_snapshot(DEVICE)
    assert snapshot.registered_versions == frozenset({Version(2, 1, 0, 3)})
    assert snapshot.change_records == {Version(2, 2, 0, 0): change}


def test_registration_status_change_is_recorded(store: EvidenceStore) -> None:
    registered_device(store)
    store.add_version(DEVICE, "2.2.0.0", status="pending", actor=ACTOR)
    store.set_registration_status(DEVICE, "2.2.0.0", "registered", reference="R-2", actor=ACTOR)
    assert store.device(DEVICE).versions[1].registration_status == "registered"
    assert store.audit_entries()[-1].action == "registry.set_registration_status"


def test_first_sighting_is_reported_once(store: EvidenceStore) -> None:
    registered_device(store)
    stream = make_stream()
    assert store.record_sighting(stream, T0, actor="worker") is True
    assert store.record_sighting(stream, T0 + timedelta(hours=1), actor="worker") is False


def test_sighting_of_unknown_version_adds_it_unregistered(store: EvidenceStore) -> None:
    registered_device(store)
    store.record_sighting(make_stream(device_version="2.3.0.0"), T0, actor="worker")
    statuses = {str(v.version): v.registration_status for v in store.device(DEVICE).versions}
    assert statuses == {"2.1.0.3": "registered", "2.3.0.0": "unregistered"}


def test_every_registry_write_appends_an_audit_entry(store: EvidenceStore) -> None:
    registered_device(store)
    store.add_task(DEVICE, "macular_edema", actor=ACTOR)
    store.add_site("site-a", name="Example Hospital", actor=ACTOR)
    actions = [entry.action for entry in store.audit_entries()]
    assert actions == [
        "registry.add_device",
        "registry.add_version",
        "registry.add_claim",
        "registry.add_task",
        "registry.add_site",
    ]


def test_failed_write_appends_no_audit_entry(store: EvidenceStore) -> None:
    registered_device(store)
    before = len(store.audit_entries())
    with pytest.raises(AlreadyExists):
        store.add_claim(DEVICE, "2.1.0.3", SENSITIVITY, actor=ACTOR)
    assert len(store.audit_entries()) == before


def test_device_lists_its_tasks(store: EvidenceStore) -> None:
    registered_device(store)
    assert store.devices()[0].tasks == (TASK,)


def test_a_version_keeps_its_reference_prevalence(store: EvidenceStore) -> None:
    registered_device(store)
    store.add_version(DEVICE, "2.2.0.0", status="pending", reference_prevalence=0.24, actor=ACTOR)
    first, second = store.device(DEVICE).versions
    assert first.reference_prevalence is None
    assert second.reference_prevalence == 0.24
    entry = store.audit_entries()[-1]
    assert entry.action == "registry.add_version"
    assert json.loads(entry.payload)["reference_prevalence"] == 0.24


def test_the_reference_prevalence_is_set_and_forgotten_with_an_audit_entry(
    store: EvidenceStore,
) -> None:
    registered_device(store)
    store.set_reference_prevalence(DEVICE, "2.1.0.3", 0.3, actor=ACTOR)
    assert store.device(DEVICE).versions[0].reference_prevalence == 0.3
    store.set_reference_prevalence(DEVICE, "2.1.0.3", None, actor=ACTOR)
    assert store.device(DEVICE).versions[0].reference_prevalence is None
    actions = [entry.action for entry in store.audit_entries()[-2:]]
    assert actions == ["registry.set_reference_prevalence"] * 2


@pytest.mark.parametrize("value", [0.0, 1.0, -0.1, 1.5, float("nan"), float("inf")])
def test_a_reference_prevalence_outside_0_1_is_refused_and_not_audited(
    store: EvidenceStore, value: float
) -> None:
    registered_device(store)
    before = len(store.audit_entries())
    with pytest.raises(EvidenceError, match="must lie strictly between 0 and 1"):
        store.add_version(DEVICE, "2.2.0.0", reference_prevalence=value, actor=ACTOR)
    with pytest.raises(EvidenceError, match="must lie strictly between 0 and 1"):
        store.set_reference_prevalence(DEVICE, "2.1.0.3", value, actor=ACTOR)
    assert [v.version for v in store.device(DEVICE).versions] == [Version(2, 1, 0, 3)]
    assert len(store.audit_entries()) == before


def test_the_reference_prevalence_of_an_unknown_version_is_refused(store: EvidenceStore) -> None:
    registered_device(store)
    with pytest.raises(NotFound, match="no version 9.0.0.0 of device 'dr-screen'"):
        store.set_reference_prevalence(DEVICE, "9.0.0.0", 0.2, actor=ACTOR)
