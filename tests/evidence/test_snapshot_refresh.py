"""The snapshot refresh from SQL aggregates stores exactly what reading every outcome stored.

The reference is the refresh as it was before revision 6: every outcome of the device read
into Python and one prediction count per week of its history.
"""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta, timezone

import numpy as np
from evidence_builders import DEVICE
from sqlalchemy import inspect

from evidence.migrate import make_engine, upgrade
from evidence.sink import DecodedBatch, EvidenceSink, store_batch, touched_weeks
from evidence.snapshots import (
    Snapshot,
    WeekCounts,
    changed_snapshots,
    performance_snapshots,
    refresh_snapshots,
    week_counts,
    week_of,
)
from evidence.store import EvidenceStore, PredictionCount
from postmarket.contracts.events import Label, Outcome, Prediction
from tests.factories import make_outcome, make_prediction

MONDAY = datetime(2026, 1, 5, tzinfo=UTC)
SITES = ("site-a", "site-b", "site-c")
STREAMS = [
    (version, task, site)
    for version in ("2.1.0.3", "2.2.0.0")
    for task in ("referable_dr", "macular_edema")
    for site in SITES
]
BOUNDARIES = (
    MONDAY + timedelta(weeks=3),
    MONDAY + timedelta(weeks=3, microseconds=-1),
    (MONDAY + timedelta(weeks=5)).astimezone(timezone(timedelta(hours=8))),
    MONDAY + timedelta(weeks=6, milliseconds=-0.4),
)
"""Times on either side of a week's start, one given in another zone, one sub-millisecond."""


def _field_events(
    seed: int, weeks: int, cases: int, start: datetime = MONDAY
) -> tuple[list[Outcome], list[Prediction]]:
    """``cases`` predictions over ``weeks`` weeks of every stream; about 80 % have truth."""
    rng = np.random.default_rng(seed)
    outcomes: list[Outcome] = []
    predictions: list[Prediction] = []
    for i in range(cases):
        version, task, site = STREAMS[int(rng.integers(len(STREAMS)))]
        if i < len(BOUNDARIES) and start == MONDAY:
            when = BOUNDARIES[i]
        else:
            when = start + timedelta(seconds=int(rng.integers(weeks * 7 * 86_400)))
        positive = rng.random() < 0.4
        right = rng.random() < (0.85 if positive else 0.9)
        label: Label = "positive" if positive else "negative"
        decision = label if right else ("negative" if positive else "positive")
        fields = {
            "device_version": version,
            "task": task,
            "site_id": site,
            "case_pseudonym": f"c-{seed}-{i}",
            "event_time": when,
            "study_design": "prospective" if rng.random() < 0.3 else "retrospective",
        }
        prediction = make_prediction(decision=decision, **fields)
        predictions.append(prediction)
        if rng.random() < 0.8:
            outcome = make_outcome(decision, label, offset=seed * 10_000 + i, **fields)
            outcomes.append(outcome.model_copy(update={"prediction_event_id": prediction.event_id}))
    return outcomes, predictions


def _snapshots_by_reading_every_outcome(store: EvidenceStore) -> list[Snapshot]:
    """What the refresh computed before: all outcomes, one prediction count per week."""
    outcomes = store.outcomes(DEVICE)
    first, _ = week_of(outcomes[0].prediction_time)
    _, last = week_of(outcomes[-1].prediction_time)
    weekly: list[tuple[datetime, PredictionCount]] = []
    week = first
    while week < last:
        end = week + timedelta(days=7)
        weekly += [(week, count) for count in store.prediction_counts(DEVICE, week, end)]
        week = end
    return performance_snapshots(outcomes, weekly)


def _seeded(store: EvidenceStore) -> EvidenceStore:
    store.record_field_events(*_field_events(seed=1, weeks=8, cases=900))
    return store


def _stream_week(counts: WeekCounts) -> tuple[str, str, datetime]:
    return counts.stream.as_key(), counts.study_design, counts.week


def _week_stream(pair: tuple[datetime, PredictionCount]) -> tuple[datetime, str, str]:
    week, count = pair
    return week, count.stream.as_key(), count.study_design


def test_the_sql_week_counts_are_the_tallies_of_the_outcomes(store: EvidenceStore) -> None:
    _seeded(store)
    assert sorted(store.week_counts(DEVICE), key=_stream_week) == sorted(
        week_counts(store.outcomes(DEVICE)), key=_stream_week
    )


def test_weeks_are_bucketed_as_week_of_buckets_them(store: EvidenceStore) -> None:
    _, predictions = _field_events(seed=1, weeks=8, cases=900)
    store.record_field_events([], predictions)
    expected: Counter[tuple[datetime, str, str]] = Counter(
        (week_of(p.event_time)[0], p.stream.as_key(), p.study_design) for p in predictions
    )
    counted = {
        (week, count.stream.as_key(), count.study_design): count.predictions
        for week, count in store.weekly_prediction_counts(DEVICE)
    }
    assert counted == dict(expected)
    assert {week_of(moment)[0] for moment in BOUNDARIES} <= {week for week, _, _ in counted}


