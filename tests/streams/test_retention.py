"""Retention of case files: event-time expiry and the partition a case belongs to."""

from __future__ import annotations

import json
from datetime import timedelta

from aiokafka.partitioner import DefaultPartitioner

from streams.casefile import CaseFile, RecordPosition
from streams.retention import Watermark, case_partition, expiry, past_retention
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


def test_watermark_never_moves_back() -> None:
    watermark = Watermark({})
    watermark.advance(0, T0 + timedelta(days=2))
    assert watermark.advance(0, T0) == T0 + timedelta(days=2)
    assert watermark.advance(1, T0) == T0


def test_past_retention_on_table_state_agrees_with_expiry() -> None:
    case = CaseFile()
    case.add(make_prediction(event_time=T0), RecordPosition("p", 0, 1))
    state = json.loads(json.dumps(case.to_state()))
    for watermark in (T0 + RETENTION, T0 + RETENTION + timedelta(seconds=1)):
        assert past_retention(state, watermark, RETENTION) == (
            expiry(case, watermark, RETENTION) is not None
        )
    assert not past_retention(None, T0 + 2 * RETENTION, RETENTION)
