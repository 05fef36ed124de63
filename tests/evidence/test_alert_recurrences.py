"""One persistent problem is one alert: later signals of its stream and detector recur it."""

from __future__ import annotations

from datetime import date, timedelta

import pytest
from evidence_builders import DEVICE, T0, make_alert, make_stream, registered_device

from evidence.lifecycle import AlertStatus, highest_severity
from evidence.report import build_report
from evidence.store import EvidenceStore, NotFound
from postmarket.contracts import Alert
from postmarket.versions import preset

WORKER = "worker"


def later_signal(days: int, **overrides: object) -> Alert:
    """The same stream and detector signalling again ``days`` after the first alert's cases."""
    fields: dict[str, object] = {
        "statistic": 4.4 + days / 10,
        "evidence": {"cases": 400 + days, "positives": 50},
        "first_case_time": T0 + timedelta(days=days - 3),
        "last_case_time": T0 + timedelta(days=days),
        "raised_at": T0 + timedelta(days=days, minutes=1),
        "message": f"sensitivity still below the claim, day {days}",
    }
    return make_alert(**{**fields, **overrides})


def test_a_second_signal_while_open_is_a_recurrence_not_a_new_alert(
    store: EvidenceStore,
) -> None:
    first, second = make_alert(), later_signal(days=10)
    assert store.record_alert(first, actor=WORKER) is True
    assert store.record_alert(second, actor=WORKER) is True
    views = store.alerts()
    assert [view.alert.alert_id for view in views] == [first.alert_id]
    assert (views[0].status, views[0].recurrences) == (AlertStatus.OPEN, 1)


def test_a_signal_while_acknowledged_is_a_recurrence(store: EvidenceStore) -> None:
    first = make_alert()
    store.record_alert(first, actor=WORKER)
    store.acknowledge_alert(first.alert_id, by="dr.li", note="checking site-a")
    store.record_alert(later_signal(days=10), actor=WORKER)
    (view,) = store.alerts()
    assert (view.alert.alert_id, view.status, view.recurrences) == (
        first.alert_id,
        AlertStatus.ACKNOWLEDGED,
        1,
    )


def test_after_resolve_the_next_signal_opens_a_new_alert(store: EvidenceStore) -> None:
    first, after_fix = make_alert(), later_signal(days=20)
    store.record_alert(first, actor=WORKER)
    store.acknowledge_alert(first.alert_id, by="dr.li", note="checking")
    store.resolve_alert(first.alert_id, by="dr.li", resolution="camera recalibrated")
    store.record_alert(after_fix, actor=WORKER)
    statuses = {view.alert.alert_id: view.status for view in store.alerts()}
    assert statuses == {first.alert_id: AlertStatus.RESOLVED, after_fix.alert_id: AlertStatus.OPEN}
    assert store.alert(first.alert_id).recurrences == 0


def test_signals_of_another_site_or_detector_open_their_own_alerts(
    store: EvidenceStore,
) -> None:
    signals = [
        make_alert(),
        later_signal(days=10, stream=make_stream(site_id="site-b")),
        later_signal(days=10, detector="specificity_cusum"),
        later_signal(days=10, stream=make_stream(device_version="2.2.0.0")),
    ]
    for signal in signals:
        store.record_alert(signal, actor=WORKER)
    assert len(store.alerts(AlertStatus.OPEN)) == 4
    assert all(view.recurrences == 0 for view in store.alerts())


def test_a_recurrence_keeps_every_field_as_raised(store: EvidenceStore) -> None:
    first = make_alert()
    recurrences = [later_signal(days=10, severity="critical"), later_signal(days=20)]
    for alert in (first, *recurrences):
        store.record_alert(alert, actor=WORKER)
    assert store.alert_recurrences(first.alert_id) == recurrences
    assert store.alert(first.alert_id).alert == first


def test_the_view_has_the_count_latest_time_and_highest_severity(
    store: EvidenceStore,
) -> None:
    first = make_alert(severity="warning")
    store.record_alert(first, actor=WORKER)
    store.record_alert(later_signal(days=20, severity="info"), actor=WORKER)
    store.record_alert(later_signal(days=10, severity="critical"), actor=WORKER)  # late
    view = store.alert(first.alert_id)
    assert view.recurrences == 2
    assert view.last_recurred_at == T0 + timedelta(days=20, minutes=1)
    assert view.highest_severity == "critical"
    assert view.alert.severity == "warning"


