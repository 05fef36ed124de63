"""Site against fleet on a timer: a site below the fleet's funnel raises one alert."""

from __future__ import annotations

from datetime import timedelta

import numpy as np
from evidence_builders import T0, registered_device

from detectors import funnel_plot_limits
from postmarket.contracts.events import Outcome
from postmarket.evidence.fleet_review import review_fleet
from postmarket.evidence.store import EvidenceStore
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


def test_a_site_below_the_funnel_raises_one_alert_until_resolved(store: EvidenceStore) -> None:
    registered_device(store)
    _fleet(store, weak_site_sensitivity=0.6)
    raised = review_fleet(store, T0 + timedelta(days=30))
    assert [(a.stream.site_id, a.detector) for a in raised] == [
        ("site-d", "sensitivity_site_vs_fleet")
    ]
    alert = raised[0]
    evidence = alert.evidence
    fleet_rate = evidence["fleet_successes"] / evidence["fleet_cases"]
    lower, _ = funnel_plot_limits(fleet_rate, [evidence["site_cases"]], 0.998)
    assert alert.threshold == float(lower[0])
    assert alert.statistic == evidence["site_successes"] / evidence["site_cases"] < alert.threshold
    assert store.alert(alert.alert_id).alert == alert

    _fleet(store, weak_site_sensitivity=0.6, start=1000)
    assert review_fleet(store, T0 + timedelta(days=31)) == [], "still open: not raised again"
    store.acknowledge_alert(alert.alert_id, by="qa-lead", note="asking site-d")
    store.resolve_alert(alert.alert_id, by="qa-lead", resolution="site-d camera replaced")
    again = review_fleet(store, T0 + timedelta(days=32))
    assert [a.stream.site_id for a in again] == ["site-d"]
    assert again[0].alert_id != alert.alert_id


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
