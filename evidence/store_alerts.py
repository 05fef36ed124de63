"""Alerts in the evidence store: raised (or recurring), acknowledged, resolved (after a
review, for a claim-based alert) or re-baselined, each step audited; short ids; counts per
lifecycle status for /metrics."""

from __future__ import annotations

import json
import re
import uuid
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Select, case, func, literal, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from evidence.lifecycle import (
    SEVERITIES,
    UNRESOLVED,
    AlertAction,
    AlertStatus,
    highest_severity,
    next_status,
)
from evidence.models import AlertRecurrenceRow, AlertRow, AuditEntryRow
from evidence.rebaseline import is_reviewed_on_its_stream, rebaseline_refusal
from evidence.store_errors import AmbiguousAlertId, EvidenceError, NotFound
from evidence.store_unit import StoreUnit, aware, queue_writers
from evidence.views import (
    AlertRecurrenceCount,
    AlertStatusCount,
    AlertView,
    ReviewView,
)
from postmarket.contracts.events import Alert, Rebaseline, StreamKey, utc_now

REBASELINE_ACTION = "stream.rebaseline"
"""The audit action that keeps a re-baselining decision (:meth:`AlertStore.record_rebaseline`)."""
REVIEW_ACTION = "stream.review"
"""The audit action that keeps a review decision (:meth:`AlertStore.record_review`)."""
REVIEW_RESOLUTION = "reviewed; the stream's rejected claims tests restart (decision {decision}): "
"""How a review decision's resolution begins, before its reason (as the report shows it)."""
_DECISION_START = '{"alert_id":"'
"""How a decision's audit payload begins: canonical JSON sorts its keys, ``alert_id`` first
(a test checks it), so the entry names its alert in the 36 characters that follow."""


