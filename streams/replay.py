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

import functools
import json
import math
import time
import tomllib
import types
import typing
import uuid
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, tzinfo
from pathlib import Path
from typing import Any, Literal, Protocol

import pandas as pd  # type: ignore[import-untyped]
from pydantic import AwareDatetime, BaseModel

from postmarket import __version__, topics
from postmarket.authenticity import RecordSigner, SigningKey, SigningKeyError
from postmarket.contracts import (
    SCHEMA_VERSION,
    ContractViolation,
    FollowUp,
    Prediction,
    decode,
    encode,
)
from postmarket.contracts.batches import MAX_BATCH_BYTES, EventKind, batch_overheads, encode_batch
from postmarket.contracts.events import MAX_BATCH_EVENTS
from postmarket.kafka_security import KafkaSecurity, KafkaSecurityError
from postmarket.secrets import SecretFileError

Kind = Literal["predictions", "followups"]
KINDS: tuple[Kind, ...] = ("predictions", "followups")
CONTRACTS: dict[Kind, type[Prediction] | type[FollowUp]] = {
    "predictions": Prediction,
    "followups": FollowUp,
}
TOPICS: dict[Kind, str] = {"predictions": topics.PREDICTIONS, "followups": topics.FOLLOWUPS}
BATCH_KINDS: dict[Kind, EventKind] = {"predictions": "prediction", "followups": "followup"}
InputContract = Literal["v1", "v2"]
"""As a collector's ``input_contract``: v2 signed batches by site, or v1 one record per event."""
INPUT_CONTRACTS: tuple[InputContract, ...] = ("v1", "v2")
STUDY_DESIGN = "retrospective"
DEFAULT_COLLECTOR_VERSION = f"replay-{__version__}"[:32]
"""Historical files rarely say which software collected them; the replay says it did."""
REPLAY_NAMESPACE = uuid.UUID("0b7f3a52-4c1e-4f0e-9d55-7a2b6c8e1d43")
"""Event ids derived from a row's content: the same row always gets the same id."""
NOT_MAPPABLE = frozenset({"schema_version", "study_design"})
"""Fields the replay sets itself: the schema it writes and the study's provenance."""
CHUNK_ROWS = 20_000

FieldKind = Literal["text", "number", "flag", "time"]
CellValue = str | int | float | bool
_TRUE = frozenset({"true", "t", "yes", "y", "1"})
_FALSE = frozenset({"false", "f", "no", "n", "0"})


class MappingError(ValueError):
    """The column mapping cannot work for this file; raised before any row is sent."""


class CellError(ValueError):
    """A cell that cannot be read as its field's kind (number, date-time, true/false)."""


def field_kinds(contract: type[BaseModel], prefix: str = "") -> dict[str, FieldKind]:
    """Every mappable field of ``contract`` as a dotted path, with the kind of cell it reads.

    >>> field_kinds(Prediction)["acquisition.slice_thickness_mm"]
    'number'
    """
    kinds: dict[str, FieldKind] = {}
    for name, info in contract.model_fields.items():
        if name in NOT_MAPPABLE:
            continue
        leaves = _leaf_types(info.annotation)
        nested = [leaf for leaf in leaves if isinstance(leaf, type) and issubclass(leaf, BaseModel)]
        if nested:
            kinds.update(field_kinds(nested[0], f"{prefix}{name}."))
        elif AwareDatetime in leaves or datetime in leaves:
            kinds[prefix + name] = "time"
        elif bool in leaves:
            kinds[prefix + name] = "flag"
        elif float in leaves or int in leaves:
            kinds[prefix + name] = "number"
        else:
            kinds[prefix + name] = "text"
    return kinds


def _leaf_types(annotation: Any) -> set[Any]:
    """The concrete types inside Optional/Union/Annotated (Literal counts as text)."""
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return _leaf_types(typing.get_args(annotation)[0])
    if origin is typing.Union or origin is types.UnionType:
        return set().union(*(_leaf_types(arg) for arg in typing.get_args(annotation)))
    if origin is Literal:
        return {str}
    return {annotation}