def test_weekly_prediction_counts_are_the_counts_of_each_week(store: EvidenceStore) -> None:
    _seeded(store)
    expected = []
    for week in sorted({week for week, _ in store.weekly_prediction_counts(DEVICE)}):
        counts = store.prediction_counts(DEVICE, week, week + timedelta(days=7))
        expected += [(week, count) for count in counts]
    assert sorted(store.weekly_prediction_counts(DEVICE), key=_week_stream) == expected


def test_a_first_refresh_stores_what_reading_every_outcome_stored(store: EvidenceStore) -> None:
    _seeded(store)
    expected = _snapshots_by_reading_every_outcome(store)
    assert len({s.window_start for s in expected}) >= 8
    assert len({s.site for s in expected}) == len(SITES) + 1
    assert refresh_snapshots(store, DEVICE) == len(expected)
    assert store.snapshots(DEVICE) == expected


def test_a_later_refresh_stores_what_moved_as_reading_every_outcome_did(
    store: EvidenceStore,
) -> None:
    _seeded(store)
    refresh_snapshots(store, DEVICE)
    assert refresh_snapshots(store, DEVICE) == 0, "nothing new, nothing stored"
    # A new week, and late truth for old weeks: both move figures.
    store.record_field_events(
        *_field_events(seed=2, weeks=1, cases=120, start=MONDAY + timedelta(weeks=8))
    )
    store.record_field_events(*_field_events(seed=3, weeks=8, cases=60))
    before = store.snapshots(DEVICE)
    moved = changed_snapshots(
        _snapshots_by_reading_every_outcome(store),
        {snapshot.identity: snapshot for snapshot in before},
    )
    assert {s.window_start for s in moved} > {MONDAY + timedelta(weeks=8)}
    assert refresh_snapshots(store, DEVICE) == len(moved)
    assert store.snapshots(DEVICE) == before + moved


def test_revision_6_adds_the_indexes_covering_the_week_counts(evidence_url: str) -> None:
    def indexes() -> set[str]:
        return {
            str(ix["name"])
            for table in ("field_outcomes", "field_predictions")
            for ix in inspect(engine).get_indexes(table)
        }

    added = {"ix_field_outcomes_week_counts", "ix_field_predictions_week_counts"}
    engine = make_engine(evidence_url)
    try:
        upgrade(engine, "0005")
        assert not added & indexes()
        upgrade(engine, "0006")
        assert added <= indexes()
    finally:
        engine.dispose()


def test_refreshing_the_touched_weeks_stores_what_a_full_refresh_stores(
    store: EvidenceStore,
) -> None:
    _seeded(store)
    refresh_snapshots(store, DEVICE)
    late = DecodedBatch(
        *_field_events(seed=3, weeks=2, cases=60, start=MONDAY + timedelta(weeks=3))
    )
    new_week = DecodedBatch(
        *_field_events(seed=2, weeks=1, cases=120, start=MONDAY + timedelta(weeks=8))
    )
    # The sink stores a batch twice after a crash before its offsets were committed.
    for batch in (late, new_week, late):
        store.record_field_events(batch.outcomes, batch.predictions)
    before = store.snapshots(DEVICE)
    moved = changed_snapshots(
        _snapshots_by_reading_every_outcome(store), {s.identity: s for s in before}
    )
    weeks = touched_weeks(late)[DEVICE] | touched_weeks(new_week)[DEVICE]
    assert refresh_snapshots(store, DEVICE, weeks) == len(moved) > 0
    assert store.snapshots(DEVICE) == before + moved
    assert refresh_snapshots(store, DEVICE) == 0, "the other weeks had not moved"


def test_a_batch_touches_the_weeks_of_its_prediction_times() -> None:
    outcomes, predictions = _field_events(seed=4, weeks=2, cases=20)
    weeks = touched_weeks(DecodedBatch(outcomes[:1], predictions[-1:]))
    assert weeks == {
        DEVICE: {week_of(outcomes[0].prediction_time)[0], week_of(predictions[-1].event_time)[0]}
    }
    assert touched_weeks(DecodedBatch()) == {}


def test_the_sink_reviews_every_week_first_then_the_weeks_it_stored_into(
    store: EvidenceStore,
) -> None:
    _seeded(store)
    sink = EvidenceSink(store, "localhost:9")  # review() alone never contacts Kafka
    sink.review()
    first = sink.counts.snapshots
    assert first == len(store.snapshots(DEVICE)) > 0
    batch = DecodedBatch(
        *_field_events(seed=2, weeks=1, cases=120, start=MONDAY + timedelta(weeks=8))
    )
    store_batch(store, batch, sink.counts)
    sink.note_stored(batch)
    before = store.snapshots(DEVICE)
    moved = changed_snapshots(
        _snapshots_by_reading_every_outcome(store), {s.identity: s for s in before}
    )
    sink.review()
    assert sink.counts.snapshots - first == len(moved) > 0
    assert store.snapshots(DEVICE) == before + moved
