"""One replay of one file: read in chunks, convert, write, and summarise what happened."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, tzinfo
from pathlib import Path
from typing import Any

from postmarket.contracts import FollowUp, Prediction, encode
from streams.replay.mapping import ColumnMapping, Kind
from streams.replay.readers import CHUNK_ROWS, read_chunks, read_columns
from streams.replay.records import EventWriter, InputContract, event_writer
from streams.replay.rows import InvalidRow, RowConverter
from streams.replay.sinks import EventSink


@dataclass
class ReplayTimings:
    """Where a replay's wall-clock time went, in seconds."""

    reading: float = 0.0
    """pandas reading and parsing the file."""
    converting: float = 0.0
    """Cells to events: conversion, contract validation, canonical encoding."""
    sending: float = 0.0
    """Handing records to the producer (batching, compression happen in its thread)."""
    awaiting_acks: float = 0.0
    """After the last send, until the broker acknowledged everything."""
    total: float = 0.0


@dataclass
class ReplaySummary:
    """What a replay did: rows, events published, rows skipped and why, and timings."""

    path: Path
    kind: Kind
    topic: str
    rows: int = 0
    published: int = 0
    not_acknowledged: int = 0
    invalid_rows: list[InvalidRow] = field(default_factory=list)
    invalid_by_column: Counter[str] = field(default_factory=Counter)
    first_event_time: datetime | None = None
    last_event_time: datetime | None = None
    timings: ReplayTimings = field(default_factory=ReplayTimings)
    keep_invalid: int = 1000
    """At most this many invalid rows are kept in :attr:`invalid_rows` (all are counted)."""

    @property
    def invalid(self) -> int:
        return self.rows - self.published

    @property
    def acknowledged(self) -> int:
        return self.published - self.not_acknowledged

    @property
    def events_per_s(self) -> float:
        return self.rows / self.timings.total if self.timings.total else 0.0

    def record_invalid(self, invalid: InvalidRow) -> None:
        if len(self.invalid_rows) < self.keep_invalid:
            self.invalid_rows.append(invalid)
        for problem in invalid.problems:
            self.invalid_by_column[problem.column or problem.field] += 1


def replay_file(
    path: Path,
    kind: Kind,
    mapping: ColumnMapping,
    sink: EventSink,
    *,
    input_contract: InputContract = "v2",
    naive_timezone: tzinfo = UTC,
    chunk_rows: int = CHUNK_ROWS,
    on_rows: Callable[[int], None] | None = None,
    on_invalid: Callable[[InvalidRow], None] | None = None,
    writer: EventWriter | None = None,
) -> ReplaySummary:
    """Publish every valid row of ``path`` as ``input_contract`` says; skip and report the
    rest.

    ``on_rows(n)`` is called after each chunk of ``n`` rows (for a progress bar) and
    ``on_invalid`` once per skipped row; both count rows, whatever the records. ``writer``
    replaces the one ``input_contract`` chooses (tests bound batches with it). Raises
    :class:`MappingError` before sending anything if the mapping does not fit the file.
    """
    started = time.perf_counter()
    resolved = mapping.resolve(kind, read_columns(path))
    converter = RowConverter(resolved, naive_timezone)
    writer = writer or event_writer(sink, kind, input_contract)
    summary = ReplaySummary(path, kind, writer.topic)
    timings = summary.timings
    field_columns = [resolved.columns[path] for path in converter.fields]
    chunks = read_chunks(path, resolved.file_columns, chunk_rows)
    while True:
        mark = time.perf_counter()
        chunk = next(chunks, None)
        timings.reading += time.perf_counter() - mark
        if chunk is None:
            break
        _replay_chunk(chunk[field_columns], converter, writer, summary, on_invalid)
        if on_rows is not None:
            on_rows(len(chunk))
    mark = time.perf_counter()
    summary.not_acknowledged = writer.finish()
    timings.awaiting_acks = time.perf_counter() - mark
    timings.total = time.perf_counter() - started
    return summary


def _replay_chunk(
    chunk: Any,
    converter: RowConverter,
    writer: EventWriter,
    summary: ReplaySummary,
    on_invalid: Callable[[InvalidRow], None] | None,
) -> None:
    first_row = summary.rows + 1
    converted: list[tuple[Prediction | FollowUp, bytes]] = []
    mark = time.perf_counter()
    for _row, converted_row in converter.convert_frame(first_row, chunk):
        if isinstance(converted_row, InvalidRow):
            summary.record_invalid(converted_row)
            if on_invalid is not None:
                on_invalid(converted_row)
            continue
        event = converted_row
        converted.append((event, encode(event)))
        first, last = summary.first_event_time, summary.last_event_time
        summary.first_event_time = min(first, event.event_time) if first else event.event_time
        summary.last_event_time = max(last, event.event_time) if last else event.event_time
    summary.rows += len(chunk)
    summary.timings.converting += time.perf_counter() - mark
    mark = time.perf_counter()
    for event, raw in converted:
        writer.write(summary.kind, event, raw)
    summary.published += len(converted)
    summary.timings.sending += time.perf_counter() - mark
