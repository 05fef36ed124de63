"""The evidence store: registry, change records, sightings, snapshots, alerts and audit trail.

Every write to the registry or to alerts appends an audit entry in the same transaction, so
the trail and the data cannot disagree. Opening a store migrates its database to the newest
schema. Reads return plain frozen views, never ORM objects tied to a session.
"""

from __future__ import annotations

import math
import re
import uuid
from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from types import TracebackType
from typing import Any, TypeVarTuple

from sqlalchemy import (
    ColumnElement,
    Connection,
    Engine,
    Integer,
    Row,
    Select,
    SQLColumnExpression,
    and_,
    case,
    event,
    func,
    insert,
    select,
    text,
)
from sqlalchemy.engine.interfaces import DBAPIConnection
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import ConnectionPoolEntry
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.functions import FunctionElement

from postmarket.contracts.events import (
    Alert,
    Claim,
    Outcome,
    Prediction,
    Rebaseline,
    Severity,
    StreamKey,
)
from postmarket.evidence.audit import AuditRecord, ChainVerdict, chain_entry, verify_chain
from postmarket.evidence.lifecycle import (
    SEVERITIES,
    UNRESOLVED,
    AlertAction,
    AlertStatus,
    highest_severity,
    next_status,
)
from postmarket.evidence.migrate import make_engine, upgrade
from postmarket.evidence.models import (
    AlertRecurrenceRow,
    AlertRow,
    AuditEntryRow,
    ChangeRecordRow,
    ClaimRow,
    Device,
    DeviceVersion,
    FieldOutcome,
    FieldPrediction,
    PerformanceSnapshot,
    Registration,
    Site,
    Task,
    VersionSighting,
)
from postmarket.evidence.rebaseline import rebaseline_refusal
from postmarket.evidence.registration import (
    REGISTRATION_STATUSES,
    RegistryChangeRefused,
    check_claim_change,
    check_status_change,
)
from postmarket.evidence.snapshots import (
    Figures,
    SeriesKey,
    Snapshot,
    WeekCounts,
    moved_snapshots,
    snapshot_figures,
    week_of,
)
from postmarket.evidence.unregistered_change import DeviceRegistry
from postmarket.versions import ChangeKind, ChangeRecord, Version


class EvidenceError(Exception):
    """A request the evidence store cannot honour; the message says why."""


class NotFound(EvidenceError):
    pass


class AlreadyExists(EvidenceError):
    pass


class AmbiguousAlertId(NotFound):
    """A short alert id that more than one alert or recurrence starts with."""


@dataclass(frozen=True)
class VersionView:
    device_id: str
    version: Version
    registration_status: str
    regulator: str
    reference: str
    registered_on: date | None
    change: ChangeRecord | None
    claims: tuple[Claim, ...]
    reference_prevalence: float | None = None
    """Prevalence at which the version's scores are calibrated, in (0, 1); None: unknown."""


@dataclass(frozen=True)
class DeviceView:
    device_id: str
    name: str
    manufacturer: str
    tasks: tuple[str, ...]
    versions: tuple[VersionView, ...]


@dataclass(frozen=True)
class OutcomeRecord:
    """A stored field outcome, as reports read it."""

    event_id: str
    stream: StreamKey
    prediction_time: datetime
    truth_time: datetime
    decision: str
    label: str
    score: float
    truth_source: str
    study_design: str
    manufacturer: str | None
    model: str | None
    slice_thickness_band: str | None
    blinded_reads: tuple[str, str] | None = None


@dataclass(frozen=True)
class PredictionCount:
    """How many predictions a stream made in a window, per study design."""

    stream: StreamKey
    study_design: str
    predictions: int


@dataclass(frozen=True)
class SiteCounts:
    """One version, task and site's confusion counts, designs and span of prediction times.

    What the funnel plot and heterogeneity need, so the periodic fleet review can have the
    database aggregate instead of reading every outcome. A call or label is positive when it
    is ``positive``, negative otherwise.
    """

    version: str
    task: str
    site: str
    true_positives: int
    false_negatives: int
    true_negatives: int
    false_positives: int
    prospective: int
    retrospective: int
    first_case_time: datetime
    last_case_time: datetime


@dataclass(frozen=True)
class AlertView:
    """An alert as raised plus its lifecycle so far and how often it recurred."""

    alert: Alert
    status: AlertStatus
    acknowledged_by: str | None
    acknowledged_at: datetime | None
    acknowledgement: str | None
    resolved_by: str | None
    resolved_at: datetime | None
    resolution: str | None
    recurrences: int
    """Signals of the same stream and detector stored while the alert was unresolved."""
    last_recurred_at: datetime | None
    """When the latest recurrence was raised; None without recurrences."""
    highest_severity: Severity
    """The most severe of the alert's and its recurrences' severities."""