def required_fields(contract: type[BaseModel]) -> set[str]:
    """Top-level fields a row must provide (``event_id`` is derived when absent)."""
    return (
        {name for name, info in contract.model_fields.items() if info.is_required()}
        - NOT_MAPPABLE
        - {"event_id"}
    )


@dataclass(frozen=True)
class ColumnMapping:
    """Which file column feeds which contract field, and values that hold for every row.

    Fields are dotted contract paths (``score``, ``acquisition.manufacturer``). A field not
    named here is read from the column of the same name when the file has one, so a file
    whose header uses the contract's names needs no mapping at all.
    """

    columns: Mapping[str, str] = field(default_factory=dict)
    constants: Mapping[str, CellValue] = field(default_factory=dict)

    @classmethod
    def from_toml(cls, path: Path) -> ColumnMapping:
        """Read ``[columns]`` (field = "column") and ``[constants]`` (field = value).

        Example file::

            [columns]
            case_pseudonym = "PatientPseudonym"
            event_time = "StudyDateTime"
            "acquisition.manufacturer" = "Manufacturer"

            [constants]
            site_id = "site-a"
        """
        try:
            document = tomllib.loads(path.read_text())
        except (OSError, tomllib.TOMLDecodeError) as error:
            raise MappingError(f"{path}: {error}") from None
        unknown = set(document) - {"columns", "constants"}
        if unknown:
            raise MappingError(f"{path}: unknown tables {sorted(unknown)} (columns, constants)")
        columns = document.get("columns", {})
        constants = document.get("constants", {})
        if not all(isinstance(v, str) for v in columns.values()):
            raise MappingError(f"{path}: every [columns] value must be a column name (a string)")
        if not all(isinstance(v, str | int | float | bool) for v in constants.values()):
            raise MappingError(f"{path}: [constants] values must be strings, numbers or booleans")
        return cls(columns=dict(columns), constants=dict(constants))

    def overridden(
        self, columns: Mapping[str, str], constants: Mapping[str, CellValue]
    ) -> ColumnMapping:
        """This mapping with ``columns`` and ``constants`` taking precedence field by field."""
        merged_columns = {k: v for k, v in self.columns.items() if k not in constants}
        merged_constants = {k: v for k, v in self.constants.items() if k not in columns}
        return ColumnMapping(
            columns={**merged_columns, **columns}, constants={**merged_constants, **constants}
        )

    def resolve(self, kind: Kind, file_columns: Sequence[str]) -> ResolvedMapping:
        """Check the mapping against the contract and the file's header; fill in defaults."""
        contract = CONTRACTS[kind]
        kinds = field_kinds(contract)
        for source, names in (("column", self.columns), ("constant", self.constants)):
            unknown = sorted(set(names) - set(kinds))
            if unknown:
                raise MappingError(
                    f"{contract.__name__} has no field {', '.join(unknown)} (mapped to a {source});"
                    f" its fields are {', '.join(kinds)}"
                )
        absent = sorted({c for c in self.columns.values() if c not in file_columns})
        if absent:
            raise MappingError(
                f"column {', '.join(map(repr, absent))} is not in the file; it has "
                f"{', '.join(map(repr, file_columns))}"
            )
        columns: dict[str, str] = {}
        for path in kinds:
            if path in self.columns:
                columns[path] = self.columns[path]
            elif path not in self.constants and path in file_columns:
                columns[path] = path
        constants = dict(self.constants)
        if "collector_version" not in columns and "collector_version" not in constants:
            constants["collector_version"] = DEFAULT_COLLECTOR_VERSION
        missing = sorted(required_fields(contract) - set(columns) - set(constants))
        if missing:
            raise MappingError(
                f"no column for required {contract.__name__} field {', '.join(missing)}: name a "
                "column of that name, map one (--column FIELD=COLUMN) or give a constant"
            )
        return ResolvedMapping(kind, columns, constants, kinds)