class AlertStore(StoreUnit):
    """Alerts, their recurrences and lifecycle (:mod:`~evidence.lifecycle`)."""

    def record_alert(self, alert: Alert, *, actor: str) -> bool:
        """Store a raised alert: as a recurrence of its stream and detector's unresolved
        alert if there is one, else as a new open alert. False (and nothing written) if its
        alert id is already stored, as an alert or as a recurrence."""
        try:
            with self._transaction() as session:
                # Before looking: a concurrent writer must not open a second alert for the
                # same stream and detector, nor store the same id twice across both tables.
                queue_writers(session)
                if _is_stored(session, alert.alert_id):
                    return False
                recurred = _unresolved_alert(session, alert.stream, alert.detector)
                if recurred is None:
                    session.add(_alert_row(alert))
                    action, subject = "alert.raise", f"alert:{alert.alert_id}"
                else:
                    session.add(AlertRecurrenceRow(**_signal(alert), recurred_id=recurred.id))
                    action, subject = "alert.recur", f"alert:{recurred.alert_id}"
                self._audit(session, actor, action, subject, alert.model_dump(mode="json"))
                return True
        except IntegrityError:
            return False

    def acknowledge_alert(
        self, alert_id: uuid.UUID | str, *, by: str, note: str, at: datetime | None = None
    ) -> AlertView:
        """open -> acknowledged: ``by`` owns the alert; ``note`` says what they will do."""
        return self._transition(alert_id, AlertAction.ACKNOWLEDGE, by, note, at or utc_now())

    def resolve_alert(
        self, alert_id: uuid.UUID | str, *, by: str, resolution: str, at: datetime | None = None
    ) -> AlertView:
        """acknowledged -> resolved, with why (root cause, fix, or why it was a false alarm)."""
        return self._transition(alert_id, AlertAction.RESOLVE, by, resolution, at or utc_now())

    def _transition(
        self, alert_id: uuid.UUID | str, action: AlertAction, by: str, why: str, at: datetime
    ) -> AlertView:
        if not by.strip() or not why.strip():
            raise EvidenceError(f"to {action.value} an alert, say who and why")
        with self._transaction() as session:
            row = _alert(session, alert_id)
            self._apply(session, row, action, by, why, at)
            return _alert_view_of(session, row)

    def _apply(
        self,
        session: Session,
        row: AlertRow,
        action: AlertAction,
        by: str,
        why: str,
        at: datetime,
    ) -> None:
        """Move ``row`` through the lifecycle and audit it, inside the caller's transaction."""
        status = next_status(AlertStatus(row.status), action)
        row.status = status.value
        if action is AlertAction.ACKNOWLEDGE:
            row.acknowledged_by, row.acknowledged_at, row.acknowledgement = by, at, why
        else:
            row.resolved_by, row.resolved_at, row.resolution = by, at, why
        self._audit(
            session,
            by,
            f"alert.{action.value}",
            f"alert:{row.alert_id}",
            {"status": status.value, "at": at, "why": why},
        )

    def record_rebaseline(self, decision: Rebaseline) -> AlertView:
        """Record a published re-baselining decision: its drift alert goes acknowledged ->
        resolved, and a ``stream.rebaseline`` audit entry keeps the decision, both or neither.

        Raises :class:`~evidence.lifecycle.IllegalTransition` unless the alert is
        acknowledged (an open alert has no owner yet), and :class:`EvidenceError` when the
        decision is a review, its alert's detector has no reference to rebuild or the
        decision names another stream.
        """
        if decision.scope != "reference":
            raise EvidenceError(f"decision {decision.rebaseline_id} is not a re-baselining")
        with self._transaction() as session:
            queue_writers(session)  # before reading: a concurrent resolve waits, then fails
            row = _alert(session, decision.alert_id)
            refusal = rebaseline_refusal(row.detector)
            if refusal is not None:
                raise EvidenceError(f"cannot re-baseline alert {row.alert_id}: {refusal}")
            if _alert_stream(row) != decision.stream:
                raise EvidenceError(
                    f"decision {decision.rebaseline_id} names stream {decision.stream.as_key()}"
                    f", but alert {row.alert_id} is on {_alert_stream(row).as_key()}"
                )
            resolution = f"stream re-baselined (decision {decision.rebaseline_id}): "
            self._apply(
                session,
                row,
                AlertAction.RESOLVE,
                decision.decided_by,
                resolution + decision.reason,
                decision.decided_at,
            )
            self._audit(
                session,
                decision.decided_by,
                REBASELINE_ACTION,
                f"stream:{decision.stream.as_key()}",
                decision.model_dump(mode="json"),
            )
            return _alert_view_of(session, row)

    def record_review(self, decision: Rebaseline) -> AlertView:
        """Record a published review decision: its claim-based alert goes acknowledged ->
        resolved with the decision's reason, and a ``stream.review`` audit entry keeps the
        decision (who restarted the stream's rejected claims tests, when), both or neither.

        Raises :class:`~evidence.lifecycle.IllegalTransition` unless the alert is
        acknowledged, and :class:`EvidenceError` when the decision is no review, its alert
        is not a claim-based alert of a site's stream, or it names another stream.
        """
        if decision.scope != "review":
            raise EvidenceError(f"decision {decision.rebaseline_id} is not a review")
        with self._transaction() as session:
            queue_writers(session)  # before reading: a concurrent resolve waits, then fails
            row = _alert(session, decision.alert_id)
            if not is_reviewed_on_its_stream(row.detector):
                raise EvidenceError(
                    f"alert {row.alert_id} of {row.detector} is not a claim-based alert of a "
                    "site's stream: a review decision restarts nothing for it"
                )
            if _alert_stream(row) != decision.stream:
                raise EvidenceError(
                    f"decision {decision.rebaseline_id} names stream {decision.stream.as_key()}"
                    f", but alert {row.alert_id} is on {_alert_stream(row).as_key()}"
                )
            self._apply(
                session,
                row,
                AlertAction.RESOLVE,
                decision.decided_by,
                REVIEW_RESOLUTION.format(decision=decision.rebaseline_id) + decision.reason,
                decision.decided_at,
            )
            self._audit(
                session,
                decision.decided_by,
                REVIEW_ACTION,
                f"stream:{decision.stream.as_key()}",
                decision.model_dump(mode="json"),
            )
            return _alert_view_of(session, row)

    def rebaseline_decisions(self, device_id: str) -> list[dict[str, Any]]:
        """The re-baselining decisions recorded on ``device_id``'s streams, as their audit
        entries keep them (a :class:`~postmarket.contracts.events.Rebaseline` in JSON),
        oldest first."""
        # The subject is "stream:" + StreamKey.as_key(), which begins with the device ("|"
        # cannot occur in an identifier); compared exactly, as SQLite's LIKE ignores case.
        subject = f"stream:{device_id}|"
        query = (
            select(AuditEntryRow.payload)
            .where(
                AuditEntryRow.action == REBASELINE_ACTION,
                func.substr(AuditEntryRow.subject, 1, len(subject)) == subject,
            )
            .order_by(AuditEntryRow.sequence)
        )
        with self._sessions() as session:
            return [json.loads(payload) for payload in session.scalars(query)]

    def review_decisions(self, device_id: str, begin: datetime, stop: datetime) -> list[ReviewView]:
        """The review decisions on ``device_id``'s streams decided in ``[begin, stop)``, each
        with its alert's detector and raise time, in decision order.

        The database selects them: each ``stream.review`` entry joined to the alert it
        resolved, whose resolution time is the decision's (:meth:`record_review` writes both
        in one transaction), so the device and the period are compared in SQL.
        """
        alert_id = func.substr(AuditEntryRow.payload, len(_DECISION_START) + 1, 36)
        query = (
            select(AuditEntryRow.payload, AlertRow.detector, AlertRow.raised_at)
            .join(AlertRow, AlertRow.alert_id == alert_id)
            .where(
                AuditEntryRow.action == REVIEW_ACTION,
                func.substr(AuditEntryRow.payload, 1, len(_DECISION_START))
                == literal(_DECISION_START),
                AlertRow.device_key == device_id,
                AlertRow.resolved_at >= begin,
                AlertRow.resolved_at < stop,
            )
            .order_by(AlertRow.resolved_at, AuditEntryRow.sequence)
        )
        with self._sessions() as session:
            return [
                _review_view(Rebaseline.model_validate_json(payload), detector, aware(raised_at))
                for payload, detector, raised_at in session.execute(query)
            ]

    def alert(self, alert_id: uuid.UUID | str) -> AlertView:
        with self._sessions() as session:
            return _alert_view_of(session, _alert(session, alert_id))

    def alerts(
        self,
        status: AlertStatus | None = None,
        *,
        device_id: str | None = None,
        site_id: str | None = None,
        since: datetime | None = None,
    ) -> list[AlertView]:
        """Alerts, newest first; only those with ``status``, of ``device_id``, at
        ``site_id`` and raised at or after ``since``, for each that is given."""
        query = select(AlertRow).order_by(AlertRow.raised_at.desc(), AlertRow.id.desc())
        if status is not None:
            query = query.where(AlertRow.status == status.value)
        if device_id is not None:
            query = query.where(AlertRow.device_key == device_id)
        if site_id is not None:
            query = query.where(AlertRow.site_key == site_id)
        if since is not None:
            query = query.where(AlertRow.raised_at >= since)
        with self._sessions() as session:
            return _alert_views(session, query)

    def alert_recurrences(self, alert_id: uuid.UUID | str) -> list[Alert]:
        """The signals stored as recurrences of an alert, each as raised, oldest first."""
        with self._sessions() as session:
            recurred = _alert(session, alert_id)
            query = (
                select(AlertRecurrenceRow)
                .where(AlertRecurrenceRow.recurred_id == recurred.id)
                .order_by(AlertRecurrenceRow.raised_at, AlertRecurrenceRow.id)
            )
            stream = _alert_stream(recurred)
            return [_as_raised(row, stream, recurred.detector) for row in session.scalars(query)]

    def alert_status_counts(self) -> list[AlertStatusCount]:
        """How many alerts each stream, detector and severity has in each lifecycle status."""
        group = (*_ALERT_STREAM, AlertRow.detector, AlertRow.severity, AlertRow.status)
        query = select(*group, func.count()).group_by(*group)
        with self._sessions() as session:
            return [
                AlertStatusCount(
                    stream=_stream_key(*stream),
                    detector=detector,
                    severity=severity,
                    status=AlertStatus(status),
                    alerts=int(count),
                )
                for *stream, detector, severity, status, count in session.execute(query)
            ]

    def alert_recurrence_counts(self) -> list[AlertRecurrenceCount]:
        """How many recurrences each stream and detector's alerts in each status have."""
        group = (*_ALERT_STREAM, AlertRow.detector, AlertRow.status)
        query = (
            select(*group, func.count())
            .join(AlertRecurrenceRow, AlertRecurrenceRow.recurred_id == AlertRow.id)
            .group_by(*group)
        )
        with self._sessions() as session:
            return [
                AlertRecurrenceCount(
                    stream=_stream_key(*stream),
                    detector=detector,
                    status=AlertStatus(status),
                    recurrences=int(count),
                )
                for *stream, detector, status, count in session.execute(query)
            ]

    def device_alerts(self, device_id: str) -> list[AlertView]:
        """Every alert on a device's streams, oldest first."""
        query = (
            select(AlertRow)
            .where(AlertRow.device_key == device_id)
            .order_by(AlertRow.raised_at, AlertRow.id)
        )
        with self._sessions() as session:
            return _alert_views(session, query)


