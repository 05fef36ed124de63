"""``postmarket replay`` sends v2 signed batches: full ones per site, bounded by count and
bytes, identical on a rerun; counts stay per event (no Kafka here)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pandas as pd
import pytest

from postmarket import topics
from postmarket.contracts import Prediction
from postmarket.contracts.batches import encode_batch
from postmarket.contracts.events import MAX_BATCH_EVENTS
from streams.replay import (
    ColumnMapping,
    CountingSink,
    SiteBatches,
    replay_file,
)
from tests.collectors.batch_records import batch_events, read_batch
from tests.factories import make_prediction
from tests.streams.test_replay import RecordingSink, prediction_row


def history(path: Path, sites: list[str]) -> Path:
    """One prediction row per entry of ``sites``, in that order, each its own case."""
    rows = [prediction_row(site_id=site, case_pseudonym=f"c-{i}") for i, site in enumerate(sites)]
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


def batches(sink: RecordingSink) -> list[tuple[str, list[str]]]:
    """Each batch record's site and the case pseudonyms it carries, in order."""
    found = []
    for topic, key, value in sink.sent_records:
        assert topic == topics.INPUTS
        found.append(
            (read_batch(key, value).site_id, [e.case_pseudonym for e in batch_events(key, value)])
        )
    return found


def test_a_replay_sends_full_batches_one_site_per_batch(tmp_path: Path) -> None:
    sites = ["site-a", "site-b"] * 3 + ["site-a"] * (MAX_BATCH_EVENTS + 1)
    sink = RecordingSink()

    summary = replay_file(history(tmp_path / "h.csv", sites), "predictions", ColumnMapping(), sink)

    sent = batches(sink)
    sizes = sorted((site, len(cases)) for site, cases in sent)
    assert sizes == [("site-a", 4), ("site-a", MAX_BATCH_EVENTS), ("site-b", 3)]
    carried = Counter(case for _site, cases in sent for case in cases)
    assert carried == Counter(f"c-{i}" for i in range(len(sites)))
    assert (summary.published, summary.rows, summary.topic) == (
        len(sites),
        len(sites),
        sink_topic(),
    )


def sink_topic() -> str:
    return topics.INPUTS


def test_within_a_site_batches_keep_the_files_order(tmp_path: Path) -> None:
    sink = RecordingSink()
    replay_file(
        history(tmp_path / "h.csv", ["site-a"] * 7),
        "predictions",
        ColumnMapping(),
        sink,
        writer=SiteBatches(sink, max_events=3),
    )
    assert batches(sink) == [
        ("site-a", ["c-0", "c-1", "c-2"]),
        ("site-a", ["c-3", "c-4", "c-5"]),
        ("site-a", ["c-6"]),
    ]


def test_a_batch_reaching_the_byte_bound_exactly_is_sent_whole() -> None:
    events = [make_prediction(site_id="site-a", case_pseudonym=f"c-{i:03d}") for i in range(7)]
    raws = [(e, e.model_dump_json().encode()) for e in events]
    bound = len(encode_batch("site-a", [("prediction", str(e.event_id), r) for e, r in raws[:3]]))
    for max_bytes, expected in ((bound, [3, 3, 1]), (bound - 1, [2, 2, 2, 1])):
        sink = RecordingSink()
        writer = SiteBatches(sink, max_bytes=max_bytes)
        for event, raw in raws:
            writer.write("predictions", event, raw)
        writer.finish()
        assert [len(batch_events(k, v)) for _, k, v in sink.sent_records] == expected
        assert all(len(v) <= max_bytes for _, _, v in sink.sent_records)


def test_replaying_the_same_file_again_sends_the_same_records(tmp_path: Path) -> None:
    file = history(tmp_path / "h.csv", ["site-a", "site-b", "site-a"])
    first, second = RecordingSink(), RecordingSink()
    replay_file(file, "predictions", ColumnMapping(), first)
    replay_file(file, "predictions", ColumnMapping(), second)
    assert first.sent_records == second.sent_records and len(first.sent_records) == 2


def test_counts_and_progress_stay_per_event(tmp_path: Path) -> None:
    seen: list[int] = []
    sink = CountingSink()
    summary = replay_file(
        history(tmp_path / "h.csv", ["site-a"] * 10),
        "predictions",
        ColumnMapping(),
        sink,
        chunk_rows=4,
        on_rows=seen.append,
    )
    assert seen == [4, 4, 2]
    assert summary.published == sink.sent == 10


class FailingSink(CountingSink):
    """Acknowledges nothing: every event of every record it was given is unacknowledged."""

    def finish(self) -> int:
        return self.sent


def test_an_unacknowledged_batch_counts_each_of_its_events(tmp_path: Path) -> None:
    summary = replay_file(
        history(tmp_path / "h.csv", ["site-a"] * 5 + ["site-b"] * 2),
        "predictions",
        ColumnMapping(),
        FailingSink(),
    )
    assert (summary.not_acknowledged, summary.acknowledged) == (7, 0)


def test_a_v1_replay_still_sends_one_record_per_event(tmp_path: Path) -> None:
    sink = RecordingSink()
    replay_file(
        history(tmp_path / "h.csv", ["site-a", "site-b"]),
        "predictions",
        ColumnMapping(),
        sink,
        input_contract="v1",
    )
    assert [(t, k) for t, k, _ in sink.sent_records] == [
        (topics.PREDICTIONS, b"c-0"),
        (topics.PREDICTIONS, b"c-1"),
    ]


def test_a_batch_bound_beyond_the_contract_is_refused() -> None:
    with pytest.raises(ValueError, match="1 to 500"):
        SiteBatches(CountingSink(), max_events=MAX_BATCH_EVENTS + 1)


def test_every_replayed_event_keeps_its_contract(tmp_path: Path) -> None:
    sink = RecordingSink()
    replay_file(history(tmp_path / "h.csv", ["site-a"]), "predictions", ColumnMapping(), sink)
    [(_, key, value)] = sink.sent_records
    [event] = batch_events(key, value)
    assert isinstance(event, Prediction) and event.study_design == "retrospective"