@dataclass(frozen=True)
class ResolvedMapping:
    """A mapping checked against one file: every field's column or constant."""

    kind: Kind
    columns: dict[str, str]
    constants: dict[str, CellValue]
    kinds: dict[str, FieldKind]

    @property
    def file_columns(self) -> list[str]:
        """The file columns to read, each once, in field order."""
        return list(dict.fromkeys(self.columns.values()))

    def source_of(self, field_path: str) -> str | None:
        """The column (or ``constant <field>``) a field came from, for error messages."""
        if field_path in self.columns:
            return self.columns[field_path]
        if field_path in self.constants:
            return f"constant {field_path}"
        return None


@dataclass(frozen=True)
class RowProblem:
    """One reason a row was skipped: where (column and field) and why."""

    column: str | None
    field: str
    reason: str


@dataclass(frozen=True)
class InvalidRow:
    """A row that is not a valid event: its 1-based data row number, code and problems."""

    row: int
    code: str
    problems: tuple[RowProblem, ...]

    def __str__(self) -> str:
        parts = []
        for problem in self.problems:
            if problem.column is None:
                where = f"field {problem.field}"
            elif problem.column == problem.field:
                where = f"column {problem.column!r}"
            else:
                where = f"column {problem.column!r} ({problem.field})"
            parts.append(f"{where}: {problem.reason}")
        return f"row {self.row}, " + "; ".join(parts)


class InvalidRowError(ValueError):
    """Raised by :meth:`RowConverter.convert` for a row that cannot become an event."""

    def __init__(self, invalid: InvalidRow) -> None:
        self.invalid = invalid
        super().__init__(str(invalid))


@dataclass(frozen=True)
class Unreadable:
    """A prepared cell that could not be read as its field's kind, with why."""

    reason: str