SHORT_ID_LENGTH = 8
"""Hex characters of an alert id that ``alerts list`` shows and every alert command accepts."""
_ID_PREFIX = re.compile(r"[0-9a-f][0-9a-f-]*")


def short_alert_id(alert_id: uuid.UUID | str) -> str:
    """The first :data:`SHORT_ID_LENGTH` hex characters of an alert id.

    >>> short_alert_id("7b0c9a52-1f1e-4f35-9d0e-2a8b8c1e2f11")
    '7b0c9a52'
    """
    return str(alert_id).replace("-", "")[:SHORT_ID_LENGTH]


def _alert_key(session: Session, alert_id: uuid.UUID | str) -> str:
    """The full id of the alert (or recurrence) ``alert_id`` names: a UUID, or a prefix of
    at least :data:`SHORT_ID_LENGTH` hex characters that only one of them starts with."""
    text = str(alert_id).strip().lower()
    try:
        return str(uuid.UUID(text))
    except ValueError:
        pass
    digits = text.replace("-", "")
    if not _ID_PREFIX.fullmatch(text) or not SHORT_ID_LENGTH <= len(digits) < 32:
        raise NotFound(
            f"{alert_id!r} is not an alert id: give the UUID or its first {SHORT_ID_LENGTH} "
            "hex characters, as `alerts list` shows them"
        )
    text = _dashed(digits)
    matches: list[str] = []
    for model in (AlertRow, AlertRecurrenceRow):
        query = select(model.alert_id).where(model.alert_id.startswith(text)).limit(2)
        matches += session.scalars(query)
    if len(matches) > 1:
        raise AmbiguousAlertId(
            f"{text} is the start of more than one alert id (e.g. {', '.join(sorted(matches))})"
            "; give more characters or the full id"
        )
    if not matches:
        raise NotFound(f"no alert {text}")
    return matches[0]