def test_an_alert_that_never_recurred_has_its_own_severity(store: EvidenceStore) -> None:
    first = make_alert(severity="info")
    store.record_alert(first, actor=WORKER)
    view = store.alert(first.alert_id)
    assert (view.recurrences, view.last_recurred_at, view.highest_severity) == (0, None, "info")


def test_a_redelivered_alert_is_stored_once_after_it_recurred(store: EvidenceStore) -> None:
    first = make_alert()
    store.record_alert(first, actor=WORKER)
    store.record_alert(later_signal(days=10), actor=WORKER)
    assert store.record_alert(first, actor=WORKER) is False
    assert store.alert(first.alert_id).recurrences == 1
    assert len(store.audit_entries()) == 2


def test_a_redelivered_recurrence_is_stored_once(store: EvidenceStore) -> None:
    first, second = make_alert(), later_signal(days=10)
    store.record_alert(first, actor=WORKER)
    store.record_alert(second, actor=WORKER)
    assert store.record_alert(second, actor=WORKER) is False
    assert store.alert_recurrences(first.alert_id) == [second]
    assert len(store.audit_entries()) == 2


def test_a_recurrence_redelivered_after_resolve_opens_no_alert(store: EvidenceStore) -> None:
    first, second = make_alert(), later_signal(days=10)
    store.record_alert(first, actor=WORKER)
    store.record_alert(second, actor=WORKER)
    store.acknowledge_alert(first.alert_id, by="dr.li", note="checking")
    store.resolve_alert(first.alert_id, by="dr.li", resolution="recalibrated")
    assert store.record_alert(second, actor=WORKER) is False
    assert [view.alert.alert_id for view in store.alerts()] == [first.alert_id]


def test_each_recurrence_is_audited_under_its_alert_and_the_chain_verifies(
    store: EvidenceStore,
) -> None:
    first, second = make_alert(), later_signal(days=10)
    store.record_alert(first, actor=WORKER)
    store.record_alert(second, actor="worker-2")
    entries = store.audit_entries()
    assert [(e.action, e.actor, e.subject) for e in entries] == [
        ("alert.raise", WORKER, f"alert:{first.alert_id}"),
        ("alert.recur", "worker-2", f"alert:{first.alert_id}"),
    ]
    assert str(second.alert_id) in entries[1].payload
    assert store.verify_audit_chain().intact


def test_a_recurrence_id_is_not_an_alert_but_names_the_alert_it_recurs(
    store: EvidenceStore,
) -> None:
    first, second = make_alert(), later_signal(days=10)
    store.record_alert(first, actor=WORKER)
    store.record_alert(second, actor=WORKER)
    with pytest.raises(NotFound, match=f"recurrence of alert {first.alert_id}"):
        store.acknowledge_alert(second.alert_id, by="dr.li", note="mine")
    assert store.alert(first.alert_id).status is AlertStatus.OPEN


@pytest.mark.parametrize(
    ("severities", "highest"),
    [
        (["info"], "info"),
        (["info", "warning"], "warning"),
        (["critical", "warning", "info"], "critical"),
        (["warning", "warning"], "warning"),
    ],
)
def test_highest_severity_follows_the_contracts_order(severities: list[str], highest: str) -> None:
    assert highest_severity(severities) == highest


def test_a_report_lists_an_alert_raised_before_its_window_that_recurred_in_it(
    store: EvidenceStore,
) -> None:
    registered_device(store)
    february = make_alert(
        first_case_time=T0 - timedelta(days=20),
        last_case_time=T0 - timedelta(days=14),
        raised_at=T0 - timedelta(days=14),
    )
    store.record_alert(february, actor=WORKER)
    store.record_alert(later_signal(days=10), actor=WORKER)
    report = build_report(store, DEVICE, date(2026, 3, 1), date(2026, 3, 31), preset("nmpa-syzb"))
    assert [view.alert.alert_id for view in report.alerts] == [february.alert_id]
    april = build_report(store, DEVICE, date(2026, 4, 1), date(2026, 4, 30), preset("nmpa-syzb"))
    assert april.alerts == ()
