"""Retention of case files: event-time expiry and the partition a case belongs to."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

from aiokafka.partitioner import DefaultPartitioner
from hypothesis import given, settings
from hypothesis import strategies as st

from streams.casefile import CaseFile, RecordPosition
from streams.retention import (
    Watermark,
    case_key,
    case_partition,
    expiry,
    forgettable,
    key_partition,
    past_retention,
    sweep_action,
)
from tests.factories import T0, make_followup, make_prediction

RETENTION = timedelta(days=180)


def test_case_partition_agrees_with_aiokafkas_own_murmur2_partitioner() -> None:
    """kafka-python (the collector's producer, whose murmur2 we use) against aiokafka's."""
    worker = DefaultPartitioner()
    partitions = list(range(4))
    for case in ("c-1", "c-2", "c-abcdef", "c-" + "x" * 40):
        assert case_partition(case, 4) == worker(case.encode(), partitions, partitions)


def test_case_within_retention_is_kept() -> None:
    case = CaseFile()
    case.add(make_prediction(event_time=T0), RecordPosition("p", 0, 1))
    assert expiry(case, T0 + RETENTION, RETENTION) is None


def test_prediction_without_truth_expires_as_such() -> None:
    case = CaseFile()
    case.add(make_prediction(event_time=T0), RecordPosition("p", 0, 1))
    found = expiry(case, T0 + RETENTION + timedelta(seconds=1), RETENTION)
    assert found is not None
    assert (len(found.streams_without_truth), found.followups_without_prediction) == (1, 0)
    assert found.streams_without_truth[0].site_id == "site-a"


def test_lone_followup_expires_as_unmatched() -> None:
    case = CaseFile()
    case.add(make_followup(event_time=T0), RecordPosition("f", 0, 1))
    found = expiry(case, T0 + timedelta(days=365), RETENTION)
    assert found is not None and found.followups_without_prediction == 1


def test_joined_case_expires_with_nothing_unresolved() -> None:
    case = CaseFile()
    case.add(make_prediction(event_time=T0), RecordPosition("p", 0, 1))
    case.add(make_followup(event_time=T0 + timedelta(days=20)), RecordPosition("f", 0, 2))
    found = expiry(case, T0 + timedelta(days=365), RETENTION)
    assert found is not None
    assert (found.streams_without_truth, found.followups_without_prediction) == ((), 0)


def test_watermark_never_moves_back_and_keeps_partitions_apart() -> None:
    watermark = Watermark()
    watermark.advance(0, T0 + timedelta(days=2))
    assert watermark.advance(0, T0 + timedelta(days=3)) == T0 + timedelta(days=2)
    assert watermark.advance(0, T0) == T0 + timedelta(days=2)
    assert watermark.advance(1, T0) is None  # one event: nothing to rest on yet
    assert watermark.at(1) is None
    assert watermark.advance(1, T0) == T0


def test_one_outlying_event_does_not_move_the_watermark() -> None:
    watermark = Watermark()
    for day in range(5):
        watermark.advance(0, T0 + timedelta(days=day))
    outlier = datetime(9999, 12, 31, tzinfo=UTC)
    assert watermark.advance(0, outlier) == T0 + timedelta(days=4)
    # ...and a second, corroborating event does.
    assert watermark.advance(0, T0 + timedelta(days=30)) == T0 + timedelta(days=30)


def test_past_retention_on_table_state_agrees_with_expiry() -> None:
    case = CaseFile()
    case.add(make_prediction(event_time=T0), RecordPosition("p", 0, 1))
    state = json.loads(json.dumps(case.to_state()))
    for watermark in (T0 + RETENTION, T0 + RETENTION + timedelta(seconds=1)):
        assert past_retention(state, watermark, RETENTION) == (
            expiry(case, watermark, RETENTION) is not None
        )
    assert not past_retention(None, T0 + 2 * RETENTION, RETENTION)


def dropped_state(case: CaseFile, at: datetime) -> dict[str, Any]:
    state: dict[str, Any] = json.loads(json.dumps(case.dropped_past_retention(at).to_state()))
    return state


def test_a_dropped_case_is_forgotten_only_after_its_ids_were_remembered_long_enough() -> None:
    case = CaseFile()
    case.add(make_prediction(event_time=T0), RecordPosition("p", 0, 1))
    dropped_at = T0 + RETENTION + timedelta(days=1)
    state = dropped_state(case, dropped_at)
    remember = timedelta(days=3650)
    assert not past_retention(state, dropped_at + 2 * remember, RETENTION)
    assert not forgettable(state, dropped_at + remember, remember)
    assert forgettable(state, dropped_at + remember + timedelta(seconds=1), remember)


def test_a_case_with_events_is_never_forgotten_however_old_its_dropped_ids() -> None:
    case = CaseFile()
    case.add(make_prediction(event_time=T0), RecordPosition("p", 0, 1))
    reopened = CaseFile.from_state(dropped_state(case, T0 + RETENTION + timedelta(days=1)))
    reopened.add(make_followup(event_time=T0), RecordPosition("f", 0, 2))
    state = json.loads(json.dumps(reopened.to_state()))
    far = T0 + timedelta(days=100_000)
    assert not forgettable(state, far, timedelta(days=1))
    assert past_retention(state, far, RETENTION)  # its new events are dropped first
    assert not forgettable(None, far, timedelta(days=1))


def test_a_sweep_drops_open_cases_and_forgets_dropped_ones_only_when_forgetting() -> None:
    case = CaseFile()
    case.add(make_prediction(event_time=T0), RecordPosition("p", 0, 1))
    open_state = json.loads(json.dumps(case.to_state()))
    dropped_at = T0 + RETENTION + timedelta(days=1)
    long_dropped = dropped_state(case, dropped_at)
    remember, later = timedelta(days=30), dropped_at + timedelta(days=31)
    assert sweep_action(open_state, later, RETENTION, remember, forgetting=False) == "drop"
    assert sweep_action(open_state, T0, RETENTION, remember, forgetting=True) is None
    assert sweep_action(long_dropped, later, RETENTION, remember, forgetting=True) == "forget"
    assert sweep_action(long_dropped, later, RETENTION, remember, forgetting=False) is None
    assert sweep_action(long_dropped, dropped_at, RETENTION, remember, forgetting=True) is None


@settings(max_examples=300, deadline=None)
@given(
    st.from_regex(r"\A[A-Za-z0-9][A-Za-z0-9._:-]{0,20}\Z"),
    st.from_regex(r"\A[A-Za-z0-9][A-Za-z0-9._:-]{0,20}\Z"),
    st.integers(min_value=1, max_value=64),
)
def test_a_case_is_on_its_sites_partition_whatever_the_cache_holds(
    site: str, case: str, partitions: int
) -> None:
    assert case_partition(case_key(site, case), partitions) == key_partition(site, partitions)
