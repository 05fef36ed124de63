"""Field outcomes and predictions in the evidence store: stored once by event id, and counted
in the database (per site, per ISO week) so reviews and reports never read every outcome."""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVarTuple

from sqlalchemy import (
    ColumnElement,
    Integer,
    Row,
    Select,
    SQLColumnExpression,
    and_,
    case,
    func,
    insert,
    select,
)
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.orm import Session
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.functions import FunctionElement

from evidence.models import FieldOutcome, FieldPrediction
from evidence.snapshots import WeekCounts, week_of
from evidence.store_unit import StoreUnit, aware
from evidence.views import OutcomeRecord, PredictionCount, SiteCounts
from postmarket.contracts.events import Outcome, Prediction, StreamKey, utc_now


class FieldEventStore(StoreUnit):
    """Outcomes and predictions from the field, and their counts."""

    def record_field_events(
        self, outcomes: Sequence[Outcome] = (), predictions: Sequence[Prediction] = ()
    ) -> tuple[int, int]:
        """Store outcomes and predictions not stored yet, in one transaction.

        Idempotent by event id: a redelivered event is skipped, and a concurrent writer of
        the same event is absorbed by ``ON CONFLICT DO NOTHING``. Returns how many outcomes
        and predictions were new.
        """
        now = utc_now()
        outcome_rows = {str(o.event_id): _outcome_row(o, now) for o in outcomes}
        prediction_rows = {str(p.event_id): _prediction_row(p, now) for p in predictions}
        with self._transaction() as session:
            new_outcomes = _insert_new(session, FieldOutcome, outcome_rows)
            new_predictions = _insert_new(session, FieldPrediction, prediction_rows)
        return new_outcomes, new_predictions

    def outcomes(
        self, device_id: str, start: datetime | None = None, end: datetime | None = None
    ) -> list[OutcomeRecord]:
        """A device's outcomes with prediction time in ``[start, end)``, in time order."""
        query = select(FieldOutcome).where(FieldOutcome.device_key == device_id)
        if start is not None:
            query = query.where(FieldOutcome.prediction_time >= start)
        if end is not None:
            query = query.where(FieldOutcome.prediction_time < end)
        query = query.order_by(FieldOutcome.prediction_time, FieldOutcome.event_id)
        with self._sessions() as session:
            return [_outcome_record(row) for row in session.scalars(query)]

    def site_counts(
        self, device_id: str, start: datetime | None = None, end: datetime | None = None
    ) -> list[SiteCounts]:
        """Per version, task and site: confusion and design counts, first and last case time.

        One GROUP BY over outcomes with prediction time in ``[start, end)``, in the database:
        the rows returned grow with the sites, not with the history.
        """
        positive_label = FieldOutcome.label == "positive"
        positive_call = FieldOutcome.decision == "positive"
        stream = (FieldOutcome.device_version, FieldOutcome.task, FieldOutcome.site_key)
        tallies = {
            "true_positives": _tally(and_(positive_label, positive_call)),
            "false_negatives": _tally(and_(positive_label, ~positive_call)),
            "true_negatives": _tally(and_(~positive_label, ~positive_call)),
            "false_positives": _tally(and_(~positive_label, positive_call)),
            "prospective": _tally(FieldOutcome.study_design == "prospective"),
            "retrospective": _tally(FieldOutcome.study_design == "retrospective"),
        }
        query = select(
            *stream,
            *tallies.values(),
            func.min(FieldOutcome.prediction_time),
            func.max(FieldOutcome.prediction_time),
        ).where(FieldOutcome.device_key == device_id)
        if start is not None:
            query = query.where(FieldOutcome.prediction_time >= start)
        if end is not None:
            query = query.where(FieldOutcome.prediction_time < end)
        query = query.group_by(*stream)
        with self._sessions() as session:
            counts = [
                SiteCounts(
                    version=version,
                    task=task,
                    site=site,
                    **_counted(tallies, tallied),
                    first_case_time=aware(first),
                    last_case_time=aware(last),
                )
                for version, task, site, *tallied, first, last in session.execute(query)
            ]
        # Sorted here: a database's collation need not order text as Python does.
        return sorted(counts, key=lambda site: (site.version, site.task, site.site))

    def field_devices(self) -> list[str]:
        """The devices that have outcomes from the field, registered or not."""
        query = select(FieldOutcome.device_key).distinct().order_by(FieldOutcome.device_key)
        with self._sessions() as session:
            return list(session.scalars(query))

    def outcome_count(self, device_id: str | None = None) -> int:
        query = select(func.count()).select_from(FieldOutcome)
        if device_id is not None:
            query = query.where(FieldOutcome.device_key == device_id)
        with self._sessions() as session:
            return int(session.scalar(query) or 0)

    def prediction_counts(
        self, device_id: str, start: datetime | None = None, end: datetime | None = None
    ) -> list[PredictionCount]:
        """Predictions per stream and study design with prediction time in ``[start, end)``."""
        columns = (
            FieldPrediction.device_version,
            FieldPrediction.site_key,
            FieldPrediction.task,
            FieldPrediction.study_design,
        )
        query = select(*columns, func.count()).where(FieldPrediction.device_key == device_id)
        if start is not None:
            query = query.where(FieldPrediction.prediction_time >= start)
        if end is not None:
            query = query.where(FieldPrediction.prediction_time < end)
        query = query.group_by(*columns).order_by(*columns)
        with self._sessions() as session:
            return [
                PredictionCount(
                    stream=StreamKey(
                        device_id=device_id, device_version=version, site_id=site, task=task
                    ),
                    study_design=design,
                    predictions=int(count),
                )
                for version, site, task, design, count in session.execute(query)
            ]

    def week_counts(
        self, device_id: str, weeks: Collection[datetime] | None = None
    ) -> list[WeekCounts]:
        """A device's outcomes tallied per stream, study design and ISO week (UTC), in SQL.

        One GROUP BY (the rev0006 index covers every column it reads): the rows returned grow
        with the streams and weeks, and no outcome is read into Python. ``weeks`` (any time
        in each) limits it to those weeks, read by index range; None: every week.
        """
        week = _UTCWeek(FieldOutcome.prediction_time)
        positive, negative = FieldOutcome.label == "positive", FieldOutcome.label == "negative"
        group = (
            FieldOutcome.device_version,
            FieldOutcome.site_key,
            FieldOutcome.task,
            FieldOutcome.study_design,
            week,
        )
        tallies = {
            "cases": func.count(),
            "positives": _tally(positive),
            "true_positives": _tally(and_(positive, FieldOutcome.decision == "positive")),
            "negatives": _tally(negative),
            "true_negatives": _tally(and_(negative, FieldOutcome.decision == "negative")),
        }
        query = (
            select(*group, *tallies.values())
            .where(FieldOutcome.device_key == device_id)
            .group_by(*group)
        )
        streams = _Streams(device_id)
        with self._sessions() as session:
            return [
                WeekCounts(
                    stream=streams.key(version, site, task),
                    study_design=design,
                    week=_week_start(week_number),
                    **_counted(tallies, tallied),
                )
                for version, site, task, design, week_number, *tallied in _rows_of_weeks(
                    session, query, FieldOutcome.prediction_time, weeks
                )
            ]

    def weekly_prediction_counts(
        self, device_id: str, weeks: Collection[datetime] | None = None
    ) -> list[tuple[datetime, PredictionCount]]:
        """:meth:`prediction_counts` of every ISO week (its Monday first), in one GROUP BY.

        ``weeks`` (any time in each) limits it to those weeks; None: every week.
        """
        week = _UTCWeek(FieldPrediction.prediction_time)
        group = (
            FieldPrediction.device_version,
            FieldPrediction.site_key,
            FieldPrediction.task,
            FieldPrediction.study_design,
            week,
        )
        query = (
            select(*group, func.count())
            .where(FieldPrediction.device_key == device_id)
            .group_by(*group)
        )
        streams = _Streams(device_id)
        with self._sessions() as session:
            return [
                (
                    _week_start(week_number),
                    PredictionCount(
                        stream=streams.key(version, site, task),
                        study_design=design,
                        predictions=int(count),
                    ),
                )
                for version, site, task, design, week_number, count in _rows_of_weeks(
                    session, query, FieldPrediction.prediction_time, weeks
                )
            ]