class RowConverter:
    """Turns rows of cells into validated, retrospective events (pure: no I/O).

    ``naive_timezone`` is the zone of date-times written without an offset (common in
    exports from hospital systems); aware ones keep their own offset.
    """

    def __init__(self, mapping: ResolvedMapping, naive_timezone: tzinfo = UTC) -> None:
        self.mapping = mapping
        self.naive_timezone = naive_timezone
        self.contract = CONTRACTS[mapping.kind]
        self.fields = list(mapping.columns)
        """Field paths in the order :meth:`convert_cells` expects their cells."""
        self._kinds = [mapping.kinds[path] for path in self.fields]
        self._places = [_place(path) for path in self.fields]
        constants: list[tuple[str, str, Any]] = []
        for path, value in mapping.constants.items():
            converted = self._cell(mapping.kinds[path], value)
            if isinstance(converted, Unreadable):
                raise MappingError(f"constant {path}: {converted.reason}")
            if converted is not None:
                constants.append((*_place(path), converted))
        self._constants = constants

    def convert(self, row: int, cells: Mapping[str, Any]) -> Prediction | FollowUp:
        """Convert a row given as ``{column: cell}``; raise :class:`InvalidRowError`."""
        columns = self.mapping.columns
        return self.convert_cells(row, [cells.get(columns[path]) for path in self.fields])

    def convert_cells(self, row: int, cells: Sequence[Any]) -> Prediction | FollowUp:
        """Convert cells aligned with :attr:`fields`; raise :class:`InvalidRowError`."""
        values = [self._cell(kind, cell) for kind, cell in zip(self._kinds, cells, strict=True)]
        return self._event(row, values)

    def convert_frame(
        self, first_row: int, frame: Any
    ) -> Iterator[tuple[int, Prediction | FollowUp | InvalidRow]]:
        """Each row of a DataFrame (columns aligned with :attr:`fields`), as an event or
        the reason it is invalid; cells are read column by column, which is much faster."""
        columns = [self._column(kind, frame.iloc[:, i]) for i, kind in enumerate(self._kinds)]
        for offset, values in enumerate(zip(*columns, strict=True)):
            row = first_row + offset
            try:
                yield row, self._event(row, values)
            except InvalidRowError as error:
                yield row, error.invalid

    def _event(self, row: int, values: Sequence[Any]) -> Prediction | FollowUp:
        payload: dict[str, Any] = {}
        for head, leaf, value in self._constants:
            _put(payload, head, leaf, value)
        problems: list[RowProblem] = []
        for path, (head, leaf), value in zip(self.fields, self._places, values, strict=True):
            if value is None:
                continue
            if isinstance(value, Unreadable):
                problems.append(RowProblem(self.mapping.columns[path], path, value.reason))
                continue
            _put(payload, head, leaf, value)
        if problems:
            raise InvalidRowError(InvalidRow(row, "schema", tuple(problems)))
        payload["study_design"] = STUDY_DESIGN
        # The version is stated outside the content a derived id hashes: ids stay those of
        # earlier replays of the same file.
        stated = f'{{"schema_version":{SCHEMA_VERSION},'
        if "event_id" in payload:
            raw = stated + json.dumps(payload)[1:]
        else:
            # The id is derived from exactly this text (see derived_event_id); splicing it in
            # front spares a second JSON encoding per row.
            body = json.dumps(payload, sort_keys=True)
            event_id = uuid.uuid5(REPLAY_NAMESPACE, self.mapping.kind + "\x1f" + body)
            raw = f'{stated}"event_id":"{event_id}",{body[1:]}'
        try:
            return decode(self.contract, raw.encode())
        except ContractViolation as violation:
            raise InvalidRowError(self._invalid(row, violation)) from None

    def _invalid(self, row: int, violation: ContractViolation) -> InvalidRow:
        problems = tuple(
            RowProblem(self.mapping.source_of(problem.field), problem.field, problem.reason)
            for problem in violation.problems
        )
        return InvalidRow(row, violation.code, problems)

    def _column(self, kind: FieldKind, column: Any) -> list[Any]:
        """One column's cells prepared as :meth:`_cell` would, vectorised where it pays."""
        if kind == "number" and not pd.api.types.is_bool_dtype(column):
            numbers = pd.to_numeric(column, errors="coerce")
            present = column.notna().to_numpy()
            unreadable = present & numbers.isna().to_numpy()
            prepared: list[Any] = [
                None if math.isnan(number) else number
                for number in numbers.to_numpy(dtype=float, na_value=math.nan).tolist()
            ]
            for index in unreadable.nonzero()[0].tolist():
                prepared[index] = Unreadable(f"is not a number (got {column.iloc[index]!r})")
            return prepared
        cells = column.to_numpy(dtype=object, na_value=None).tolist()
        if kind == "text" and pd.api.types.is_string_dtype(column):
            return [None if cell is None or not cell.strip() else cell for cell in cells]
        return [self._cell(kind, cell) for cell in cells]

    def _cell(self, kind: FieldKind, cell: Any) -> Any:
        """A cell as the JSON value its field's contract reads; None when it is empty,
        :class:`Unreadable` when it is not of the field's kind."""
        if _is_missing(cell):
            return None
        try:
            if kind == "text":
                return str(cell) if isinstance(cell, int) and not isinstance(cell, bool) else cell
            if kind == "number":
                return _number(cell)
            if kind == "flag":
                return _flag(cell)
            return self._time(cell).isoformat()
        except CellError as error:
            return Unreadable(str(error))

    def _time(self, cell: Any) -> datetime:
        if isinstance(cell, pd.Timestamp):
            cell = cell.to_pydatetime()
        if isinstance(cell, str):
            try:
                cell = datetime.fromisoformat(cell.strip())
            except ValueError:
                raise CellError(f"is not an ISO 8601 date-time (got {cell!r})") from None
        if not isinstance(cell, datetime):
            raise CellError(f"is not a date-time (got {cell!r})")
        return cell if cell.tzinfo is not None else cell.replace(tzinfo=self.naive_timezone)


