"""The evidence store's tables as typed SQLAlchemy 2 ORM classes.

The schema itself is created by the Alembic revisions in ``migrations/`` (a test checks
they agree with these classes); these classes are how the store reads and writes it.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    CheckConstraint,
    Date,
    DateTime,
    Dialect,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship
from sqlalchemy.types import TypeDecorator

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class UTCDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes in and out, on SQLite (which keeps no zone) as on PostgreSQL."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r}: the evidence store keeps aware times")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {datetime: UTCDateTime(), dict[str, Any]: JSON(), list[str]: JSON()}


class Device(Base):
    """A medical-AI device (product), identified as in the event contracts."""

    __tablename__ = "devices"

    id: Mapped[int] = mapped_column(primary_key=True)
    device_key: Mapped[str] = mapped_column(String(128), unique=True)
    name: Mapped[str] = mapped_column(String(256), default="")
    manufacturer: Mapped[str] = mapped_column(String(256), default="")
    created_at: Mapped[datetime]

    tasks: Mapped[list[Task]] = relationship(back_populates="device", order_by="Task.name")
    versions: Mapped[list[DeviceVersion]] = relationship(back_populates="device")


class Task(Base):
    """One clinical task a device performs (e.g. referable diabetic retinopathy)."""

    __tablename__ = "tasks"
    __table_args__ = (UniqueConstraint("device_id", "name"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    device_id: Mapped[int] = mapped_column(ForeignKey("devices.id"))
    name: Mapped[str] = mapped_column(String(128))
    description: Mapped[str] = mapped_column(Text, default="")

    device: Mapped[Device] = relationship(back_populates="tasks")


class DeviceVersion(Base):
    """One S.Y.Z.B version of a device; the parts are kept as integers so SQL can order them."""

    __tablename__ = "device_versions"
    __table_args__ = (
        UniqueConstraint("device_id", "version"),
        CheckConstraint(
            "reference_prevalence > 0 AND reference_prevalence < 1",
            name="reference_prevalence_between_0_and_1",
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    device_id: Mapped[int] = mapped_column(ForeignKey("devices.id"))
    version: Mapped[str] = mapped_column(String(32))
    major: Mapped[int] = mapped_column(Integer)
    minor: Mapped[int] = mapped_column(Integer)
    corrective: Mapped[int] = mapped_column(Integer)
    bugfix: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime]
    reference_prevalence: Mapped[float | None] = mapped_column(Float)
    """Prevalence of the reference (validation) population at which the version's scores are
    calibrated, strictly between 0 and 1 (revision 7); None when unknown."""

    device: Mapped[Device] = relationship(back_populates="versions")
    registration: Mapped[Registration | None] = relationship(back_populates="version")
    change: Mapped[ChangeRecordRow | None] = relationship(back_populates="version")


class Registration(Base):
    """A version's registration with a regulator (status, reference, date)."""

    __tablename__ = "registrations"

    id: Mapped[int] = mapped_column(primary_key=True)
    version_id: Mapped[int] = mapped_column(ForeignKey("device_versions.id"), unique=True)
    status: Mapped[str] = mapped_column(String(16))
    regulator: Mapped[str] = mapped_column(String(64), default="")
    reference: Mapped[str] = mapped_column(String(128), default="")
    registered_on: Mapped[date | None] = mapped_column(Date)
    created_at: Mapped[datetime]

    version: Mapped[DeviceVersion] = relationship(back_populates="registration")
    claims: Mapped[list[ClaimRow]] = relationship(
        back_populates="registration", order_by="ClaimRow.id"
    )
    """Every claim ever added, withdrawn ones too, in the order they were added."""


CURRENT_CLAIM = "withdrawn_at IS NULL"
"""The claims a version holds now; withdrawn ones stay as its registration's record."""