WEEK_ZERO = datetime(1900, 1, 1, tzinfo=UTC)
"""A Monday: ISO weeks are numbered from it."""


class _UTCWeek(FunctionElement[int]):
    """The number of the ISO week (UTC) holding a stored time, counted from :data:`WEEK_ZERO`.

    From the time's UTC date, so exactly :func:`~evidence.snapshots.week_of`
    (a Monday 00:00 starts a week): no floating-point epoch arithmetic near midnight.
    """

    type = Integer()
    inherit_cache = True


@compiles(_UTCWeek, "sqlite")
def _utc_week_sqlite(element: _UTCWeek, compiler: SQLCompiler, **kw: Any) -> str:
    # SQLite keeps UTC times as 'YYYY-MM-DD HH:MM:SS.ffffff' text; the date's Julian day is
    # exact (x.5), and the integer division is a floor for dates after WEEK_ZERO.
    (column,) = element.clauses
    day = f"CAST(julianday(substr({compiler.process(column, **kw)}, 1, 10)) - 2415020.5 AS INTEGER)"
    return f"({day} / 7)"


@compiles(_UTCWeek, "postgresql")
def _utc_week_postgresql(element: _UTCWeek, compiler: SQLCompiler, **kw: Any) -> str:
    (column,) = element.clauses
    day = f"(CAST(timezone('UTC', {compiler.process(column, **kw)}) AS DATE) - DATE '1900-01-01')"
    return f"({day} / 7)"