def _dashed(digits: str) -> str:
    """A prefix of a UUID's hex digits written as the UUID is stored, with its dashes.

    >>> _dashed("7b0c9a521f1e4")
    '7b0c9a52-1f1e-4'
    """
    groups, start = [], 0
    for width in (8, 4, 4, 4, 12):
        if start < len(digits):
            groups.append(digits[start : start + width])
        start += width
    return "-".join(groups)


def _alert(session: Session, alert_id: uuid.UUID | str) -> AlertRow:
    key = _alert_key(session, alert_id)
    row = session.scalars(select(AlertRow).where(AlertRow.alert_id == key)).first()
    if row is not None:
        return row
    recurred = session.scalars(
        select(AlertRow.alert_id)
        .join(AlertRecurrenceRow, AlertRecurrenceRow.recurred_id == AlertRow.id)
        .where(AlertRecurrenceRow.alert_id == key)
    ).first()
    if recurred is not None:
        raise NotFound(f"{key} is a recurrence of alert {recurred}: use that alert's id")
    raise NotFound(f"no alert {key}")


def _is_stored(session: Session, alert_id: uuid.UUID) -> bool:
    """Whether ``alert_id`` is stored, as an alert or as a recurrence."""
    key = str(alert_id)
    return any(
        session.scalars(select(model.id).where(model.alert_id == key)).first() is not None
        for model in (AlertRow, AlertRecurrenceRow)
    )


def _unresolved_alert(session: Session, stream: StreamKey, detector: str) -> AlertRow | None:
    """The stream and detector's unresolved alert, which its next signal recurs.

    The oldest if there are several (stored before revision 8 stored recurrences): the one
    that first reported the problem.
    """
    query = (
        select(AlertRow)
        .where(
            AlertRow.device_key == stream.device_id,
            AlertRow.device_version == stream.device_version,
            AlertRow.site_key == stream.site_id,
            AlertRow.task == stream.task,
            AlertRow.detector == detector,
            AlertRow.status.in_([status.value for status in UNRESOLVED]),
        )
        .order_by(AlertRow.raised_at, AlertRow.id)
        .limit(1)
    )
    return session.scalars(query).first()


