"""Re-baselining an investigated drift: the decision (pure) and its record in the store,
where the alert goes acknowledged -> resolved with a ``stream.rebaseline`` audit entry."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from evidence_builders import T0, make_alert, make_stream

from evidence.lifecycle import AlertStatus, IllegalTransition
from evidence.rebaseline import (
    RebaselineRefused,
    is_reference_drift,
    rebaseline_decision,
)
from evidence.store import EvidenceError, EvidenceStore
from postmarket.contracts import Rebaseline, decode, encode

DECIDED_AT = T0 + timedelta(days=10)
WHY = "site-a's new Siemens scanner validated against the reference reads"


# --- the decision ------------------------------------------------------------------------


def test_the_decision_id_is_derived_from_the_alert_alone() -> None:
    alert = make_alert(detector="score_drift")
    first = rebaseline_decision(alert, "dr.li", WHY, DECIDED_AT)
    again = rebaseline_decision(alert, "qa-lead", "re-run", DECIDED_AT + timedelta(hours=2))
    other = rebaseline_decision(make_alert(detector="score_drift"), "dr.li", WHY, DECIDED_AT)

    assert first.rebaseline_id == again.rebaseline_id  # a re-run is the same decision
    assert first.rebaseline_id != other.rebaseline_id
    assert (first.stream, first.alert_id) == (alert.stream, alert.alert_id)
    assert (first.decided_by, first.reason, first.decided_at) == ("dr.li", WHY, DECIDED_AT)
    assert decode(Rebaseline, encode(first)) == first


@pytest.mark.parametrize(
    "detector", ["score_drift", "model_drift", "kvp_band_drift", "slice_thickness_band_drift"]
)
def test_every_reference_drift_detector_may_be_rebaselined(detector: str) -> None:
    assert is_reference_drift(detector)
    rebaseline_decision(make_alert(detector=detector), "dr.li", WHY, DECIDED_AT)


@pytest.mark.parametrize(
    "detector",
    [
        "sensitivity_cusum",
        "specificity_claims_test",
        "sensitivity_estimate",
        "calibration_test",
        "sensitivity_site_vs_fleet",
    ],
)
def test_claim_based_detectors_are_refused_naming_the_detector(detector: str) -> None:
    alert = make_alert(detector=detector)
    with pytest.raises(RebaselineRefused) as refused:
        rebaseline_decision(alert, "dr.li", WHY, DECIDED_AT)
    message = str(refused.value)
    assert detector in message
    assert str(alert.alert_id) in message
    assert "claims are registered, not re-baselined" in message


def test_a_detector_without_a_reference_is_refused_as_not_a_drift() -> None:
    with pytest.raises(RebaselineRefused, match="unregistered_change is not a reference-drift"):
        rebaseline_decision(make_alert(detector="unregistered_change"), "dr.li", WHY, DECIDED_AT)


def test_a_decision_says_who_and_why() -> None:
    with pytest.raises(RebaselineRefused, match="say who and why"):
        rebaseline_decision(make_alert(detector="score_drift"), "dr.li", "  ", DECIDED_AT)


# --- the record in the store (SQLite and PostgreSQL) -------------------------------------


def test_recording_resolves_the_acknowledged_alert_and_chains_the_decision(
    store: EvidenceStore,
) -> None:
    alert = make_alert(detector="model_drift")
    store.record_alert(alert, actor="worker")
    store.acknowledge_alert(alert.alert_id, by="dr.li", note="new scanner at site-a?")
    decision = rebaseline_decision(alert, "dr.li", WHY, DECIDED_AT)

    view = store.record_rebaseline(decision)

    assert view.status is AlertStatus.RESOLVED
    assert (view.resolved_by, view.resolved_at) == ("dr.li", DECIDED_AT)
    assert view.resolution is not None and WHY in view.resolution
    assert str(decision.rebaseline_id) in view.resolution
    assert store.alert(alert.alert_id).status is AlertStatus.RESOLVED
    *_, resolved, rebaselined = store.audit_entries()
    assert (resolved.action, resolved.subject) == ("alert.resolve", f"alert:{alert.alert_id}")
    assert rebaselined.action == "stream.rebaseline"
    assert rebaselined.subject == f"stream:{alert.stream.as_key()}"
    assert rebaselined.actor == "dr.li"
    assert Rebaseline.model_validate_json(rebaselined.payload) == decision
    verdict = store.verify_audit_chain()
    assert verdict.problem is None
    assert verdict.entries == 4  # raise, acknowledge, resolve, rebaseline


def test_a_device_s_decisions_are_read_by_its_exact_id_oldest_first(
    store: EvidenceStore,
) -> None:
    def decided(device_id: str, days: int) -> Rebaseline:
        alert = make_alert(detector="score_drift", stream=make_stream(device_id=device_id))
        store.record_alert(alert, actor="worker")
        store.acknowledge_alert(alert.alert_id, by="dr.li", note="new scanner?")
        decision = rebaseline_decision(alert, "dr.li", WHY, DECIDED_AT + timedelta(days=days))
        store.record_rebaseline(decision)
        return decision

    first = decided("lung-ct", 0)
    decided("LUNG-CT", 1)  # another device, though SQLite's LIKE would not tell them apart
    decided("lung-ct.2", 2)  # another device whose id begins with this one's
    second = decided("lung-ct", 3)

    decisions = store.rebaseline_decisions("lung-ct")

    assert decisions == [first.model_dump(mode="json"), second.model_dump(mode="json")]


def test_an_open_alert_is_refused_with_the_lifecycle_and_nothing_is_written(
    store: EvidenceStore,
) -> None:
    alert = make_alert(detector="score_drift")
    store.record_alert(alert, actor="worker")
    before = store.audit_entries()

    with pytest.raises(IllegalTransition, match="still open: acknowledge it first"):
        store.record_rebaseline(rebaseline_decision(alert, "dr.li", WHY, DECIDED_AT))

    assert store.alert(alert.alert_id).status is AlertStatus.OPEN
    assert store.audit_entries() == before


def test_a_claim_based_alert_or_another_stream_is_refused_and_nothing_is_written(
    store: EvidenceStore,
) -> None:
    cusum = make_alert(detector="sensitivity_cusum")
    drift = make_alert(detector="score_drift")
    for alert in (cusum, drift):
        store.record_alert(alert, actor="worker")
        store.acknowledge_alert(alert.alert_id, by="dr.li", note="looking")
    before = store.audit_entries()
    disguised = rebaseline_decision(drift, "dr.li", WHY, DECIDED_AT).model_copy(
        update={"alert_id": cusum.alert_id}
    )
    elsewhere = rebaseline_decision(drift, "dr.li", WHY, DECIDED_AT).model_copy(
        update={"stream": make_stream(site_id="site-b")}
    )

    with pytest.raises(EvidenceError, match="sensitivity_cusum tests a registered claim"):
        store.record_rebaseline(disguised)
    with pytest.raises(EvidenceError, match="names stream .*site-b"):
        store.record_rebaseline(elsewhere)

    assert {store.alert(a.alert_id).status for a in (cusum, drift)} == {AlertStatus.ACKNOWLEDGED}
    assert store.audit_entries() == before


def test_the_next_drift_signal_opens_a_new_alert(store: EvidenceStore) -> None:
    alert = make_alert(detector="score_drift")
    store.record_alert(alert, actor="worker")
    store.acknowledge_alert(alert.alert_id, by="dr.li", note="new scanner")
    store.record_rebaseline(rebaseline_decision(alert, "dr.li", WHY, DECIDED_AT))
    later = make_alert(detector="score_drift", alert_id=uuid.uuid4())

    assert store.record_alert(later, actor="worker") is True

    assert store.alert(later.alert_id).status is AlertStatus.OPEN