def _week_start(number: int) -> datetime:
    return WEEK_ZERO + timedelta(weeks=int(number))


_Columns = TypeVarTuple("_Columns")


def _rows_of_weeks(
    session: Session,
    query: Select[*_Columns],
    prediction_time: SQLColumnExpression[datetime],
    weeks: Collection[datetime] | None,
) -> list[Row[*_Columns]]:
    """``query``'s rows, of the ISO ``weeks`` only (of all weeks for None).

    One query per run of consecutive weeks, each limited to its prediction-time range, so the
    rev0006 indexes, led by device and prediction time, read only those weeks' entries (a
    group of one week falls whole within one run).
    """
    if weeks is None:
        return list(session.execute(query))
    ranges: list[tuple[datetime, datetime]] = []
    for start in sorted({week_of(moment)[0] for moment in weeks}):
        if ranges and ranges[-1][1] == start:
            ranges[-1] = (ranges[-1][0], start + timedelta(days=7))
        else:
            ranges.append((start, start + timedelta(days=7)))
    rows: list[Row[*_Columns]] = []
    for start, end in ranges:
        rows += session.execute(query.where(prediction_time >= start, prediction_time < end))
    return rows


class _Streams:
    """One :class:`StreamKey` per stream of a device: aggregates repeat it every week."""

    def __init__(self, device_id: str) -> None:
        self.device_id = device_id
        self._keys: dict[tuple[str, str, str], StreamKey] = {}

    def key(self, version: str, site: str, task: str) -> StreamKey:
        if (version, site, task) not in self._keys:
            self._keys[version, site, task] = StreamKey(
                device_id=self.device_id, device_version=version, site_id=site, task=task
            )
        return self._keys[version, site, task]


