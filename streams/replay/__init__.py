"""Replay historical predictions or follow-ups (CSV or Parquet) through the live topics.

A retrospective study runs through the same topics, join and detectors as the live
(prospective) stream: each row becomes the event a collector would have sent, with its
original event time and ``study_design="retrospective"``, which the join carries onto
every outcome. Events leave as a collector's do: in full v2 signed batches of one site on
``pms.inputs.v2`` (one open batch per site of the file, bounded by ``MAX_BATCH_EVENTS``
and ``MAX_BATCH_BYTES``), or with ``input_contract="v1"`` one record per event on the
kind's topic, keyed by its case pseudonym. Rows are validated by the shared contracts;
an invalid row is reported with its row number, column and the contract's reason, counted
and skipped, and the replay goes on.

Event ids come from an ``event_id`` column or, if the file has none, are derived from the
row's content, so replaying the same file twice is deduplicated by the workers.

One concept per module, each importing only those listed before it:
:mod:`~streams.replay.mapping` (columns to contract fields), :mod:`~streams.replay.rows`
(cells to events), :mod:`~streams.replay.readers` (CSV and Parquet),
:mod:`~streams.replay.sinks` (the broker, or a counter), :mod:`~streams.replay.records`
(v2 batches by site or v1 records), :mod:`~streams.replay.run` (one file, summarised) and
:mod:`~streams.replay.command` (``postmarket replay``). This package exports their public
names.

Example (no Kafka: :class:`CountingSink` only counts what would be sent):

>>> import tempfile
>>> from pathlib import Path
>>> csv = Path(tempfile.mkdtemp()) / "followups.csv"
>>> _ = csv.write_text(
...     "case_pseudonym,event_time,label,source,site_id\\n"
...     "c-1,2019-05-02T10:00:00,positive,pathology,site-a\\n"
...     "c-2,2019-05-03T11:00:00,maybe,pathology,site-a\\n"
... )
>>> summary = replay_file(csv, "followups", ColumnMapping(), CountingSink())
>>> summary.published, summary.invalid
(1, 1)
>>> print(summary.invalid_rows[0])
row 2, column 'label': Input should be 'positive' or 'negative' (got 'maybe')
"""

from __future__ import annotations

from streams.replay.command import render_summary, run_replay_command
from streams.replay.mapping import (
    CONTRACTS,
    DEFAULT_COLLECTOR_VERSION,
    KINDS,
    NOT_MAPPABLE,
    CellValue,
    ColumnMapping,
    FieldKind,
    Kind,
    MappingError,
    ResolvedMapping,
    field_kinds,
    parse_assignments,
    required_fields,
)
from streams.replay.readers import CHUNK_ROWS, estimated_rows, read_chunks, read_columns
from streams.replay.records import (
    BATCH_KINDS,
    INPUT_CONTRACTS,
    TOPICS,
    EventWriter,
    InputContract,
    SingleRecords,
    SiteBatches,
    event_writer,
)
from streams.replay.rows import (
    REPLAY_NAMESPACE,
    STUDY_DESIGN,
    CellError,
    InvalidRow,
    InvalidRowError,
    RowConverter,
    RowProblem,
    Unreadable,
    derived_event_id,
)
from streams.replay.run import ReplaySummary, ReplayTimings, replay_file
from streams.replay.sinks import CountingSink, EventSink, KafkaSink

__all__ = [
    "BATCH_KINDS",
    "CHUNK_ROWS",
    "CONTRACTS",
    "DEFAULT_COLLECTOR_VERSION",
    "INPUT_CONTRACTS",
    "KINDS",
    "NOT_MAPPABLE",
    "REPLAY_NAMESPACE",
    "STUDY_DESIGN",
    "TOPICS",
    "CellError",
    "CellValue",
    "ColumnMapping",
    "CountingSink",
    "EventSink",
    "EventWriter",
    "FieldKind",
    "InputContract",
    "InvalidRow",
    "InvalidRowError",
    "Kind",
    "KafkaSink",
    "MappingError",
    "ReplaySummary",
    "ReplayTimings",
    "ResolvedMapping",
    "RowConverter",
    "RowProblem",
    "SingleRecords",
    "SiteBatches",
    "Unreadable",
    "derived_event_id",
    "estimated_rows",
    "event_writer",
    "field_kinds",
    "parse_assignments",
    "read_chunks",
    "read_columns",
    "render_summary",
    "replay_file",
    "required_fields",
    "run_replay_command",
]