def _signal(alert: Alert) -> dict[str, Any]:
    """The columns an alert and a recurrence both keep of a raised alert."""
    return {
        "alert_id": str(alert.alert_id),
        "statistic": alert.statistic,
        "threshold": alert.threshold,
        "evidence": dict(alert.evidence),
        "first_case_time": alert.first_case_time,
        "last_case_time": alert.last_case_time,
        "raised_at": alert.raised_at,
        "severity": alert.severity,
        "message": alert.message,
        "change_began_at": alert.change_began_at,
    }


def _alert_row(alert: Alert) -> AlertRow:
    return AlertRow(
        **_signal(alert),
        device_key=alert.stream.device_id,
        device_version=alert.stream.device_version,
        site_key=alert.stream.site_id,
        task=alert.stream.task,
        detector=alert.detector,
        status=AlertStatus.OPEN.value,
    )


_ALERT_STREAM = (AlertRow.device_key, AlertRow.device_version, AlertRow.site_key, AlertRow.task)
"""An alert's stream key columns, in :func:`_stream_key`'s order."""


def _stream_key(device: str, version: str, site: str, task: str) -> StreamKey:
    return StreamKey(device_id=device, device_version=version, site_id=site, task=task)


def _alert_stream(row: AlertRow) -> StreamKey:
    return _stream_key(row.device_key, row.device_version, row.site_key, row.task)


def _as_raised(row: AlertRow | AlertRecurrenceRow, stream: StreamKey, detector: str) -> Alert:
    """An alert or recurrence as it was raised (a recurrence has its alert's stream)."""
    return Alert(
        alert_id=uuid.UUID(row.alert_id),
        stream=stream,
        detector=detector,
        statistic=row.statistic,
        threshold=row.threshold,
        evidence=dict(row.evidence),
        first_case_time=row.first_case_time,
        last_case_time=row.last_case_time,
        raised_at=row.raised_at,
        severity=row.severity,  # type: ignore[arg-type]
        message=row.message,
        change_began_at=row.change_began_at,
    )


def _review_view(decision: Rebaseline, detector: str, raised_at: datetime) -> ReviewView:
    return ReviewView(
        decision_id=str(decision.rebaseline_id),
        stream=decision.stream,
        alert_id=str(decision.alert_id),
        detector=detector,
        alert_raised_at=raised_at,
        decided_at=decision.decided_at.astimezone(UTC),
        decided_by=decision.decided_by,
        reason=decision.reason,
    )


def _with_recurrences(query: Select[AlertRow]) -> Select[Any]:
    """``query``'s alerts, each with its recurrences' count, latest raise and highest
    severity (as an index into :data:`SEVERITIES`), NULL without recurrences."""
    rank = case(
        {severity: index for index, severity in enumerate(SEVERITIES)},
        value=AlertRecurrenceRow.severity,
    )
    recurrences = (
        select(
            AlertRecurrenceRow.recurred_id,
            func.count().label("recurrences"),
            func.max(AlertRecurrenceRow.raised_at).label("last_recurred_at"),
            func.max(rank).label("severity_rank"),
        )
        .group_by(AlertRecurrenceRow.recurred_id)
        .subquery()
    )
    return query.outerjoin(recurrences, recurrences.c.recurred_id == AlertRow.id).add_columns(
        recurrences.c.recurrences, recurrences.c.last_recurred_at, recurrences.c.severity_rank
    )


def _alert_views(session: Session, query: Select[AlertRow]) -> list[AlertView]:
    return [_alert_view(*columns) for columns in session.execute(_with_recurrences(query))]


def _alert_view_of(session: Session, row: AlertRow) -> AlertView:
    (view,) = _alert_views(session, select(AlertRow).where(AlertRow.id == row.id))
    return view


def _alert_view(
    row: AlertRow,
    recurrences: int | None,
    last_recurred_at: datetime | str | None,
    severity_rank: int | None,
) -> AlertView:
    recurred_severities = () if severity_rank is None else (SEVERITIES[severity_rank],)
    return AlertView(
        alert=_as_raised(row, _alert_stream(row), row.detector),
        status=AlertStatus(row.status),
        acknowledged_by=row.acknowledged_by,
        acknowledged_at=row.acknowledged_at,
        acknowledgement=row.acknowledgement,
        resolved_by=row.resolved_by,
        resolved_at=row.resolved_at,
        resolution=row.resolution,
        recurrences=int(recurrences or 0),
        last_recurred_at=None if last_recurred_at is None else aware(last_recurred_at),
        highest_severity=highest_severity((row.severity, *recurred_severities)),
    )