def _place(path: str) -> tuple[str, str]:
    """``"acquisition.kvp"`` -> ``("acquisition", "kvp")``; ``"score"`` -> ``("score", "")``."""
    head, _, leaf = path.partition(".")
    return head, leaf


def _put(payload: dict[str, Any], head: str, leaf: str, value: Any) -> None:
    if leaf:
        payload.setdefault(head, {})[leaf] = value
    else:
        payload[head] = value


def _is_missing(cell: Any) -> bool:
    if cell is None or cell is pd.NaT or cell is pd.NA:
        return True
    if isinstance(cell, float):
        return math.isnan(cell)
    return isinstance(cell, str) and not cell.strip()


def _number(cell: Any) -> float:
    if isinstance(cell, bool):
        raise CellError(f"is not a number (got {cell!r})")
    try:
        return float(cell)
    except (TypeError, ValueError):
        raise CellError(f"is not a number (got {cell!r})") from None


def _flag(cell: Any) -> bool:
    text = str(cell).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise CellError(f"is not true or false (got {cell!r})")


def derived_event_id(kind: Kind, payload: Mapping[str, Any]) -> uuid.UUID:
    """The event id of a row without one: a UUIDv5 of its kind and content."""
    return uuid.uuid5(REPLAY_NAMESPACE, kind + "\x1f" + json.dumps(payload, sort_keys=True))


def read_columns(path: Path) -> list[str]:
    """The header of a CSV or Parquet file; :class:`MappingError` for any other file."""
    suffixes = [suffix.lower() for suffix in path.suffixes[-2:]]
    if not (_is_parquet(path) or suffixes[-1:] == [".csv"] or suffixes == [".csv", ".gz"]):
        raise MappingError(f"{path.name}: replay reads .csv, .csv.gz, .parquet or .pq files")
    if _is_parquet(path):
        return [str(name) for name in _parquet().read_schema(path).names]
    return [str(c) for c in pd.read_csv(path, nrows=0).columns]


def read_chunks(path: Path, columns: Sequence[str], chunk_rows: int) -> Iterator[Any]:
    """The file's ``columns`` as DataFrames of at most ``chunk_rows`` rows.

    CSV cells are read as text (the contract decides what they mean, so an identifier such
    as ``007`` keeps its zeros); Parquet cells keep their types.
    """
    if _is_parquet(path):
        frame = pd.read_parquet(path, columns=list(dict.fromkeys(columns)))
        for start in range(0, len(frame), chunk_rows):
            yield frame.iloc[start : start + chunk_rows]
        return
    yield from pd.read_csv(
        path,
        usecols=list(dict.fromkeys(columns)),
        dtype=str,
        keep_default_na=False,
        na_values=[""],
        chunksize=chunk_rows,
    )


def estimated_rows(path: Path) -> int | None:
    """Rows in the file, for a progress bar: exact for Parquet, line count for CSV."""
    if _is_parquet(path):
        return int(_parquet().ParquetFile(path).metadata.num_rows)
    if path.suffix == ".gz":
        return None
    with path.open("rb") as handle:
        lines = sum(block.count(b"\n") for block in iter(lambda: handle.read(1 << 20), b""))
    return max(lines - 1, 0)


def _parquet() -> Any:
    """pyarrow's Parquet module (pandas' Parquet engine), only when a Parquet file is read."""
    import pyarrow.parquet as pq  # type: ignore[import-untyped]

    return pq


def _is_parquet(path: Path) -> bool:
    return path.suffix.lower() in {".parquet", ".pq"}


class EventSink(Protocol):
    """Where converted records go: Kafka for a replay, a counter for a dry run."""

    def send(self, topic: str, key: bytes, value: bytes, events: int = 1) -> None:
        """Queue one record carrying ``events`` events; must not wait for its acknowledgement."""

    def finish(self) -> int:
        """Wait until every queued record is acknowledged; return how many events were not."""