@dataclass(frozen=True)
class AlertStatusCount:
    """The number of alerts of one stream, detector and severity in one lifecycle status."""

    stream: StreamKey
    detector: str
    severity: str
    status: AlertStatus
    alerts: int


@dataclass(frozen=True)
class AlertRecurrenceCount:
    """The number of recurrences of one stream and detector's alerts in one lifecycle status."""

    stream: StreamKey
    detector: str
    status: AlertStatus
    recurrences: int


def _now() -> datetime:
    return datetime.now(UTC)


class EvidenceStore:
    """The evidence database at ``url`` (SQLite file or PostgreSQL), migrated to head on open."""

    def __init__(self, url: str, *, migrate: bool = True) -> None:
        self.url = url
        self.engine: Engine = make_engine(url)
        if self.engine.dialect.name == "sqlite":
            _serialize_sqlite_writers(self.engine)
        writes = self.engine.execution_options(**{_WRITES: True})
        if migrate:
            upgrade(writes)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        self._writes = sessionmaker(writes, expire_on_commit=False)

    def close(self) -> None:
        self.engine.dispose()

    def __enter__(self) -> EvidenceStore:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    # --- transactions and the audit trail ---------------------------------------------------

    @contextmanager
    def _transaction(self) -> Iterator[Session]:
        """A write transaction; reads use plain ``self._sessions()`` (deferred on SQLite)."""
        with self._writes.begin() as session:
            yield session

    def _audit(
        self, session: Session, actor: str, action: str, subject: str, payload: Mapping[str, Any]
    ) -> None:
        """Append one entry chained to the newest, inside the caller's transaction."""
        _queue_writers(session)
        newest = session.scalars(
            select(AuditEntryRow).order_by(AuditEntryRow.sequence.desc()).limit(1)
        ).first()
        entry = chain_entry(
            None if newest is None else _audit_record(newest),
            _now(),
            actor,
            action,
            subject,
            payload,
        )
        session.add(AuditEntryRow(**entry.hashed_fields(), entry_hash=entry.entry_hash))

    # The unit the store's concept modules (postmarket.evidence.testdb_store) write through:
    # one transaction, and audit entries chained inside it.
    def writing(self) -> AbstractContextManager[Session]:
        """A write transaction (everything in it, audit entries included, or nothing)."""
        return self._transaction()

    def reading(self) -> Session:
        """A read session (use it as a context manager)."""
        return self._sessions()

    def audit(
        self, session: Session, actor: str, action: str, subject: str, payload: Mapping[str, Any]
    ) -> None:
        """Append one audit entry inside ``session``'s write transaction."""
        self._audit(session, actor, action, subject, payload)

    def audit_entries(self) -> list[AuditRecord]:
        """The whole audit trail, oldest first."""
        with self._sessions() as session:
            rows = session.scalars(select(AuditEntryRow).order_by(AuditEntryRow.sequence))
            return [_audit_record(row) for row in rows]

    def verify_audit_chain(self) -> ChainVerdict:
        """Check every entry's hash and link; the verdict names the first bad entry."""
        return verify_chain(self.audit_entries())

    # --- registry ---------------------------------------------------------------------------

    def add_device(
        self,
        device_id: str,
        *,
        name: str = "",
        manufacturer: str = "",
        tasks: Sequence[str] = (),
        actor: str,
    ) -> None:
        with self._transaction() as session:
            if _device(session, device_id, missing_ok=True) is not None:
                raise AlreadyExists(f"device {device_id!r} is already in the registry")
            device = Device(
                device_key=device_id, name=name, manufacturer=manufacturer, created_at=_now()
            )
            session.add(device)
            device.tasks = [Task(name=task, description="") for task in dict.fromkeys(tasks)]
            self._audit(
                session,
                actor,
                "registry.add_device",
                f"device:{device_id}",
                {"name": name, "manufacturer": manufacturer, "tasks": list(dict.fromkeys(tasks))},
            )

    def add_task(
        self, device_id: str, task: str, *, description: str = "", why: str = "", actor: str
    ) -> None:
        """Add a task to a registered device; its claims are then added per version."""
        if not task.strip():
            raise EvidenceError("a task needs a name")
        with self._transaction() as session:
            device = _device(session, device_id)
            if any(existing.name == task for existing in device.tasks):
                raise AlreadyExists(f"device {device_id!r} already has task {task!r}")
            device.tasks.append(Task(name=task, description=description))
            self._audit(
                session,
                actor,
                "registry.add_task",
                f"device:{device_id}/task:{task}",
                {"description": description, "why": why},
            )

    def add_version(
        self,
        device_id: str,
        version: str,
        *,
        status: str = "unregistered",
        regulator: str = "",
        reference: str = "",
        registered_on: date | None = None,
        reference_prevalence: float | None = None,
        actor: str,
    ) -> Version:
        """Add a version with its registration status (``registered``, ``pending``...) and,
        if known, the prevalence its scores are calibrated at (strictly between 0 and 1)."""
        parsed = Version.parse(version)
        _check_status(status)
        _check_reference_prevalence(reference_prevalence)
        with self._transaction() as session:
            device = _device(session, device_id)
            if _version(session, device, parsed, missing_ok=True) is not None:
                raise AlreadyExists(f"{device_id} {parsed} is already in the registry")
            row = _new_version(device, parsed, status, regulator, reference, registered_on)
            row.reference_prevalence = reference_prevalence
            session.add(row)
            self._audit(
                session,
                actor,
                "registry.add_version",
                f"device:{device_id}/version:{parsed}",
                {
                    "status": status,
                    "regulator": regulator,
                    "reference": reference,
                    "registered_on": registered_on,
                    "reference_prevalence": reference_prevalence,
                },
            )
        return parsed

    def set_reference_prevalence(
        self, device_id: str, version: str, prevalence: float | None, *, actor: str
    ) -> None:
        """Set (or, with None, forget) the prevalence of the reference population at which
        a version's scores are calibrated; strictly between 0 and 1."""
        parsed = Version.parse(version)
        _check_reference_prevalence(prevalence)
        with self._transaction() as session:
            row = _version(session, _device(session, device_id), parsed)
            previous = row.reference_prevalence
            row.reference_prevalence = prevalence
            self._audit(
                session,
                actor,
                "registry.set_reference_prevalence",
                f"device:{device_id}/version:{parsed}",
                {"from": previous, "to": prevalence},
            )

    def set_registration_status(
        self,
        device_id: str,
        version: str,
        status: str,
        *,
        reference: str = "",
        regulator: str = "",
        registered_on: date | None = None,
        why: str = "",
        actor: str,
    ) -> str:
        """Move a version's registration under change control (pending -> registered ->
        withdrawn, see :mod:`~postmarket.evidence.registration`); return the old status.

        The audit entry keeps the old status, reference, regulator and date beside the new.
        """
        parsed = Version.parse(version)
        with self._transaction() as session:
            registration = _registration(session, device_id, parsed)
            previous = _registration_record(registration)
            try:
                check_status_change(
                    registration.status,
                    status,
                    reference_on_record=registration.reference,
                    new_reference=reference,
                )
            except RegistryChangeRefused as refusal:
                raise EvidenceError(f"{device_id} {parsed}: {refusal}") from None
            registration.status = status
            registration.reference = reference or registration.reference
            registration.regulator = regulator or registration.regulator
            if registered_on is not None:
                registration.registered_on = registered_on
            self._audit(
                session,
                actor,
                "registry.set_registration_status",
                f"device:{device_id}/version:{parsed}",
                {
                    "from": previous["status"],
                    "to": status,
                    "reference": registration.reference,
                    "previous": previous,
                    "current": _registration_record(registration),
                    "why": why,
                },
            )
            return str(previous["status"])

    def add_claim(
        self,
        device_id: str,
        version: str,
        claim: Claim,
        *,
        intended_acquisitions: Sequence[str] = (),
        intended_populations: Sequence[str] = (),
        actor: str,
    ) -> None:
        """Record a claimed performance of a version for one of its device's tasks."""
        parsed = Version.parse(version)
        with self._transaction() as session:
            registration = _registration(session, device_id, parsed)
            if registration.status == "withdrawn":
                raise EvidenceError(
                    f"{device_id} {parsed} is withdrawn: its claims are the withdrawn "
                    "registration's record; register a new version for new claims"
                )
            device = registration.version.device
            task = next((t for t in device.tasks if t.name == claim.task), None)
            if task is None:
                known = ", ".join(t.name for t in device.tasks) or "none"
                raise NotFound(
                    f"device {device_id!r} has no task {claim.task!r} (tasks: {known}); "
                    "add it first"
                )
            if any(c.task_id == task.id and c.metric == claim.metric for c in registration.claims):
                raise AlreadyExists(
                    f"{device_id} {parsed} already claims {claim.metric} for {claim.task}"
                )
            registration.claims.append(
                ClaimRow(
                    task=task,
                    metric=claim.metric,
                    value=claim.value,
                    ci_lower=claim.ci_lower,
                    ci_upper=claim.ci_upper,
                    test_database=claim.test_database,
                    intended_acquisitions=list(intended_acquisitions),
                    intended_populations=list(intended_populations),
                )
            )
            self._audit(
                session,
                actor,
                "registry.add_claim",
                f"device:{device_id}/version:{parsed}/task:{claim.task}",
                {
                    **claim.model_dump(mode="json"),
                    "intended_acquisitions": list(intended_acquisitions),
                    "intended_populations": list(intended_populations),
                },
            )

    def amend_claim(
        self,
        device_id: str,
        version: str,
        claim: Claim,
        *,
        intended_acquisitions: Sequence[str] | None = None,
        intended_populations: Sequence[str] | None = None,
        why: str,
        actor: str,
    ) -> Claim:
        """Replace the claim of ``claim.task`` and ``claim.metric`` with ``claim`` (the
        intended acquisitions and populations too, unless None); return the old claim.

        Refused for a withdrawn version, and for a registered one without ``why``
        (:func:`~postmarket.evidence.registration.check_claim_change`). The audit entry
        keeps the old claim beside the new one.
        """
        parsed = Version.parse(version)
        with self._transaction() as session:
            registration = _registration(session, device_id, parsed)
            row = _claim_row(registration, claim.task, claim.metric, device_id, parsed)
            _check_claim_change(registration, "amend", why, device_id, parsed)
            old, old_record = _claim(row), _claim_record(row)
            row.value, row.ci_lower, row.ci_upper = claim.value, claim.ci_lower, claim.ci_upper
            row.test_database = claim.test_database
            if intended_acquisitions is not None:
                row.intended_acquisitions = list(intended_acquisitions)
            if intended_populations is not None:
                row.intended_populations = list(intended_populations)
            self._audit(
                session,
                actor,
                "registry.amend_claim",
                f"device:{device_id}/version:{parsed}/task:{claim.task}",
                {"from": old_record, "to": _claim_record(row), "why": why},
            )
            return old

    def claim(self, device_id: str, version: str, task: str, metric: str) -> Claim:
        """The claim of a version for ``task`` and ``metric``, or :class:`NotFound`."""
        parsed = Version.parse(version)
        with self._sessions() as session:
            registration = _registration(session, device_id, parsed)
            return _claim(_claim_row(registration, task, metric, device_id, parsed))

    def withdraw_claim(
        self, device_id: str, version: str, task: str, metric: str, *, why: str, actor: str
    ) -> Claim:
        """Remove a (mistyped) claim from a version's registration; return it.

        Under the same rules as :meth:`amend_claim`; the audit entry keeps the whole claim,
        so the trail still shows what was claimed and why it went.
        """
        parsed = Version.parse(version)
        with self._transaction() as session:
            registration = _registration(session, device_id, parsed)
            row = _claim_row(registration, task, metric, device_id, parsed)
            _check_claim_change(registration, "withdraw", why, device_id, parsed)
            withdrawn = _claim(row)
            self._audit(
                session,
                actor,
                "registry.withdraw_claim",
                f"device:{device_id}/version:{parsed}/task:{task}",
                {"withdrawn": _claim_record(row), "why": why},
            )
            registration.claims.remove(row)
            session.delete(row)
            return withdrawn

    def add_change(self, device_id: str, version: str, change: ChangeRecord, *, actor: str) -> None:
        """Record what changed to make ``version`` (one change record per version)."""
        parsed = Version.parse(version)
        with self._transaction() as session:
            row = _version(session, _device(session, device_id), parsed)
            if row.change is not None:
                raise AlreadyExists(f"{device_id} {parsed} already has a change record")
            row.change = ChangeRecordRow(
                kind=change.kind.value,
                description=change.description,
                training_fraction_changed=change.training_fraction_changed,
                created_at=_now(),
            )
            self._audit(
                session,
                actor,
                "registry.add_change",
                f"device:{device_id}/version:{parsed}",
                {
                    "kind": change.kind.value,
                    "description": change.description,
                    "training_fraction_changed": change.training_fraction_changed,
                },
            )

    def add_site(self, site_id: str, *, name: str = "", actor: str) -> None:
        with self._transaction() as session:
            if session.scalars(select(Site).where(Site.site_key == site_id)).first():
                raise AlreadyExists(f"site {site_id!r} is already in the registry")
            session.add(Site(site_key=site_id, name=name, created_at=_now()))
            self._audit(session, actor, "registry.add_site", f"site:{site_id}", {"name": name})

    def record_sighting(self, stream: StreamKey, seen_at: datetime, *, actor: str) -> bool:
        """Note a version's prediction at a site; True if it is the first for that stream.

        A version or site the registry does not know yet is added (unregistered) first, so
        the field's reality is on record even when the manufacturer's paperwork is not.
        """
        try:
            with self._transaction() as session:
                version, site = _field_stream(session, stream)
                session.flush()
                seen = session.scalars(
                    select(VersionSighting).where(
                        VersionSighting.version_id == version.id,
                        VersionSighting.site_id == site.id,
                        VersionSighting.task == stream.task,
                    )
                ).first()
                if seen is not None:
                    return False
                session.add(
                    VersionSighting(
                        version_id=version.id,
                        site_id=site.id,
                        task=stream.task,
                        first_seen_at=seen_at,
                    )
                )
                self._audit(
                    session,
                    actor,
                    "registry.first_sighting",
                    f"stream:{stream.as_key()}",
                    {"first_seen_at": seen_at},
                )
                return True
        except IntegrityError:
            # Another worker recorded the same first sighting a moment earlier.
            return False

    def device(self, device_id: str) -> DeviceView:
        with self._sessions() as session:
            return _device_view(_device(session, device_id))

    def devices(self) -> list[DeviceView]:
        with self._sessions() as session:
            rows = session.scalars(select(Device).order_by(Device.device_key))
            return [_device_view(row) for row in rows]

    def registry_snapshot(self, device_id: str) -> DeviceRegistry:
        """What :func:`~postmarket.evidence.unregistered_change.unregistered_change_alert`
        needs to judge a version of ``device_id`` seen in the field."""
        view = self.device(device_id)
        return DeviceRegistry(
            device_id=device_id,
            registered_versions=frozenset(
                v.version for v in view.versions if v.registration_status == "registered"
            ),
            change_records={v.version: v.change for v in view.versions if v.change is not None},
        )

    # --- alerts -----------------------------------------------------------------------------

    def record_alert(self, alert: Alert, *, actor: str) -> bool:
        """Store a raised alert: as a recurrence of its stream and detector's unresolved
        alert if there is one, else as a new open alert. False (and nothing written) if its
        alert id is already stored, as an alert or as a recurrence."""
        try:
            with self._transaction() as session:
                # Before looking: a concurrent writer must not open a second alert for the
                # same stream and detector, nor store the same id twice across both tables.
                _queue_writers(session)
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
        return self._transition(alert_id, AlertAction.ACKNOWLEDGE, by, note, at or _now())

    def resolve_alert(
        self, alert_id: uuid.UUID | str, *, by: str, resolution: str, at: datetime | None = None
    ) -> AlertView:
        """acknowledged -> resolved, with why (root cause, fix, or why it was a false alarm)."""
        return self._transition(alert_id, AlertAction.RESOLVE, by, resolution, at or _now())

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

        Raises :class:`~postmarket.evidence.lifecycle.IllegalTransition` unless the alert is
        acknowledged (an open alert has no owner yet), and :class:`EvidenceError` when its
        detector has no reference to rebuild or the decision names another stream.
        """
        with self._transaction() as session:
            _queue_writers(session)  # before reading: a concurrent resolve waits, then fails
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
                "stream.rebaseline",
                f"stream:{decision.stream.as_key()}",
                decision.model_dump(mode="json"),
            )
            return _alert_view_of(session, row)

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

    # --- field outcomes and predictions (written by the evidence sink) ----------------------

    def record_field_events(
        self, outcomes: Sequence[Outcome] = (), predictions: Sequence[Prediction] = ()
    ) -> tuple[int, int]:
        """Store outcomes and predictions not stored yet, in one transaction.

        Idempotent by event id: a redelivered event is skipped, and a concurrent writer of
        the same event is absorbed by ``ON CONFLICT DO NOTHING``. Returns how many outcomes
        and predictions were new.
        """
        now = _now()
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
                    first_case_time=_aware(first),
                    last_case_time=_aware(last),
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

    # --- performance snapshots (written by the evidence sink on a timer) --------------------

    def record_snapshots(self, device_id: str, snapshots: Sequence[Snapshot]) -> int:
        """Store the snapshots whose figures moved since the latest of their series.

        Returns how many were new. Versions, sites and tasks seen only in the field are
        added (unregistered), as for a first sighting.
        """
        weeks = {snapshot.window_start for snapshot in snapshots}
        # Only the series of these weeks can match: read only theirs when they are few.
        latest = self._latest_figures(device_id, weeks if len(weeks) <= 64 else None)
        fresh = moved_snapshots(snapshots, latest)
        if not fresh:
            return 0
        now = _now()
        with self._transaction() as session:
            # Ids of the versions, tasks and sites written so far: one lookup each, not one
            # per snapshot (a first refresh writes a row per week of history).
            stream_ids: dict[tuple[str, str], tuple[int, int]] = {}
            site_ids: dict[tuple[str, str, str], int] = {}
            for snapshot in fresh:
                if (snapshot.version, snapshot.task) not in stream_ids:
                    version = _field_version(session, device_id, snapshot.version, snapshot.task)
                    task = next(t for t in version.device.tasks if t.name == snapshot.task)
                    stream_ids[snapshot.version, snapshot.task] = version.id, task.id
                version_id, task_id = stream_ids[snapshot.version, snapshot.task]
                site_id = None
                if snapshot.site is not None:
                    key = (snapshot.version, snapshot.task, snapshot.site)
                    if key not in site_ids:
                        _, site = _field_stream(
                            session,
                            StreamKey(
                                device_id=device_id,
                                device_version=snapshot.version,
                                site_id=snapshot.site,
                                task=snapshot.task,
                            ),
                        )
                        site_ids[key] = site.id
                    site_id = site_ids[key]
                session.add(
                    PerformanceSnapshot(
                        version_id=version_id,
                        task_id=task_id,
                        site_id=site_id,
                        stratum="",
                        metric=snapshot.metric,
                        successes=snapshot.successes,
                        trials=snapshot.trials,
                        ci_lower=snapshot.ci_lower,
                        ci_upper=snapshot.ci_upper,
                        window_start=snapshot.window_start,
                        window_end=snapshot.window_end,
                        study_design=snapshot.study_design,
                        followup_completeness=snapshot.followup_completeness,
                        recorded_at=now,
                    )
                )
        return len(fresh)

    def _latest_figures(
        self, device_id: str, weeks: Collection[datetime] | None = None
    ) -> dict[SeriesKey, Figures]:
        """The figures of the newest stored snapshot of each of a device's series (of the
        series starting in ``weeks`` if given), read as plain rows, not ORM objects."""
        query = (
            select(
                DeviceVersion.version,
                Task.name,
                Site.site_key,
                PerformanceSnapshot.metric,
                PerformanceSnapshot.study_design,
                PerformanceSnapshot.window_start,
                PerformanceSnapshot.successes,
                PerformanceSnapshot.trials,
                PerformanceSnapshot.followup_completeness,
            )
            .join(DeviceVersion, PerformanceSnapshot.version_id == DeviceVersion.id)
            .join(Device, DeviceVersion.device_id == Device.id)
            .join(Task, PerformanceSnapshot.task_id == Task.id)
            .outerjoin(Site, PerformanceSnapshot.site_id == Site.id)
            .where(Device.device_key == device_id)
            .order_by(PerformanceSnapshot.recorded_at, PerformanceSnapshot.id)
        )
        if weeks is not None:
            query = query.where(PerformanceSnapshot.window_start.in_(list(weeks)))
        with self._sessions() as session:
            # Oldest first, so each series keeps its newest figures.
            return {
                (version, task, site, metric, design, _aware(window_start)): snapshot_figures(
                    successes, trials, completeness
                )
                for (
                    version,
                    task,
                    site,
                    metric,
                    design,
                    window_start,
                    successes,
                    trials,
                    completeness,
                ) in session.execute(query)
            }

    def snapshots(self, device_id: str) -> list[Snapshot]:
        """A device's performance snapshots, oldest recorded first."""
        query = (
            select(PerformanceSnapshot, DeviceVersion.version, Task.name, Site.site_key)
            .join(DeviceVersion, PerformanceSnapshot.version_id == DeviceVersion.id)
            .join(Device, DeviceVersion.device_id == Device.id)
            .join(Task, PerformanceSnapshot.task_id == Task.id)
            .outerjoin(Site, PerformanceSnapshot.site_id == Site.id)
            .where(Device.device_key == device_id)
            .order_by(PerformanceSnapshot.recorded_at, PerformanceSnapshot.id)
        )
        with self._sessions() as session:
            return [
                Snapshot(
                    version=version,
                    task=task,
                    site=site,
                    metric=row.metric,
                    study_design=row.study_design,
                    window_start=_aware(row.window_start),
                    window_end=_aware(row.window_end),
                    successes=row.successes,
                    trials=row.trials,
                    ci_lower=row.ci_lower,
                    ci_upper=row.ci_upper,
                    followup_completeness=row.followup_completeness,
                )
                for row, version, task, site in session.execute(query)
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

    def first_sightings(self, device_id: str) -> dict[str, datetime]:
        """Each version's first sighting anywhere in the field (version -> time)."""
        query = (
            select(DeviceVersion.version, func.min(VersionSighting.first_seen_at))
            .join(VersionSighting, VersionSighting.version_id == DeviceVersion.id)
            .join(Device, Device.id == DeviceVersion.device_id)
            .where(Device.device_key == device_id)
            .group_by(DeviceVersion.version)
        )
        with self._sessions() as session:
            return {version: _aware(seen) for version, seen in session.execute(query) if seen}


# --- helpers -----------------------------------------------------------------------------------


def _aware(value: datetime | str) -> datetime:
    """Aggregates bypass the column type on SQLite, which returns naive (UTC) times or text."""
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


WEEK_ZERO = datetime(1900, 1, 1, tzinfo=UTC)
"""A Monday: ISO weeks are numbered from it."""


class _UTCWeek(FunctionElement[int]):
    """The number of the ISO week (UTC) holding a stored time, counted from :data:`WEEK_ZERO`.

    From the time's UTC date, so exactly :func:`~postmarket.evidence.snapshots.week_of`
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


def _check_status(status: str) -> None:
    if status not in REGISTRATION_STATUSES:
        raise EvidenceError(
            f"unknown registration status {status!r}; use one of {', '.join(REGISTRATION_STATUSES)}"
        )


def _check_reference_prevalence(prevalence: float | None) -> None:
    if prevalence is not None and not (math.isfinite(prevalence) and 0.0 < prevalence < 1.0):
        raise EvidenceError(
            f"reference prevalence {prevalence!r} must lie strictly between 0 and 1 "
            "(the share of positives in the population the scores are calibrated on)"
        )


def _audit_record(row: AuditEntryRow) -> AuditRecord:
    return AuditRecord(
        sequence=row.sequence,
        recorded_at=row.recorded_at,
        actor=row.actor,
        action=row.action,
        subject=row.subject,
        payload=row.payload,
        previous_hash=row.previous_hash,
        entry_hash=row.entry_hash,
    )


def _new_version(
    device: Device,
    version: Version,
    status: str,
    regulator: str = "",
    reference: str = "",
    registered_on: date | None = None,
) -> DeviceVersion:
    """A new version row of ``device`` with its registration (the caller adds it)."""
    row = DeviceVersion(
        device=device,
        version=str(version),
        major=version.major,
        minor=version.minor,
        corrective=version.corrective,
        bugfix=version.bugfix,
        created_at=_now(),
    )
    row.registration = Registration(
        status=status,
        regulator=regulator,
        reference=reference,
        registered_on=registered_on,
        created_at=_now(),
    )
    return row


def _field_stream(session: Session, stream: StreamKey) -> tuple[DeviceVersion, Site]:
    """The version and site of a stream seen in the field, added (unregistered) if new."""
    version = _field_version(session, stream.device_id, stream.device_version, stream.task)
    site = session.scalars(select(Site).where(Site.site_key == stream.site_id)).first()
    if site is None:
        site = Site(site_key=stream.site_id, name="", created_at=_now())
        session.add(site)
        session.flush()
    return version, site


def _field_version(session: Session, device_id: str, text: str, task: str) -> DeviceVersion:
    """A version (and its task) seen in the field, added unregistered if the registry lacks it."""
    parsed = Version.parse(text)
    device = _device(session, device_id, missing_ok=True)
    if device is None:
        device = Device(device_key=device_id, name="", manufacturer="")
        device.created_at = _now()
        session.add(device)
    version = _version(session, device, parsed, missing_ok=True)
    if version is None:
        version = _new_version(device, parsed, "unregistered")
        session.add(version)
    if not any(existing.name == task for existing in device.tasks):
        device.tasks.append(Task(name=task, description=""))
    session.flush()
    return version


def _device(session: Session, device_id: str, *, missing_ok: bool = False) -> Device:
    row = session.scalars(select(Device).where(Device.device_key == device_id)).first()
    if row is None and not missing_ok:
        raise NotFound(f"no device {device_id!r} in the registry; add it first")
    return row  # type: ignore[return-value]


def _version(
    session: Session, device: Device, version: Version, *, missing_ok: bool = False
) -> DeviceVersion:
    row = session.scalars(
        select(DeviceVersion).where(
            DeviceVersion.device_id == device.id, DeviceVersion.version == str(version)
        )
    ).first()
    if row is None and not missing_ok:
        raise NotFound(f"no version {version} of device {device.device_key!r}; add it first")
    return row  # type: ignore[return-value]


def _registration(session: Session, device_id: str, version: Version) -> Registration:
    row = _version(session, _device(session, device_id), version)
    if row.registration is None:
        raise NotFound(f"{device_id} {version} has no registration record")
    return row.registration


def _claim_row(
    registration: Registration, task: str, metric: str, device_id: str, version: Version
) -> ClaimRow:
    row = next((c for c in registration.claims if c.task.name == task and c.metric == metric), None)
    if row is None:
        claimed = ", ".join(f"{c.task.name} {c.metric}" for c in registration.claims) or "none"
        raise NotFound(f"{device_id} {version} claims no {metric} for {task} (claims: {claimed})")
    return row


def _check_claim_change(
    registration: Registration, change: str, why: str, device_id: str, version: Version
) -> None:
    try:
        check_claim_change(registration.status, change, why)
    except RegistryChangeRefused as refusal:
        raise EvidenceError(f"{device_id} {version}: {refusal}") from None


def _claim_record(row: ClaimRow) -> dict[str, Any]:
    """A claim row as its audit entries keep it: the claim and its intended use."""
    return {
        **_claim(row).model_dump(mode="json"),
        "intended_acquisitions": list(row.intended_acquisitions),
        "intended_populations": list(row.intended_populations),
    }


def _registration_record(registration: Registration) -> dict[str, Any]:
    """A registration's fields as its audit entries keep them."""
    return {
        "status": registration.status,
        "regulator": registration.regulator,
        "reference": registration.reference,
        "registered_on": registration.registered_on,
    }


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


def _queue_writers(session: Session) -> None:
    """On PostgreSQL, wait for other writers' transactions, and make them wait for this one.

    So two transactions never chain onto the same audit entry, nor both open an alert for
    one stream and detector. (On SQLite a write transaction already holds the one writer
    lock from its BEGIN IMMEDIATE: :func:`_serialize_sqlite_writers`.)
    """
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("LOCK TABLE audit_entries IN SHARE ROW EXCLUSIVE MODE"))


