"""Per-site counts aggregated in SQL: the fleet review reads them instead of every outcome."""

from __future__ import annotations

from datetime import timedelta

import numpy as np
from evidence_builders import DEVICE, T0, registered_device
from sqlalchemy import inspect

from evidence.fleet_review import site_vs_fleet_alerts
from evidence.migrate import make_engine, upgrade
from evidence.report_outcomes import counted_proportion, proportion
from evidence.report_sites import site_counts
from evidence.store import EvidenceStore, OutcomeRecord
from postmarket.contracts.events import Label, Outcome
from tests.factories import make_outcome

SITES = ("site-a", "site-b", "site-c", "site-d", "site-e")
WEAK = {
    ("2.1.0.3", "referable_dr", "site-d"): (0.6, 0.9),
    ("2.2.0.0", "referable_dr", "site-b"): (0.9, 0.6),
}
"""(version, task, site) -> (sensitivity, specificity) where a site is worse than its fleet."""


def _fleet_outcomes(seed: int = 3) -> list[Outcome]:
    """Two versions and two tasks at five sites, both labels, both designs, shuffled times."""
    rng = np.random.default_rng(seed)
    outcomes = []
    streams = [
        (version, task, site)
        for version in ("2.1.0.3", "2.2.0.0")
        for task in ("referable_dr", "macular_edema")
        for site in SITES
    ]
    for number, stream in enumerate(streams):
        version, task, site = stream
        sensitivity, specificity = WEAK.get(stream, (0.9, 0.92))
        for i in range(120):
            positive = rng.random() < 0.5
            right = rng.random() < (sensitivity if positive else specificity)
            label: Label = "positive" if positive else "negative"
            decision = label if right else ("negative" if positive else "positive")
            offset = number * 1000 + i
            outcomes.append(
                make_outcome(
                    decision,
                    label,
                    offset,
                    device_version=version,
                    task=task,
                    site_id=site,
                    case_pseudonym=f"c-{offset}",
                    event_time=T0 + timedelta(minutes=int(rng.integers(0, 90 * 24 * 60))),
                    study_design="prospective" if rng.random() < 0.3 else "retrospective",
                )
            )
    return outcomes


def _stored_fleet(store: EvidenceStore) -> list[OutcomeRecord]:
    registered_device(store)
    store.record_field_events(_fleet_outcomes())
    return store.outcomes(DEVICE)


def test_sql_aggregate_equals_the_counts_of_the_outcomes(store: EvidenceStore) -> None:
    outcomes = _stored_fleet(store)
    assert store.site_counts(DEVICE) == site_counts(outcomes)


def test_a_window_limits_the_aggregate_as_it_limits_the_outcomes(store: EvidenceStore) -> None:
    _stored_fleet(store)
    start, end = T0 + timedelta(days=20), T0 + timedelta(days=50)
    assert store.site_counts(DEVICE, start, end) == site_counts(store.outcomes(DEVICE, start, end))


def test_another_device_has_no_counts(store: EvidenceStore) -> None:
    _stored_fleet(store)
    assert store.site_counts("other-device") == []


def test_counts_give_each_metric_as_the_outcomes_do(store: EvidenceStore) -> None:
    outcomes = _stored_fleet(store)
    for counts in store.site_counts(DEVICE):
        cases = [
            o
            for o in outcomes
            if (o.stream.device_version, o.stream.task, o.stream.site_id)
            == (counts.version, counts.task, counts.site)
        ]
        for metric in ("sensitivity", "specificity", "ppv", "npv"):
            assert counted_proportion(metric, [counts]) == proportion(metric, cases)


def test_review_from_the_sql_aggregate_raises_the_alerts_of_the_python_path(
    store: EvidenceStore,
) -> None:
    outcomes = _stored_fleet(store)
    raised_at = T0 + timedelta(days=100)
    from_sql = site_vs_fleet_alerts(DEVICE, store.site_counts(DEVICE), raised_at)
    from_outcomes = site_vs_fleet_alerts(DEVICE, site_counts(outcomes), raised_at)
    assert from_sql == from_outcomes
    assert {(a.stream.device_version, a.stream.site_id, a.detector) for a in from_sql} == {
        ("2.1.0.3", "site-d", "sensitivity_site_vs_fleet"),
        ("2.2.0.0", "site-b", "specificity_site_vs_fleet"),
    }


def test_alert_evidence_is_what_the_site_and_fleet_outcomes_show(store: EvidenceStore) -> None:
    outcomes = _stored_fleet(store)
    alerts = site_vs_fleet_alerts(DEVICE, store.site_counts(DEVICE), T0 + timedelta(days=100))
    assert alerts
    for alert in alerts:
        metric = alert.detector.removesuffix("_site_vs_fleet")
        fleet = [
            o
            for o in outcomes
            if (o.stream.device_version, o.stream.task)
            == (alert.stream.device_version, alert.stream.task)
        ]
        site = [o for o in fleet if o.stream.site_id == alert.stream.site_id]
        observed, pooled = proportion(metric, site), proportion(metric, fleet)
        assert alert.evidence == {
            "site_successes": observed.successes,
            "site_cases": observed.n,
            "fleet_successes": pooled.successes,
            "fleet_cases": pooled.n,
        }
        assert alert.first_case_time == min(o.prediction_time for o in site)
        assert alert.last_case_time == max(o.prediction_time for o in site)
        assert alert.message.startswith(
            f"{metric} at {alert.stream.site_id} is {observed.estimate:.1%} over {observed.n} "
        )


def test_revision_5_adds_the_index_covering_the_site_counts(evidence_url: str) -> None:
    def indexes() -> set[str]:
        return {str(ix["name"]) for ix in inspect(engine).get_indexes("field_outcomes")}

    engine = make_engine(evidence_url)
    try:
        upgrade(engine, "0004")
        assert "ix_field_outcomes_site_counts" not in indexes()
        upgrade(engine, "0005")
        assert "ix_field_outcomes_site_counts" in indexes()
    finally:
        engine.dispose()
