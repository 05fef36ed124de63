"""Weekly performance snapshots: figures per version, site and week, stored when they move."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from evidence_builders import DEVICE
from report_builders import field_cases, populated_store
from statsmodels.stats.proportion import proportion_confint

from evidence.snapshots import performance_snapshots, refresh_snapshots, week_of
from evidence.store import EvidenceStore, OutcomeRecord, PredictionCount


def test_weeks_run_monday_to_monday_in_utc() -> None:
    thursday = datetime(2026, 3, 5, 23, 30, tzinfo=UTC)
    assert week_of(thursday) == (
        datetime(2026, 3, 2, tzinfo=UTC),
        datetime(2026, 3, 9, tzinfo=UTC),
    )


def _records(store: EvidenceStore) -> list[OutcomeRecord]:
    return store.outcomes(DEVICE)


def test_each_site_and_the_pooled_fleet_get_wilson_intervals(store: EvidenceStore) -> None:
    populated_store(store)
    outcomes = _records(store)
    snapshots = performance_snapshots(outcomes, [])
    for snapshot in snapshots:
        members = [
            o
            for o in outcomes
            if o.stream.device_version == snapshot.version
            and (snapshot.site is None or o.stream.site_id == snapshot.site)
            and o.study_design == snapshot.study_design
            and week_of(o.prediction_time)[0] == snapshot.window_start
        ]
        label = "positive" if snapshot.metric == "sensitivity" else "negative"
        judged = [o for o in members if o.label == label]
        assert snapshot.trials == len(judged)
        assert snapshot.successes == sum(o.decision == label for o in judged)
        lower, upper = proportion_confint(snapshot.successes, snapshot.trials, method="wilson")
        assert (snapshot.ci_lower, snapshot.ci_upper) == pytest.approx((lower, upper), abs=1e-9)
    pooled = [s for s in snapshots if s.site is None]
    per_site = [s for s in snapshots if s.site is not None]
    assert pooled and per_site
    for total in pooled:
        parts = [
            s
            for s in per_site
            if s.identity[:2] + s.identity[3:] == total.identity[:2] + total.identity[3:]
        ]
        assert sum(s.trials for s in parts) == total.trials


def test_completeness_is_outcomes_over_the_weeks_predictions() -> None:
    outcomes, predictions = field_cases("2.1.0.3", 0.88, 40, seed=7)
    records = [
        OutcomeRecord(
            event_id=str(o.event_id),
            stream=o.stream,
            prediction_time=o.prediction_time,
            truth_time=o.truth_time,
            decision=o.decision,
            label=o.label,
            score=o.score,
            truth_source=o.truth_source,
            study_design=o.study_design,
            manufacturer=None,
            model=None,
            slice_thickness_band=None,
        )
        for o in outcomes
    ]
    weekly = [
        (week_of(p.event_time)[0], PredictionCount(p.stream, p.study_design, 1))
        for p in predictions
    ]
    for snapshot in performance_snapshots(records, weekly):
        if snapshot.site is not None:
            continue
        week = snapshot.window_start
        made = sum(1 for p in predictions if week_of(p.event_time)[0] == week)
        joined = sum(1 for o in outcomes if week_of(o.prediction_time)[0] == week)
        assert snapshot.followup_completeness == pytest.approx(joined / made)


def test_refreshing_stores_only_what_moved(store: EvidenceStore) -> None:
    populated_store(store)
    first = refresh_snapshots(store, DEVICE)
    assert first == len(store.snapshots(DEVICE)) > 0
    assert refresh_snapshots(store, DEVICE) == 0, "nothing changed, nothing stored"
    late_week = max(s.window_start for s in store.snapshots(DEVICE))
    outcomes, predictions = field_cases("2.2.0.0", 0.55, 4, seed=99)
    when = late_week + timedelta(hours=1)
    store.record_field_events(
        [o.model_copy(update={"prediction_time": when}) for o in outcomes],
        [p.model_copy(update={"event_time": when}) for p in predictions],
    )
    moved = refresh_snapshots(store, DEVICE)
    assert 0 < moved < first
    newest = store.snapshots(DEVICE)[-moved:]
    assert {s.version for s in newest} == {"2.2.0.0"}
    assert all(s.window_start == late_week for s in newest)


def test_a_version_only_seen_in_the_field_gets_snapshots(store: EvidenceStore) -> None:
    outcomes, predictions = field_cases("3.0.0.0", 0.8, 30, seed=5)
    store.record_field_events(outcomes, predictions)
    assert refresh_snapshots(store, DEVICE) > 0
    assert {s.version for s in store.snapshots(DEVICE)} == {"3.0.0.0"}
