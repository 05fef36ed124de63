"""The store records a review decision as the resolution of its claim-based alert, with a
``stream.review`` audit entry, both or neither; it keeps reviews and re-baselinings apart."""

from __future__ import annotations

import pytest
from evidence_builders import T0, make_alert, make_stream

from evidence.lifecycle import AlertStatus, IllegalTransition
from evidence.rebaseline import rebaseline_decision, review_decision
from evidence.store import EvidenceError, EvidenceStore
from postmarket.contracts import Alert

WHY = "412 cases read: camera miscalibrated, recalibrated under CAPA-2026-031"
AT = T0.replace(day=20)


def acknowledged(store: EvidenceStore, detector: str) -> Alert:
    alert = make_alert(detector=detector)
    store.record_alert(alert, actor="worker")
    store.acknowledge_alert(alert.alert_id, by="dr.li", note="reading the cases")
    return alert


def actions(store: EvidenceStore) -> list[str]:
    return [entry.action for entry in store.audit_entries()]


def test_a_review_resolves_its_alert_and_keeps_the_decision(store: EvidenceStore) -> None:
    alert = acknowledged(store, "sensitivity_claims_test")
    decision = review_decision(alert, "dr.li", WHY, AT)

    view = store.record_review(decision)

    assert view.status is AlertStatus.RESOLVED
    assert (view.resolved_by, view.resolved_at) == ("dr.li", AT)
    assert view.resolution == (
        f"reviewed; the stream's rejected claims tests restart (decision "
        f"{decision.rebaseline_id}): {WHY}"
    )
    entry = store.audit_entries()[-1]
    assert (entry.action, entry.actor) == ("stream.review", "dr.li")
    assert store.verify_audit_chain().problem is None
    assert store.rebaseline_decisions(alert.stream.device_id) == []


def test_a_review_of_an_alert_still_open_is_refused_and_nothing_is_stored(
    store: EvidenceStore,
) -> None:
    alert = make_alert(detector="sensitivity_cusum")
    store.record_alert(alert, actor="worker")

    with pytest.raises(IllegalTransition):
        store.record_review(review_decision(alert, "dr.li", WHY, AT))

    assert actions(store) == ["alert.raise"]


def test_a_review_naming_another_stream_is_refused(store: EvidenceStore) -> None:
    alert = acknowledged(store, "sensitivity_cusum")
    elsewhere = review_decision(alert, "dr.li", WHY, AT).model_copy(
        update={"stream": make_stream(site_id="site-b")}
    )

    with pytest.raises(EvidenceError, match="names stream"):
        store.record_review(elsewhere)

    assert store.alert(alert.alert_id).status is AlertStatus.ACKNOWLEDGED


def test_a_review_and_a_re_baselining_are_not_recorded_as_each_other(
    store: EvidenceStore,
) -> None:
    claim = acknowledged(store, "sensitivity_claims_test")
    drift = acknowledged(store, "score_drift")
    review = review_decision(claim, "dr.li", WHY, AT)
    re_baselining = rebaseline_decision(drift, "dr.li", "scanner validated", AT)

    with pytest.raises(EvidenceError, match="not a re-baselining"):
        store.record_rebaseline(review)
    with pytest.raises(EvidenceError, match="not a review"):
        store.record_review(re_baselining)
    as_if_reviewed = re_baselining.model_copy(update={"scope": "review"})
    with pytest.raises(EvidenceError, match="not a claim-based alert"):
        store.record_review(as_if_reviewed)

    assert actions(store)[-1] == "alert.acknowledge"
