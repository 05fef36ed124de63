"""Site against fleet on a timer: a site below the fleet's funnel raises an alert, which its
later findings recur while it is unresolved, as a worker's alerts are."""

from __future__ import annotations

from datetime import timedelta

import numpy as np
from evidence_builders import T0, registered_device

from detectors.statistics import funnel_plot_limits
from evidence.fleet_review import review_fleet
from evidence.lifecycle import AlertStatus
from evidence.store import EvidenceStore
from postmarket.contracts.events import Alert, Outcome
from tests.factories import make_outcome


def _positives(site: str, sensitivity: float, n: int, seed: int, start: int) -> list[Outcome]:
    rng = np.random.default_rng(seed)
    return [
        make_outcome(
            "positive" if hit else "negative",
            "positive",
            start + i,
            site_id=site,
            case_pseudonym=f"c-{site}-{start + i}",
            event_time=T0 + timedelta(hours=i),
        )
        for i, hit in enumerate(rng.random(n) < sensitivity)
    ]


def _fleet(store: EvidenceStore, weak_site_sensitivity: float, start: int = 0) -> None:
    outcomes = []
    for seed, site in enumerate(("site-a", "site-b", "site-c", "site-d")):
        sensitivity = weak_site_sensitivity if site == "site-d" else 0.9
        outcomes += _positives(site, sensitivity, 200, seed + start, start)
    store.record_field_events(outcomes)


def _review(store: EvidenceStore, day: int) -> list[Alert]:
    return review_fleet(store, T0 + timedelta(days=day))


def _site_d_alert(store: EvidenceStore, day: int) -> Alert:
    """Review the fleet on ``day``; exactly site-d's sensitivity is found below it."""
    found = _review(store, day)
    assert [(a.stream.site_id, a.detector) for a in found] == [
        ("site-d", "sensitivity_site_vs_fleet")
    ]
    return found[0]


def test_a_site_below_the_funnel_raises_an_alert(store: EvidenceStore) -> None:
    registered_device(store)
    _fleet(store, weak_site_sensitivity=0.6)
    alert = _site_d_alert(store, day=30)
    evidence = alert.evidence
    fleet_rate = evidence["fleet_successes"] / evidence["fleet_cases"]
    lower, _ = funnel_plot_limits(fleet_rate, [evidence["site_cases"]], 0.998)
    assert alert.threshold == float(lower[0])
    assert alert.statistic == evidence["site_successes"] / evidence["site_cases"] < alert.threshold
    assert store.alert(alert.alert_id).alert == alert


def test_while_the_alert_is_open_a_new_finding_recurs_it(store: EvidenceStore) -> None:
    registered_device(store)
    _fleet(store, weak_site_sensitivity=0.6)
    first = _site_d_alert(store, day=30)
    _fleet(store, weak_site_sensitivity=0.6, start=1000)
    recurrence = _site_d_alert(store, day=31)
    assert recurrence.alert_id != first.alert_id
    assert (first.evidence["site_cases"], recurrence.evidence["site_cases"]) == (200, 400)
    (view,) = store.alerts()
    assert (view.alert, view.status, view.recurrences) == (first, AlertStatus.OPEN, 1)
    assert store.alert_recurrences(first.alert_id) == [recurrence]


def test_the_same_data_reviewed_again_stores_nothing_new(store: EvidenceStore) -> None:
    registered_device(store)
    _fleet(store, weak_site_sensitivity=0.6)
    first = _site_d_alert(store, day=30)
    _fleet(store, weak_site_sensitivity=0.6, start=1000)
    _site_d_alert(store, day=31)
    trail = len(store.audit_entries())
    assert _review(store, day=32) == []
    assert store.alert(first.alert_id).recurrences == 1
    assert len(store.audit_entries()) == trail


def test_after_resolve_the_next_finding_opens_a_new_alert(store: EvidenceStore) -> None:
    registered_device(store)
    _fleet(store, weak_site_sensitivity=0.6)
    first = _site_d_alert(store, day=30)
    _fleet(store, weak_site_sensitivity=0.6, start=1000)
    _site_d_alert(store, day=31)
    store.acknowledge_alert(first.alert_id, by="qa-lead", note="asking site-d")
    store.resolve_alert(first.alert_id, by="qa-lead", resolution="site-d camera replaced")
    assert _review(store, day=32) == [], "the data the resolution saw is not raised again"
    _fleet(store, weak_site_sensitivity=0.6, start=2000)
    again = _site_d_alert(store, day=33)
    statuses = {view.alert.alert_id: (view.status, view.recurrences) for view in store.alerts()}
    assert statuses == {
        first.alert_id: (AlertStatus.RESOLVED, 1),
        again.alert_id: (AlertStatus.OPEN, 0),
    }


def test_sites_that_match_the_fleet_raise_nothing(store: EvidenceStore) -> None:
    registered_device(store)
    _fleet(store, weak_site_sensitivity=0.9)
    assert review_fleet(store, T0 + timedelta(days=30)) == []


def test_two_sites_are_not_a_fleet(store: EvidenceStore) -> None:
    registered_device(store)
    store.record_field_events(
        _positives("site-a", 0.95, 300, 1, 0) + _positives("site-b", 0.5, 300, 2, 300)
    )
    assert review_fleet(store, T0 + timedelta(days=30)) == []