_WRITES = "evidence_writes"
"""Execution option marking the store's write transactions (and migrations)."""
SQLITE_BUSY_TIMEOUT_MS = 60_000
"""How long a SQLite writer waits for another's lock before "database is locked"."""


def _serialize_sqlite_writers(engine: Engine) -> None:
    """Make SQLite write transactions take the writer lock at BEGIN, before their reads.

    pysqlite would BEGIN only at the first INSERT or UPDATE, after the reads that decided
    what to write, so two writers could both find no unresolved alert and both open one.
    As SQLAlchemy documents, pysqlite's BEGIN is disabled and the engine emits its own.
    """
    event.listen(engine, "connect", _take_over_sqlite_begin)
    event.listen(engine, "begin", _begin_sqlite_transaction)


def _take_over_sqlite_begin(connection: DBAPIConnection, _: ConnectionPoolEntry) -> None:
    connection.isolation_level = None  # pysqlite emits no BEGIN of its own
    cursor = connection.cursor()
    cursor.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")
    cursor.close()


def _begin_sqlite_transaction(connection: Connection) -> None:
    """Writes begin IMMEDIATE (queued behind other writers); reads deferred, so a writer's
    lock does not hold them up and they still see one consistent snapshot."""
    writes = connection.get_execution_options().get(_WRITES, False)
    connection.exec_driver_sql("BEGIN IMMEDIATE" if writes else "BEGIN")


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


