"""Alerts in the evidence store: open -> acknowledged -> resolved, with who, when and why."""

from __future__ import annotations

import uuid
from datetime import timedelta

import pytest
from evidence_builders import T0, make_alert, make_stream

from evidence.lifecycle import (
    AlertAction,
    AlertStatus,
    IllegalTransition,
    next_status,
)
from evidence.store import EvidenceError, EvidenceStore, NotFound

OPEN, ACKED, RESOLVED = AlertStatus.OPEN, AlertStatus.ACKNOWLEDGED, AlertStatus.RESOLVED
ACK, RESOLVE = AlertAction.ACKNOWLEDGE, AlertAction.RESOLVE


@pytest.mark.parametrize(
    ("current", "action", "expected"),
    [(OPEN, ACK, ACKED), (ACKED, RESOLVE, RESOLVED)],
)
def test_legal_transition(current: AlertStatus, action: AlertAction, expected: AlertStatus) -> None:
    assert next_status(current, action) is expected


@pytest.mark.parametrize(
    ("current", "action", "why"),
    [
        (OPEN, RESOLVE, "still open: acknowledge it first"),
        (ACKED, ACK, "already acknowledged"),
        (RESOLVED, ACK, "already resolved"),
        (RESOLVED, RESOLVE, "already resolved"),
    ],
)
def test_illegal_transition_says_why(current: AlertStatus, action: AlertAction, why: str) -> None:
    with pytest.raises(IllegalTransition, match=why):
        next_status(current, action)


def test_recorded_alert_is_open_and_round_trips(store: EvidenceStore) -> None:
    alert = make_alert()
    assert store.record_alert(alert, actor="worker") is True
    view = store.alert(alert.alert_id)
    assert (view.status, view.alert) == (OPEN, alert)


def test_recording_the_same_alert_twice_keeps_one(store: EvidenceStore) -> None:
    alert = make_alert()
    store.record_alert(alert, actor="worker")
    assert store.record_alert(alert, actor="worker") is False
    assert len(store.alerts()) == 1
    assert len(store.audit_entries()) == 1


def test_acknowledge_then_resolve_records_who_when_why(store: EvidenceStore) -> None:
    alert = make_alert()
    store.record_alert(alert, actor="worker")
    acked_at, resolved_at = T0 + timedelta(days=7), T0 + timedelta(days=9)
    store.acknowledge_alert(alert.alert_id, by="dr.li", note="checking site-a", at=acked_at)
    view = store.resolve_alert(
        alert.alert_id, by="dr.li", resolution="camera firmware rolled back", at=resolved_at
    )
    assert view.status is RESOLVED
    assert (view.acknowledged_by, view.acknowledged_at, view.acknowledgement) == (
        "dr.li",
        acked_at,
        "checking site-a",
    )
    assert (view.resolved_by, view.resolved_at, view.resolution) == (
        "dr.li",
        resolved_at,
        "camera firmware rolled back",
    )


def test_resolving_an_open_alert_is_refused_and_writes_nothing(store: EvidenceStore) -> None:
    alert = make_alert()
    store.record_alert(alert, actor="worker")
    with pytest.raises(IllegalTransition, match="acknowledge it first"):
        store.resolve_alert(alert.alert_id, by="dr.li", resolution="fixed")
    assert store.alert(alert.alert_id).status is OPEN
    assert [e.action for e in store.audit_entries()] == ["alert.raise"]


def test_lifecycle_changes_are_audited(store: EvidenceStore) -> None:
    alert = make_alert()
    store.record_alert(alert, actor="worker")
    store.acknowledge_alert(alert.alert_id, by="dr.li", note="looking")
    store.resolve_alert(alert.alert_id, by="dr.wang", resolution="false alarm: label delay")
    entries = store.audit_entries()
    assert [(e.action, e.actor) for e in entries] == [
        ("alert.raise", "worker"),
        ("alert.acknowledge", "dr.li"),
        ("alert.resolve", "dr.wang"),
    ]
    assert all(e.subject == f"alert:{alert.alert_id}" for e in entries)


def test_acknowledging_needs_who_and_why(store: EvidenceStore) -> None:
    alert = make_alert()
    store.record_alert(alert, actor="worker")
    with pytest.raises(EvidenceError, match="say who and why"):
        store.acknowledge_alert(alert.alert_id, by="dr.li", note=" ")


def test_unknown_alert_is_not_found(store: EvidenceStore) -> None:
    with pytest.raises(NotFound, match="no alert"):
        store.alert(uuid.UUID(int=7))


def test_alerts_filter_by_status_newest_first(store: EvidenceStore) -> None:
    older = make_alert(raised_at=T0 + timedelta(days=7), stream=make_stream(site_id="site-a"))
    newer = make_alert(raised_at=T0 + timedelta(days=8), stream=make_stream(site_id="site-b"))
    acked = make_alert(raised_at=T0 + timedelta(days=9), stream=make_stream(site_id="site-c"))
    for alert in (older, newer, acked):
        store.record_alert(alert, actor="worker")
    store.acknowledge_alert(acked.alert_id, by="dr.li", note="mine")
    open_ids = [view.alert.alert_id for view in store.alerts(OPEN)]
    assert open_ids == [newer.alert_id, older.alert_id]