class CountingSink:
    """A sink that only counts (``--dry-run``, tests, the read/convert benchmark)."""

    def __init__(self) -> None:
        self.sent = 0
        """Events (a batch record counts each of its events)."""

    def send(self, topic: str, key: bytes, value: bytes, events: int = 1) -> None:
        self.sent += events

    def finish(self) -> int:
        return 0


class EventWriter(Protocol):
    """Turns a replay's events into records on an :class:`EventSink`, as its contract says."""

    topic: str

    def write(self, kind: Kind, event: Prediction | FollowUp, raw: bytes) -> None: ...

    def finish(self) -> int:
        """Send what is still open and wait; return how many events were not acknowledged."""


class SingleRecords:
    """v1: each event its own record on its kind's topic, keyed by its case pseudonym."""

    def __init__(self, sink: EventSink, kind: Kind) -> None:
        self.sink = sink
        self.topic = TOPICS[kind]

    def write(self, kind: Kind, event: Prediction | FollowUp, raw: bytes) -> None:
        self.sink.send(TOPICS[kind], event.case_pseudonym.encode(), raw)

    def finish(self) -> int:
        return self.sink.finish()


class SiteBatches:
    """v2: one open batch per site, sent to ``pms.inputs.v2`` keyed by its site as soon as
    it is full (``max_events`` events, or no room for the next event within ``max_bytes``),
    and the rest at :meth:`finish`. A rerun of the same file makes the same batches."""

    topic = topics.INPUTS

    def __init__(
        self,
        sink: EventSink,
        max_events: int = MAX_BATCH_EVENTS,
        max_bytes: int = MAX_BATCH_BYTES,
    ) -> None:
        if not 1 <= max_events <= MAX_BATCH_EVENTS:
            raise ValueError(f"a batch holds 1 to {MAX_BATCH_EVENTS} events, not {max_events}")
        self.sink = sink
        self.max_events = max_events
        self.max_bytes = max_bytes
        self._open: dict[str, list[tuple[EventKind, str, bytes]]] = {}
        self._bytes: dict[str, int] = {}
        self.records = 0

    def write(self, kind: Kind, event: Prediction | FollowUp, raw: bytes) -> None:
        site = event.site_id
        entry = (BATCH_KINDS[kind], str(event.event_id), raw)
        first, further = batch_overheads(site)
        content = len(entry[0]) + len(raw)
        if first + content > self.max_bytes:
            # Contracts bound an event far below a batch; only a tiny max_bytes gets here.
            raise ValueError(f"event {entry[1]} alone exceeds the {self.max_bytes}-byte bound")
        batch = self._open.get(site)
        if batch is not None and (
            len(batch) == self.max_events or self._bytes[site] + further + content > self.max_bytes
        ):
            self._send(site)
            batch = None
        if batch is None:
            self._open[site] = [entry]
            self._bytes[site] = first + content
        else:
            batch.append(entry)
            self._bytes[site] += further + content

    def _send(self, site: str) -> None:
        batch = self._open.pop(site)
        del self._bytes[site]
        self.sink.send(self.topic, site.encode(), encode_batch(site, batch), len(batch))
        self.records += 1

    def finish(self) -> int:
        for site in list(self._open):
            self._send(site)
        return self.sink.finish()


