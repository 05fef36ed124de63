"""What the evidence store's reads return: plain frozen views, never ORM objects tied to a
session, so the pure modules (snapshots, rebaselining, reports) can take them without the
store."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime

from evidence.lifecycle import AlertStatus
from postmarket.contracts.events import Alert, Claim, Severity, StreamKey
from postmarket.versions import ChangeRecord, Version


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
    withdrawn_claims: tuple[WithdrawnClaim, ...] = ()
    """Claims withdrawn from the version, kept as its registration's record: never in
    ``claims``, never monitored."""


@dataclass(frozen=True)
class WithdrawnClaim:
    """A claim withdrawn from a version's registration: what it was, when, by whom, why."""

    claim: Claim
    withdrawn_at: datetime
    withdrawn_by: str
    why: str


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
class ReviewView:
    """A recorded review decision: a claim-based alert of a site's stream was reviewed and
    resolved, so the stream's rejected claims tests restarted (each a new test, paid for by
    the fleet false-alarm budget) with the CUSUMs that had alarmed since."""

    decision_id: str
    stream: StreamKey
    alert_id: str
    """The alert whose review the decision closed."""
    detector: str
    """The alert's detector (a CUSUM, a claims test, an estimate, ...)."""
    alert_raised_at: datetime
    decided_at: datetime
    """In UTC, whatever offset the decision was published with."""
    decided_by: str
    reason: str


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