def _claim(row: ClaimRow) -> Claim:
    return Claim(
        task=row.task.name,
        metric=row.metric,  # type: ignore[arg-type]
        value=row.value,
        ci_lower=row.ci_lower,
        ci_upper=row.ci_upper,
        test_database=row.test_database,
    )


def _change(row: ChangeRecordRow) -> ChangeRecord:
    return ChangeRecord(
        kind=ChangeKind(row.kind),
        description=row.description,
        training_fraction_changed=row.training_fraction_changed,
    )


def _version_view(row: DeviceVersion) -> VersionView:
    registration = row.registration
    return VersionView(
        device_id=row.device.device_key,
        version=Version.parse(row.version),
        registration_status=registration.status if registration else "unregistered",
        regulator=registration.regulator if registration else "",
        reference=registration.reference if registration else "",
        registered_on=registration.registered_on if registration else None,
        change=_change(row.change) if row.change else None,
        claims=tuple(_claim(c) for c in registration.claims) if registration else (),
        reference_prevalence=row.reference_prevalence,
    )


def _device_view(row: Device) -> DeviceView:
    versions = sorted((_version_view(v) for v in row.versions), key=lambda v: v.version)
    return DeviceView(
        device_id=row.device_key,
        name=row.name,
        manufacturer=row.manufacturer,
        tasks=tuple(task.name for task in row.tasks),
        versions=tuple(versions),
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
        last_recurred_at=None if last_recurred_at is None else _aware(last_recurred_at),
        highest_severity=highest_severity((row.severity, *recurred_severities)),
    )