class KafkaSink:
    """A kafka-python producer with the collector's guarantees, tuned for bulk.

    acks=all and idempotence as in :mod:`collectors.producer`; unlike the collector (which
    confirms each outbox batch before marking it sent) a replay keeps the pipe full and
    only counts failures in callbacks, waiting for the acknowledgements once at the end.
    Nothing is lost by that: a replay that reports unacknowledged events is run again, and
    its event ids (from the file, or derived from each row) make the second run a duplicate
    the workers skip.
    """

    def __init__(
        self,
        bootstrap_servers: str,
        compression: str | None = "gzip",
        linger_ms: int = 20,
        signer: RecordSigner | None = None,
        security: KafkaSecurity | None = None,
    ) -> None:
        from kafka import KafkaProducer

        self._signer = signer
        """Signs every record (a key registered for the replayed site; see ``--signing-key``)."""
        self._producer = KafkaProducer(
            bootstrap_servers=bootstrap_servers,
            client_id="postmarket-replay",
            acks="all",
            enable_idempotence=True,
            # On a secure broker: a site principal (only sites may write the input topics).
            **(security or KafkaSecurity()).kafka_python_kwargs(),
            retries=2**31 - 1,
            delivery_timeout_ms=120_000,
            request_timeout_ms=30_000,
            linger_ms=linger_ms,
            batch_size=512 * 1024,
            compression_type=compression,
        )
        self.failed = 0
        """Events (not records) the broker did not acknowledge."""
        self.last_error: str | None = None

    def _on_error(self, events: int, error: BaseException) -> None:
        self.failed += events
        self.last_error = type(error).__name__

    def send(self, topic: str, key: bytes, value: bytes, events: int = 1) -> None:
        from kafka.errors import KafkaError

        try:
            headers = self._signer.sign(topic, key, value) if self._signer else None
            future = self._producer.send(topic, key=key, value=value, headers=headers)
        except KafkaError as error:
            self._on_error(events, error)
            return
        future.add_errback(functools.partial(self._on_error, events))

    def finish(self) -> int:
        self._producer.flush()
        return self.failed

    def close(self) -> None:
        self._producer.close(timeout=30)


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


def event_writer(sink: EventSink, kind: Kind, input_contract: InputContract) -> EventWriter:
    """How a replay's events become records: v2 batches by site, or v1 single records."""
    if input_contract == "v1":
        return SingleRecords(sink, kind)
    return SiteBatches(sink)


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


def parse_assignments(pairs: Sequence[str], option: str) -> dict[str, str]:
    """``["score=Score", ...]`` from repeated ``--column``/``--constant`` options."""
    parsed = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name.strip():
            raise MappingError(f"{option} {pair!r} is not FIELD=VALUE")
        parsed[name.strip()] = value.strip()
    return parsed


def run_replay_command(
    path: Path,
    kind: str,
    mapping_file: Path | None,
    columns: Sequence[str],
    constants: Sequence[str],
    naive_timezone: str,
    dry_run: bool,
    show_invalid: int,
    bootstrap: str,
    signing_key: Path | None = None,
    security: KafkaSecurity | None = None,
    input_contract: str = "v2",
) -> int:
    """``postmarket replay``: progress bar, invalid rows as they come, a summary; exit code.

    ``signing_key``: the Ed25519 key file the records are signed with; workers that require
    authenticity accept them only if it is registered for the site of every replayed row.
    ``input_contract``: ``v2`` (signed batches per site) or ``v1`` (one record per event).
    """
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    from kafka.errors import KafkaError
    from rich.console import Console

    console = Console()
    try:
        if kind not in KINDS:
            raise MappingError(f"--kind must be predictions or followups, not {kind!r}")
        contract = _input_contract(input_contract)
        if not path.is_file():
            raise MappingError(f"{path} is not a file")
        mapping = ColumnMapping.from_toml(mapping_file) if mapping_file else ColumnMapping()
        mapping = mapping.overridden(
            parse_assignments(columns, "--column"), parse_assignments(constants, "--constant")
        )
        try:
            zone: tzinfo = ZoneInfo(naive_timezone)
        except (ZoneInfoNotFoundError, ValueError):
            raise MappingError(f"unknown time zone {naive_timezone!r}") from None
        mapping.resolve(kind, read_columns(path))
        signer = SigningKey.from_file(signing_key) if signing_key is not None else None
        sink: CountingSink | KafkaSink = (
            CountingSink() if dry_run else KafkaSink(bootstrap, signer=signer, security=security)
        )
    except (SigningKeyError, KafkaSecurityError, SecretFileError) as error:
        console.print(f"[red]replay refused:[/] {error}", highlight=False)
        return 2
    except KafkaError as error:
        console.print(f"[red]replay refused:[/] Kafka at {bootstrap}: {error}", highlight=False)
        return 2
    except MappingError as error:
        console.print(f"[red]replay refused:[/] {error}", highlight=False)
        return 2
    try:
        summary = _replay_with_progress(
            path, kind, mapping, sink, zone, show_invalid, console, contract
        )
    except MappingError as error:
        console.print(f"[red]replay refused:[/] {error}", highlight=False)
        return 2
    finally:
        if isinstance(sink, KafkaSink):
            sink.close()
    render_summary(summary, console, dry_run)
    return 1 if summary.not_acknowledged else 0


