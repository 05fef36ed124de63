"""Rows of cells to validated, retrospective events (pure: no I/O).

A row that is not a valid event becomes an :class:`InvalidRow` naming its row number,
column, field and the contract's reason; the replay counts it, skips it and goes on.
"""

from __future__ import annotations

import json
import math
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, tzinfo
from typing import Any

import pandas as pd  # type: ignore[import-untyped]

from postmarket.contracts import SCHEMA_VERSION, ContractViolation, FollowUp, Prediction, decode
from streams.replay.mapping import CONTRACTS, FieldKind, Kind, MappingError, ResolvedMapping

STUDY_DESIGN = "retrospective"
REPLAY_NAMESPACE = uuid.UUID("0b7f3a52-4c1e-4f0e-9d55-7a2b6c8e1d43")
"""Event ids derived from a row's content: the same row always gets the same id."""

_TRUE = frozenset({"true", "t", "yes", "y", "1"})
_FALSE = frozenset({"false", "f", "no", "n", "0"})


class CellError(ValueError):
    """A cell that cannot be read as its field's kind (number, date-time, true/false)."""


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