def _tally(condition: ColumnElement[bool]) -> ColumnElement[int]:
    """How many rows of the group meet ``condition`` (SUM of a CASE: portable SQL)."""
    return func.sum(case((condition, 1), else_=0))


def _counted(tallies: Iterable[str], tallied: Iterable[Any]) -> dict[str, int]:
    """A GROUP BY row's ``tallied`` values, selected in the order of ``tallies`` (the names
    of the fields they fill), by field name and as plain ints whatever numeric type the
    driver returns for an aggregate."""
    return {field: int(value) for field, value in zip(tallies, tallied, strict=True)}


def _insert_new(
    session: Session, model: type[FieldOutcome] | type[FieldPrediction], rows: dict[str, Any]
) -> int:
    """Insert the rows whose event id is not stored yet; how many were new."""
    if not rows:
        return 0
    existing = set(session.scalars(select(model.event_id).where(model.event_id.in_(list(rows)))))
    fresh = [row for event_id, row in rows.items() if event_id not in existing]
    if not fresh:
        return 0
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        session.execute(pg_insert(model).on_conflict_do_nothing(index_elements=["event_id"]), fresh)
    elif dialect == "sqlite":
        from sqlalchemy.dialects.sqlite import insert as sqlite_insert

        statement = sqlite_insert(model).on_conflict_do_nothing(index_elements=["event_id"])
        session.execute(statement, fresh)
    else:
        session.execute(insert(model), fresh)
    return len(fresh)


def _outcome_row(outcome: Outcome, now: datetime) -> dict[str, Any]:
    acquisition = outcome.acquisition
    return {
        "event_id": str(outcome.event_id),
        "device_key": outcome.stream.device_id,
        "device_version": outcome.stream.device_version,
        "site_key": outcome.stream.site_id,
        "task": outcome.stream.task,
        "case_pseudonym": outcome.case_pseudonym,
        "prediction_event_id": str(outcome.prediction_event_id),
        "prediction_time": outcome.prediction_time,
        "truth_time": outcome.truth_time,
        "decision": outcome.decision,
        "label": outcome.label,
        "score": outcome.score,
        "operating_threshold": outcome.operating_threshold,
        "truth_source": outcome.truth_source,
        "study_design": outcome.study_design,
        "modality": acquisition.modality,
        "manufacturer": acquisition.manufacturer,
        "model": acquisition.model,
        "slice_thickness_mm": acquisition.slice_thickness_mm,
        "slice_thickness_band": acquisition.slice_thickness_band,
        "recorded_at": now,
        "first_read": outcome.blinded_reads[0] if outcome.blinded_reads else None,
        "second_read": outcome.blinded_reads[1] if outcome.blinded_reads else None,
    }


def _prediction_row(prediction: Prediction, now: datetime) -> dict[str, Any]:
    return {
        "event_id": str(prediction.event_id),
        "device_key": prediction.device_id,
        "device_version": prediction.device_version,
        "site_key": prediction.site_id,
        "task": prediction.task,
        "prediction_time": prediction.event_time,
        "study_design": prediction.study_design,
        "recorded_at": now,
    }


def _outcome_record(row: FieldOutcome) -> OutcomeRecord:
    return OutcomeRecord(
        event_id=row.event_id,
        stream=StreamKey(
            device_id=row.device_key,
            device_version=row.device_version,
            site_id=row.site_key,
            task=row.task,
        ),
        prediction_time=row.prediction_time,
        truth_time=row.truth_time,
        decision=row.decision,
        label=row.label,
        score=row.score,
        truth_source=row.truth_source,
        study_design=row.study_design,
        manufacturer=row.manufacturer,
        model=row.model,
        slice_thickness_band=row.slice_thickness_band,
        blinded_reads=_read_pair(row.first_read, row.second_read),
    )


def _read_pair(first: str | None, second: str | None) -> tuple[str, str] | None:
    return (first, second) if first is not None and second is not None else None