def _input_contract(text: str) -> InputContract:
    for contract in INPUT_CONTRACTS:
        if text.strip() == contract:
            return contract
    raise MappingError(f"--input-contract must be v2 or v1, not {text!r}")


def _replay_with_progress(
    path: Path,
    kind: Kind,
    mapping: ColumnMapping,
    sink: EventSink,
    zone: tzinfo,
    show_invalid: int,
    console: Any,
    input_contract: InputContract = "v2",
) -> ReplaySummary:
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TaskProgressColumn,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    shown = 0

    def report(invalid: InvalidRow) -> None:
        nonlocal shown
        shown += 1
        if shown <= show_invalid:
            progress.console.print(f"[yellow]skipped[/] {invalid}", highlight=False)
        elif shown == show_invalid + 1:
            progress.console.print("[yellow]more invalid rows: counted in the summary[/]")

    with Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TaskProgressColumn(),
        TextColumn("{task.fields[rate]}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
    ) as progress:
        task = progress.add_task(f"{kind} from {path.name}", total=estimated_rows(path), rate="")
        started = time.perf_counter()

        def advance(rows: int) -> None:
            done = progress.tasks[0].completed + rows
            rate = done / max(time.perf_counter() - started, 1e-9)
            progress.update(task, completed=done, rate=f"{rate:,.0f} rows/s")

        summary = replay_file(
            path,
            kind,
            mapping,
            sink,
            input_contract=input_contract,
            naive_timezone=zone,
            on_rows=advance,
            on_invalid=report,
        )
        progress.update(task, total=summary.rows, completed=summary.rows)
    return summary


def render_summary(summary: ReplaySummary, console: Any, dry_run: bool) -> None:
    """The end-of-replay table: counts, skipped rows by column, time and rate."""
    from rich.table import Table

    mode = "dry run, nothing sent" if dry_run else f"{STUDY_DESIGN} to {summary.topic}"
    table = Table(title=f"replay of {summary.path} ({mode})")
    table.add_column("")
    table.add_column("value", justify="right")
    table.add_row("rows read", f"{summary.rows:,}")
    table.add_row("events published" if not dry_run else "events valid", f"{summary.published:,}")
    if not dry_run:
        table.add_row("acknowledged by Kafka (acks=all)", f"{summary.acknowledged:,}")
    table.add_row("invalid rows skipped", f"{summary.invalid:,}")
    for column, count in summary.invalid_by_column.most_common(10):
        table.add_row(f"  problems in {column}", f"{count:,}")
    if summary.first_event_time and summary.last_event_time:
        span = f"{summary.first_event_time:%Y-%m-%d} .. {summary.last_event_time:%Y-%m-%d}"
        table.add_row("event times", span)
    t = summary.timings
    table.add_row(
        "time (read / convert / send / acks)",
        f"{t.reading:.1f} / {t.converting:.1f} / {t.sending:.1f} / {t.awaiting_acks:.1f} s",
    )
    table.add_row("rows per second", f"{summary.events_per_s:,.0f}")
    console.print(table)
    if summary.not_acknowledged:
        console.print(
            f"[red]{summary.not_acknowledged:,} events were not acknowledged[/]: run the same "
            "replay again; workers skip the events they already have (same event ids)."
        )
