"""Replay of historical files: column mapping, row conversion, invalid rows (no Kafka here)."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from postmarket import topics
from postmarket.contracts import FollowUp, Prediction, encode
from streams.replay import (
    DEFAULT_COLLECTOR_VERSION,
    ColumnMapping,
    CountingSink,
    InvalidRowError,
    MappingError,
    RowConverter,
    field_kinds,
    replay_file,
)
from tests.collectors.batch_records import batch_events
from tests.factories import T0, make_prediction

PREDICTION_COLUMNS = [
    "site_id",
    "device_id",
    "device_version",
    "task",
    "case_pseudonym",
    "event_time",
    "score",
    "decision",
    "operating_threshold",
]


def prediction_row(**overrides: Any) -> dict[str, Any]:
    row: dict[str, Any] = {
        "site_id": "site-a",
        "device_id": "dr-screen",
        "device_version": "2.1.0.3",
        "task": "referable_dr",
        "case_pseudonym": "c-1",
        "event_time": "2019-05-02T10:00:00+00:00",
        "score": "0.81",
        "decision": "positive",
        "operating_threshold": "0.5",
    }
    row.update(overrides)
    return row


def converter(
    kind: str = "predictions",
    columns: list[str] | None = None,
    mapping: ColumnMapping | None = None,
    **options: Any,
) -> RowConverter:
    header = columns or PREDICTION_COLUMNS
    resolved = (mapping or ColumnMapping()).resolve(kind, header)  # type: ignore[arg-type]
    return RowConverter(resolved, **options)


def write_csv(path: Path, rows: list[dict[str, Any]]) -> Path:
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


class RecordingSink(CountingSink):
    def __init__(self) -> None:
        super().__init__()
        self.sent_records: list[tuple[str, bytes, bytes]] = []

    def send(self, topic: str, key: bytes, value: bytes, events: int = 1) -> None:
        super().send(topic, key, value, events)
        self.sent_records.append((topic, key, value))

    def event_keys(self) -> list[bytes]:
        """The case pseudonyms of every event sent, in order, from batches or single records."""
        keys = []
        for topic, key, value in self.sent_records:
            if topic != topics.INPUTS:
                keys.append(key)
                continue
            keys += [event.case_pseudonym.encode() for event in batch_events(key, value)]
        return keys


def test_columns_named_like_the_contract_need_no_mapping() -> None:
    event = converter().convert(1, prediction_row())

    assert isinstance(event, Prediction)
    assert (event.site_id, event.case_pseudonym, event.score) == ("site-a", "c-1", 0.81)


def test_replayed_events_are_retrospective() -> None:
    event = converter().convert(1, prediction_row())

    assert event.study_design == "retrospective"


def test_the_original_event_time_is_kept() -> None:
    event = converter().convert(1, prediction_row(event_time="2019-05-02T10:00:00+08:00"))

    assert event.event_time == datetime(2019, 5, 2, 2, 0, tzinfo=UTC)


def test_times_without_offset_take_the_configured_zone() -> None:
    shanghai = ZoneInfo("Asia/Shanghai")
    event = converter(naive_timezone=shanghai).convert(
        1, prediction_row(event_time="2019-05-02 10:00")
    )

    assert event.event_time == datetime(2019, 5, 2, 10, 0, tzinfo=shanghai)


def test_times_without_offset_default_to_utc() -> None:
    event = converter().convert(1, prediction_row(event_time="2019-05-02T10:00:00"))

    assert event.event_time.utcoffset() == timedelta(0)


def test_a_row_without_event_id_gets_the_same_id_every_time() -> None:
    first = converter().convert(1, prediction_row())
    again = converter().convert(7, prediction_row())

    assert first.event_id == again.event_id


def test_rows_that_differ_get_different_ids() -> None:
    one = converter().convert(1, prediction_row(case_pseudonym="c-1"))
    other = converter().convert(2, prediction_row(case_pseudonym="c-2"))

    assert one.event_id != other.event_id


def test_an_event_id_column_is_used_as_is() -> None:
    event_id = uuid.uuid4()
    event = converter(columns=[*PREDICTION_COLUMNS, "event_id"]).convert(
        1, prediction_row(event_id=str(event_id))
    )

    assert event.event_id == event_id


def test_columns_can_be_mapped_to_fields() -> None:
    header = [c for c in PREDICTION_COLUMNS if c != "score"] + ["AI Score"]
    row = prediction_row(**{"AI Score": "0.3"})
    event = converter(columns=header, mapping=ColumnMapping(columns={"score": "AI Score"})).convert(
        1, row
    )

    assert event.score == 0.3


def test_nested_acquisition_fields_map_by_dotted_path() -> None:
    header = [*PREDICTION_COLUMNS, "Manufacturer", "SliceThickness"]
    mapping = ColumnMapping(
        columns={
            "acquisition.manufacturer": "Manufacturer",
            "acquisition.slice_thickness_mm": "SliceThickness",
        }
    )
    row = prediction_row(Manufacturer="GE MEDICAL SYSTEMS", SliceThickness="1.25")
    event = converter(columns=header, mapping=mapping).convert(1, row)

    assert isinstance(event, Prediction)
    assert event.acquisition.manufacturer == "GE MEDICAL SYSTEMS"
    assert event.acquisition.slice_thickness_mm == 1.25


def test_constants_fill_a_field_for_every_row() -> None:
    header = [c for c in PREDICTION_COLUMNS if c != "site_id"]
    mapping = ColumnMapping(constants={"site_id": "site-z"})
    event = converter(columns=header, mapping=mapping).convert(1, prediction_row())

    assert event.site_id == "site-z"


def test_collector_version_defaults_to_the_replay_tool() -> None:
    event = converter().convert(1, prediction_row())

    assert event.collector_version == DEFAULT_COLLECTOR_VERSION


def test_a_mapping_to_an_unknown_field_is_refused() -> None:
    with pytest.raises(MappingError, match="no field scoer"):
        converter(mapping=ColumnMapping(columns={"scoer": "score"}))


def test_provenance_cannot_be_mapped() -> None:
    with pytest.raises(MappingError, match="study_design"):
        converter(mapping=ColumnMapping(constants={"study_design": "prospective"}))


def test_a_mapped_column_missing_from_the_file_is_refused() -> None:
    with pytest.raises(MappingError, match="'Score' is not in the file"):
        converter(mapping=ColumnMapping(columns={"score": "Score"}))


def test_a_required_field_without_column_or_constant_is_refused() -> None:
    header = [c for c in PREDICTION_COLUMNS if c != "decision"]

    with pytest.raises(MappingError, match="required Prediction field decision"):
        converter(columns=header)


def test_a_mapping_file_gives_columns_and_constants(tmp_path: Path) -> None:
    toml = tmp_path / "mapping.toml"
    toml.write_text('[columns]\nscore = "AI Score"\n\n[constants]\nsite_id = "site-z"\n')

    mapping = ColumnMapping.from_toml(toml)

    assert mapping == ColumnMapping(columns={"score": "AI Score"}, constants={"site_id": "site-z"})


def test_a_mapping_file_with_an_unknown_table_is_refused(tmp_path: Path) -> None:
    toml = tmp_path / "mapping.toml"
    toml.write_text('[colums]\nscore = "AI Score"\n')

    with pytest.raises(MappingError, match="unknown tables"):
        ColumnMapping.from_toml(toml)


def test_options_override_the_mapping_file_field_by_field() -> None:
    from_file = ColumnMapping(columns={"score": "A", "decision": "D"}, constants={"site_id": "x"})

    merged = from_file.overridden({"site_id": "Site"}, {"score": 0.5})

    assert merged == ColumnMapping(
        columns={"decision": "D", "site_id": "Site"}, constants={"score": 0.5}
    )


def test_an_invalid_value_names_row_column_and_the_contract_reason() -> None:
    header = [c for c in PREDICTION_COLUMNS if c != "score"] + ["Score"]
    mapping = ColumnMapping(columns={"score": "Score"})

    with pytest.raises(InvalidRowError) as raised:
        converter(columns=header, mapping=mapping).convert(12, prediction_row(Score="1.7"))

    invalid = raised.value.invalid
    assert (invalid.row, invalid.code) == (12, "impossible_value")
    assert str(invalid) == (
        "row 12, column 'Score' (score): Input should be less than or equal to 1 (got 1.7)"
    )


def test_a_cell_that_is_not_a_number_names_its_column() -> None:
    with pytest.raises(InvalidRowError, match="column 'score': is not a number \\(got 'high'\\)"):
        converter().convert(3, prediction_row(score="high"))


def test_a_cell_that_is_not_a_date_time_names_its_column() -> None:
    with pytest.raises(InvalidRowError, match="column 'event_time': is not an ISO 8601"):
        converter().convert(3, prediction_row(event_time="last tuesday"))


def test_an_empty_required_cell_is_reported_missing() -> None:
    with pytest.raises(InvalidRowError, match="column 'decision': required field is missing"):
        converter().convert(3, prediction_row(decision=float("nan")))


def test_followup_flags_read_yes_and_no() -> None:
    header = ["site_id", "case_pseudonym", "event_time", "label", "source", "blinded"]
    row = {
        "site_id": "site-a",
        "case_pseudonym": "c-1",
        "event_time": "2019-06-01T00:00:00Z",
        "label": "negative",
        "source": "pathology",
        "blinded": "no",
    }
    event = converter("followups", header).convert(1, row)

    assert isinstance(event, FollowUp)
    assert event.blinded is False
    assert event.study_design == "retrospective"


def test_a_rule_across_fields_is_reported_without_a_column() -> None:
    header = ["site_id", "case_pseudonym", "event_time", "label", "source"]
    row = {
        "site_id": "site-a",
        "case_pseudonym": "c-1",
        "event_time": "2019-06-01T00:00:00Z",
        "label": "negative",
        "source": "reader",
    }

    with pytest.raises(InvalidRowError, match="row 4, field <payload>: .*reader_pseudonym"):
        converter("followups", header).convert(4, row)


def test_prediction_fields_include_nested_acquisition_paths() -> None:
    kinds = field_kinds(Prediction)

    assert kinds["event_time"] == "time"
    assert kinds["acquisition.kvp"] == "number"
    assert "study_design" not in kinds


def test_replay_skips_invalid_rows_and_goes_on(tmp_path: Path) -> None:
    rows = [
        prediction_row(case_pseudonym="c-1"),
        prediction_row(case_pseudonym="c-2", score="1.7"),
        prediction_row(case_pseudonym="c-3", decision="maybe"),
        prediction_row(case_pseudonym="c-4"),
    ]
    sink = RecordingSink()

    summary = replay_file(write_csv(tmp_path / "p.csv", rows), "predictions", ColumnMapping(), sink)

    assert (summary.rows, summary.published, summary.invalid) == (4, 2, 2)
    assert [invalid.row for invalid in summary.invalid_rows] == [2, 3]
    assert summary.invalid_by_column == {"score": 1, "decision": 1}
    assert sink.event_keys() == [b"c-1", b"c-4"]


def test_replay_v1_publishes_to_the_kind_topic_keyed_by_case(tmp_path: Path) -> None:
    sink = RecordingSink()

    replay_file(
        write_csv(tmp_path / "p.csv", [prediction_row(case_pseudonym="c-9")]),
        "predictions",
        ColumnMapping(),
        sink,
        input_contract="v1",
    )

    [(topic, key, value)] = sink.sent_records
    assert (topic, key) == (topics.PREDICTIONS, b"c-9")
    assert json.loads(value)["study_design"] == "retrospective"


def test_replay_reads_files_in_chunks_with_row_numbers_across_chunks(tmp_path: Path) -> None:
    rows = [prediction_row(case_pseudonym=f"c-{i}") for i in range(10)]
    rows[7]["score"] = "-1"
    seen: list[int] = []

    summary = replay_file(
        write_csv(tmp_path / "p.csv", rows),
        "predictions",
        ColumnMapping(),
        CountingSink(),
        chunk_rows=3,
        on_rows=seen.append,
    )

    assert seen == [3, 3, 3, 1]
    assert [invalid.row for invalid in summary.invalid_rows] == [8]


def test_parquet_with_typed_columns_replays_like_csv(tmp_path: Path) -> None:
    rows = [prediction_row(case_pseudonym=f"c-{i}", score=str(i / 10)) for i in range(5)]
    csv_sink, parquet_sink = RecordingSink(), RecordingSink()
    typed = pd.DataFrame(rows)
    typed["score"] = typed["score"].astype(float)
    typed["operating_threshold"] = typed["operating_threshold"].astype(float)
    typed["event_time"] = pd.to_datetime(typed["event_time"])
    typed.to_parquet(tmp_path / "p.parquet")

    replay_file(write_csv(tmp_path / "p.csv", rows), "predictions", ColumnMapping(), csv_sink)
    replay_file(tmp_path / "p.parquet", "predictions", ColumnMapping(), parquet_sink)

    assert parquet_sink.sent_records == csv_sink.sent_records


@settings(max_examples=60, deadline=None)
@given(
    score=st.floats(0.0, 1.0),
    threshold=st.floats(0.0, 1.0),
    minutes=st.integers(-(10**7), 10**7),
    offset_hours=st.integers(-12, 14),
)
def test_a_prediction_written_as_a_row_comes_back_as_itself(
    score: float, threshold: float, minutes: int, offset_hours: int
) -> None:
    zone = timezone(timedelta(hours=offset_hours))
    original = make_prediction(
        score=score,
        operating_threshold=threshold,
        event_time=(T0 + timedelta(minutes=minutes)).astimezone(zone),
        study_design="retrospective",
    )
    row = json.loads(encode(original))
    row.pop("acquisition")
    cells = {k: str(v) for k, v in row.items()}

    event = converter(columns=list(cells)).convert(1, cells)

    assert event == original


def test_a_file_that_is_not_csv_or_parquet_is_refused(tmp_path: Path) -> None:
    spreadsheet = tmp_path / "history.xlsx"
    spreadsheet.write_bytes(b"PK")

    with pytest.raises(MappingError, match="reads .csv, .csv.gz, .parquet"):
        replay_file(spreadsheet, "predictions", ColumnMapping(), CountingSink())


def test_a_gzipped_csv_replays_like_the_plain_one(tmp_path: Path) -> None:
    rows = [prediction_row(case_pseudonym=f"c-{i}") for i in range(3)]
    plain, packed = RecordingSink(), RecordingSink()
    pd.DataFrame(rows).to_csv(tmp_path / "p.csv.gz", index=False)

    replay_file(write_csv(tmp_path / "p.csv", rows), "predictions", ColumnMapping(), plain)
    replay_file(tmp_path / "p.csv.gz", "predictions", ColumnMapping(), packed)

    assert packed.sent_records == plain.sent_records


def test_replay_reports_unreadable_numbers_at_their_row(tmp_path: Path) -> None:
    rows = [prediction_row(case_pseudonym=f"c-{i}") for i in range(4)]
    rows[2]["score"] = "high"

    summary = replay_file(
        write_csv(tmp_path / "p.csv", rows), "predictions", ColumnMapping(), CountingSink()
    )

    [invalid] = summary.invalid_rows
    assert str(invalid) == "row 3, column 'score': is not a number (got 'high')"