class ClaimRow(Base):
    """A claimed performance (metric with CI) for one task, from the registration testing.

    A withdrawn claim is kept, with when, by whom and why (revision 11): only the current
    ones (``withdrawn_at`` NULL) are monitored, and only they are one per task and metric.
    """

    __tablename__ = "claims"
    __table_args__ = (
        Index(
            "uq_claims_current_registration_id_task_id_metric",
            "registration_id",
            "task_id",
            "metric",
            unique=True,
            sqlite_where=text(CURRENT_CLAIM),
            postgresql_where=text(CURRENT_CLAIM),
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    registration_id: Mapped[int] = mapped_column(ForeignKey("registrations.id"))
    task_id: Mapped[int] = mapped_column(ForeignKey("tasks.id"))
    metric: Mapped[str] = mapped_column(String(16))
    value: Mapped[float] = mapped_column(Float)
    ci_lower: Mapped[float] = mapped_column(Float)
    ci_upper: Mapped[float] = mapped_column(Float)
    test_database: Mapped[str] = mapped_column(String(256))
    intended_acquisitions: Mapped[list[str]]
    intended_populations: Mapped[list[str]]
    withdrawn_at: Mapped[datetime | None]
    withdrawn_by: Mapped[str | None] = mapped_column(String(256))
    withdrawn_why: Mapped[str | None] = mapped_column(Text)

    registration: Mapped[Registration] = relationship(back_populates="claims")
    task: Mapped[Task] = relationship()


class ChangeRecordRow(Base):
    """What changed to make a version: kind, description, fraction of training data changed."""

    __tablename__ = "change_records"

    id: Mapped[int] = mapped_column(primary_key=True)
    version_id: Mapped[int] = mapped_column(ForeignKey("device_versions.id"), unique=True)
    kind: Mapped[str] = mapped_column(String(32))
    description: Mapped[str] = mapped_column(Text, default="")
    training_fraction_changed: Mapped[float | None] = mapped_column(Float)
    created_at: Mapped[datetime]

    version: Mapped[DeviceVersion] = relationship(back_populates="change")


class SignalColumns:
    """What an alert and each of its recurrences keep of a raised signal: its own id, the
    statistic against the threshold, the evidence counts, the case span and severity, and
    for a CUSUM's signal when the change began (revision 12; NULL: no estimate)."""

    alert_id: Mapped[str] = mapped_column(String(36), unique=True)
    statistic: Mapped[float] = mapped_column(Float)
    threshold: Mapped[float] = mapped_column(Float)
    evidence: Mapped[dict[str, Any]]
    first_case_time: Mapped[datetime]
    last_case_time: Mapped[datetime]
    raised_at: Mapped[datetime]
    severity: Mapped[str] = mapped_column(String(16))
    message: Mapped[str] = mapped_column(Text)
    change_began_at: Mapped[datetime | None]


class AlertRow(SignalColumns, Base):
    """An alert as raised (the contract's fields) plus its lifecycle: who, when and why."""

    __tablename__ = "alerts"
    __table_args__ = (
        # Finds the unresolved alert of a stream's detector, which a new signal recurs
        # (revision 8).
        Index(
            "ix_alerts_stream_detector_status",
            "device_key", "device_version", "site_key", "task", "detector", "status",
        ),
    )  # fmt: skip

    id: Mapped[int] = mapped_column(primary_key=True)
    device_key: Mapped[str] = mapped_column(String(128))
    device_version: Mapped[str] = mapped_column(String(32))
    site_key: Mapped[str] = mapped_column(String(128))
    task: Mapped[str] = mapped_column(String(128))
    detector: Mapped[str] = mapped_column(String(128))
    status: Mapped[str] = mapped_column(String(16))
    acknowledged_by: Mapped[str | None] = mapped_column(String(128))
    acknowledged_at: Mapped[datetime | None]
    acknowledgement: Mapped[str | None] = mapped_column(Text)
    resolved_by: Mapped[str | None] = mapped_column(String(128))
    resolved_at: Mapped[datetime | None]
    resolution: Mapped[str | None] = mapped_column(Text)


class AlertRecurrenceRow(SignalColumns, Base):
    """A later signal of an alert's stream and detector while the alert was unresolved
    (revision 8): kept whole, with its own alert id, but not a new alert to triage.

    The stream and detector are the recurred alert's.
    """

    __tablename__ = "alert_recurrences"

    id: Mapped[int] = mapped_column(primary_key=True)
    recurred_id: Mapped[int] = mapped_column(ForeignKey("alerts.id"), index=True)


class AuditEntryRow(Base):
    """One append-only audit entry; ``entry_hash`` chains it to ``previous_hash``."""

    __tablename__ = "audit_entries"
    # Reads by meaning select an action, then a subject (revision 13): plans, decisions.
    __table_args__ = (Index("ix_audit_entries_action_subject", "action", "subject"),)

    sequence: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    recorded_at: Mapped[str] = mapped_column(String(40))
    actor: Mapped[str] = mapped_column(String(128))
    action: Mapped[str] = mapped_column(String(64))
    subject: Mapped[str] = mapped_column(String(512))
    payload: Mapped[str] = mapped_column(Text)
    previous_hash: Mapped[str] = mapped_column(String(64), unique=True)
    entry_hash: Mapped[str] = mapped_column(String(64), unique=True)


class Site(Base):
    """A hospital site running the collector (revision 2)."""

    __tablename__ = "sites"

    id: Mapped[int] = mapped_column(primary_key=True)
    site_key: Mapped[str] = mapped_column(String(128), unique=True)
    name: Mapped[str] = mapped_column(String(256), default="")
    created_at: Mapped[datetime]


class VersionSighting(Base):
    """The first prediction of a version for a task at a site (revision 2)."""

    __tablename__ = "version_sightings"
    __table_args__ = (UniqueConstraint("version_id", "site_id", "task"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    version_id: Mapped[int] = mapped_column(ForeignKey("device_versions.id"))
    site_id: Mapped[int] = mapped_column(ForeignKey("sites.id"))
    task: Mapped[str] = mapped_column(String(128))
    first_seen_at: Mapped[datetime]


class PerformanceSnapshot(Base):
    """Observed performance of a version for a task over a window (revision 2).

    ``site_id`` None means all sites; ``stratum`` names an acquisition stratum such as
    ``slice_thickness_band=sub_mm`` (empty for all); ``study_design`` says prospective or
    retrospective; ``followup_completeness`` is the share of cases with final ground truth.
    """

    __tablename__ = "performance_snapshots"

    id: Mapped[int] = mapped_column(primary_key=True)
    version_id: Mapped[int] = mapped_column(ForeignKey("device_versions.id"))
    task_id: Mapped[int] = mapped_column(ForeignKey("tasks.id"))
    site_id: Mapped[int | None] = mapped_column(ForeignKey("sites.id"))
    stratum: Mapped[str] = mapped_column(String(256), default="")
    metric: Mapped[str] = mapped_column(String(16))
    successes: Mapped[int] = mapped_column(Integer)
    trials: Mapped[int] = mapped_column(Integer)
    ci_lower: Mapped[float] = mapped_column(Float)
    ci_upper: Mapped[float] = mapped_column(Float)
    window_start: Mapped[datetime]
    window_end: Mapped[datetime]
    study_design: Mapped[str] = mapped_column(String(16))
    followup_completeness: Mapped[float] = mapped_column(Float)
    recorded_at: Mapped[datetime]


class FieldOutcome(Base):
    """One outcome event from the field: a prediction joined with its final truth (revision 3).

    ``event_id`` is the outcome's own id (derived from the prediction's), unique, so a
    redelivered or re-emitted outcome is stored once. Acquisition features are kept as columns
    so reports can stratify by slice-thickness band, manufacturer and model.
    """

    __tablename__ = "field_outcomes"
    __table_args__ = (
        # Covers the fleet review's per-site GROUP BY (revision 5): an index-only scan.
        Index(
            "ix_field_outcomes_site_counts",
            "device_key", "device_version", "task", "site_key",
            "label", "decision", "study_design", "prediction_time",
        ),
        # Covers the snapshot refresh's per-week GROUP BY, of all weeks or of a few read by
        # prediction-time range (revision 6).
        Index(
            "ix_field_outcomes_week_counts",
            "device_key", "prediction_time", "device_version", "task", "site_key",
            "study_design", "label", "decision",
        ),
    )  # fmt: skip

    id: Mapped[int] = mapped_column(primary_key=True)
    event_id: Mapped[str] = mapped_column(String(36), unique=True)
    device_key: Mapped[str] = mapped_column(String(128), index=True)
    device_version: Mapped[str] = mapped_column(String(32))
    site_key: Mapped[str] = mapped_column(String(128))
    task: Mapped[str] = mapped_column(String(128))
    case_pseudonym: Mapped[str] = mapped_column(String(128))
    prediction_event_id: Mapped[str] = mapped_column(String(36))
    prediction_time: Mapped[datetime]
    truth_time: Mapped[datetime]
    decision: Mapped[str] = mapped_column(String(16))
    label: Mapped[str] = mapped_column(String(16))
    score: Mapped[float] = mapped_column(Float)
    operating_threshold: Mapped[float] = mapped_column(Float)
    truth_source: Mapped[str] = mapped_column(String(32))
    study_design: Mapped[str] = mapped_column(String(16))
    modality: Mapped[str | None] = mapped_column(String(16))
    manufacturer: Mapped[str | None] = mapped_column(String(64))
    model: Mapped[str | None] = mapped_column(String(64))
    slice_thickness_mm: Mapped[float | None] = mapped_column(Float)
    slice_thickness_band: Mapped[str | None] = mapped_column(String(16))
    recorded_at: Mapped[datetime]
    first_read: Mapped[str | None] = mapped_column(String(16))
    """First-round blinded read (revision 4); None when the case had no read pair."""
    second_read: Mapped[str | None] = mapped_column(String(16))


class FieldPrediction(Base):
    """One prediction event seen in the field, with or without truth yet (revision 3).

    The denominator of follow-up completeness: outcomes over predictions, per design.
    """

    __tablename__ = "field_predictions"
    __table_args__ = (
        # Covers the snapshot refresh's per-week GROUP BY, of all weeks or of a few read by
        # prediction-time range (revision 6).
        Index(
            "ix_field_predictions_week_counts",
            "device_key", "prediction_time", "device_version", "task", "site_key",
            "study_design",
        ),
    )  # fmt: skip

    id: Mapped[int] = mapped_column(primary_key=True)
    event_id: Mapped[str] = mapped_column(String(36), unique=True)
    device_key: Mapped[str] = mapped_column(String(128), index=True)
    device_version: Mapped[str] = mapped_column(String(32))
    site_key: Mapped[str] = mapped_column(String(128))
    task: Mapped[str] = mapped_column(String(128))
    prediction_time: Mapped[datetime]
    study_design: Mapped[str] = mapped_column(String(16))
    recorded_at: Mapped[datetime]


class TestDatabaseVersion(Base):
    """One frozen version of a standard test database (revision 9): what a claim was
    measured on, named by its content hash."""

    __test__ = False  # a domain name, not a pytest class
    __tablename__ = "test_databases"
    __table_args__ = (UniqueConstraint("name", "version"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(128))
    version: Mapped[str] = mapped_column(String(64))
    task: Mapped[str] = mapped_column(String(128))
    description: Mapped[str] = mapped_column(Text)
    content_sha256: Mapped[str] = mapped_column(String(64))
    case_count: Mapped[int] = mapped_column(Integer)
    strata: Mapped[list[str]]
    """The strata its cases record, beyond the standard ones."""
    based_on: Mapped[str | None] = mapped_column(String(64))
    """The version this one was made from, if any."""
    source: Mapped[str] = mapped_column(String(256))
    """The case file it was imported from (its name and SHA-256)."""
    imported_at: Mapped[datetime]
    imported_by: Mapped[str] = mapped_column(String(256))
    cases: Mapped[list[TestDatabaseCaseRow]] = relationship(
        back_populates="database", cascade="all, delete-orphan"
    )


class TestDatabaseCaseRow(Base):
    """One case of a test database version: its reference standard and strata."""

    __test__ = False
    __tablename__ = "test_database_cases"
    __table_args__ = (UniqueConstraint("database_id", "case_pseudonym"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    database_id: Mapped[int] = mapped_column(ForeignKey("test_databases.id"), index=True)
    case_pseudonym: Mapped[str] = mapped_column(String(128))
    label: Mapped[str] = mapped_column(String(16))
    truth_source: Mapped[str] = mapped_column(String(32))
    first_read: Mapped[str | None] = mapped_column(String(16))
    second_read: Mapped[str | None] = mapped_column(String(16))
    adjudication: Mapped[str | None] = mapped_column(String(16))
    strata: Mapped[dict[str, Any]]
    database: Mapped[TestDatabaseVersion] = relationship(back_populates="cases")


class TestDatabaseGateRun(Base):
    """One run of the standard test database gate (revision 10): a candidate version's
    outputs on a database version, scored against its claims under a stated policy."""

    __test__ = False
    __tablename__ = "test_database_gate_runs"
    __table_args__ = (
        # The registry asks for a version's latest run (revision 10).
        Index("ix_test_database_gate_runs_version", "device_key", "device_version", "run_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    run_id: Mapped[str] = mapped_column(String(36), unique=True)
    device_key: Mapped[str] = mapped_column(String(128))
    device_version: Mapped[str] = mapped_column(String(32))
    database_name: Mapped[str] = mapped_column(String(128))
    database_version: Mapped[str] = mapped_column(String(64))
    database_sha256: Mapped[str] = mapped_column(String(64))
    """The database version's content hash when it was scored."""
    predictions_sha256: Mapped[str] = mapped_column(String(64))
    predictions_source: Mapped[str] = mapped_column(String(256))
    task: Mapped[str] = mapped_column(String(128))
    cases: Mapped[int] = mapped_column(Integer)
    policy: Mapped[dict[str, Any]]
    passed: Mapped[bool]
    run_at: Mapped[datetime]
    run_by: Mapped[str] = mapped_column(String(256))
    rows: Mapped[list[TestDatabaseGateVerdictRow]] = relationship(
        back_populates="run", cascade="all, delete-orphan", order_by="TestDatabaseGateVerdictRow.id"
    )


class TestDatabaseGateVerdictRow(Base):
    """One row of a gate run's verdict: a claim's metric in one stratum, judged or reported."""

    __test__ = False
    __tablename__ = "test_database_gate_rows"

    id: Mapped[int] = mapped_column(primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("test_database_gate_runs.id"), index=True)
    metric: Mapped[str] = mapped_column(String(16))
    stratum: Mapped[str] = mapped_column(String(64))
    value: Mapped[str] = mapped_column(String(128))
    n: Mapped[int] = mapped_column(Integer)
    successes: Mapped[int | None] = mapped_column(Integer)
    estimate: Mapped[float | None] = mapped_column(Float)
    lower: Mapped[float | None] = mapped_column(Float)
    upper: Mapped[float | None] = mapped_column(Float)
    interval: Mapped[str] = mapped_column(String(32))
    acceptable: Mapped[float | None] = mapped_column(Float)
    criterion: Mapped[str] = mapped_column(String(64))
    met: Mapped[bool | None]
    """None: reported, not judged."""
    funnel: Mapped[str | None] = mapped_column(String(8))
    note: Mapped[str] = mapped_column(Text)
    run: Mapped[TestDatabaseGateRun] = relationship(back_populates="rows")
