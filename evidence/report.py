"""The post-market report's content: every number a regulator reads, computed from the store.

:func:`build_report` reads the store once and returns a :class:`DeviceReport` of plain
values; :mod:`evidence.report_render` turns it into one self-contained HTML file
(and PDF). The statistics are the ``detectors`` library's: Wilson intervals, the anytime-valid
beta-binomial claims test, funnel limits and DerSimonian-Laird heterogeneity. Each section's
content is its own module: the counting they share (``report_outcomes``), claims
(``report_claims``), sites (``report_sites``), strata (``report_strata``), versions
(``report_versions``), the gate (``report_gate``), ground truth (``report_truth``), alerts
(``report_alerts``) and the alarms' promise (``report_promise``).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta

from evidence.audit import ChainVerdict, verify_chain
from evidence.report_alerts import alert_in_window
from evidence.report_claims import (
    CLAIMS_ALPHA,
    ClaimCheck,
    WithdrawnClaimRow,
    claim_checks,
    withdrawn_claims,
)
from evidence.report_gate import GateEvidence, gate_evidence
from evidence.report_outcomes import DesignCounts
from evidence.report_promise import AlarmPromise, SurveillancePlan
from evidence.report_sites import Heterogeneity, SiteRow, site_analysis
from evidence.report_strata import StratumRow, strata_analysis
from evidence.report_truth import (
    CompletenessRow,
    ReaderAgreementRow,
    completeness_rows,
    reader_agreement_rows,
)
from evidence.report_versions import VersionRow, version_history
from evidence.snapshots import Snapshot, performance_snapshots
from evidence.store import (
    AlertView,
    DeviceView,
    EvidenceStore,
    OutcomeRecord,
)
from evidence.views import ReviewView
from postmarket.config import Settings
from postmarket.contracts.events import utc_now
from postmarket.versions import ChangeControlPolicy

MIN_WEEKLY_CASES = 10
"""A week with fewer judged cases is left out of the weekly line: a partial last week of
one case would otherwise plot as a sensitivity of 0 or 1."""


@dataclass(frozen=True)
class DeviceReport:
    """Everything the report shows, for one device over ``[start, end)``."""

    device: DeviceView
    start: datetime
    end: datetime
    generated_at: datetime
    policy: ChangeControlPolicy
    outcomes: tuple[OutcomeRecord, ...]
    claims: tuple[ClaimCheck, ...]
    sites: tuple[SiteRow, ...]
    heterogeneity: tuple[Heterogeneity, ...]
    strata: tuple[StratumRow, ...]
    alerts: tuple[AlertView, ...]
    versions: tuple[VersionRow, ...]
    completeness: tuple[CompletenessRow, ...]
    truth_sources: dict[str, int]
    audit: ChainVerdict
    reader_agreement: tuple[ReaderAgreementRow, ...] = ()
    weekly: tuple[Snapshot, ...] = ()
    """Per version, design and ISO week, all sites pooled: performance over time."""
    promise: AlarmPromise | None = None
    gates: GateEvidence = GateEvidence()
    """The standard test database gate's stored verdicts on the device's versions."""
    withdrawn_claims: tuple[WithdrawnClaimRow, ...] = ()
    """Claims withdrawn from the device's versions by the period's end: shown, never in
    ``claims`` nor in any figure or test."""
    reviews: tuple[ReviewView, ...] = ()
    """The review decisions taken in the period (by decision time), oldest first: each
    restarted a stream's rejected claims tests. Shown (and exported) only when there is one,
    so a period without one keeps the document it had before reviews existed."""

    @property
    def design(self) -> DesignCounts:
        return DesignCounts.of(self.outcomes)

    @property
    def last_day(self) -> date:
        """The period's last day, included, as ``--to`` gave it (``end`` is the day after)."""
        return (self.end - timedelta(days=1)).date()

    @property
    def period(self) -> str:
        return f"{self.start:%Y-%m-%d} to {self.last_day:%Y-%m-%d}"

    def predictions(self, study_design: str) -> int:
        return sum(r.predictions for r in self.completeness if r.study_design == study_design)

    def followed_up(self, study_design: str) -> int:
        return sum(r.outcomes for r in self.completeness if r.study_design == study_design)

    def alert_design(self) -> DesignCounts:
        """Outcomes on the streams that raised the alerts shown."""
        alerted = {a.alert.stream for a in self.alerts}
        return DesignCounts.of(o for o in self.outcomes if o.stream in alerted)

    def findings(self) -> list[str]:
        """The summary's sentences: what a regulator must know first."""
        lines: list[str] = []
        below = [c for c in self.claims if c.verdict == "below claim"]
        tested = [c for c in self.claims if c.verdict in ("below claim", "consistent")]
        if below:
            lines += [
                f"Version {c.version} ({c.task}): observed {c.metric} is below the registered "
                f"claim of {c.claim.value:.1%} (claims test rejected at case {c.decided_at_case})."
                for c in below
                if c.claim is not None
            ]
        if tested and not below:
            lines.append(
                f"All {len(tested)} tested claims are consistent with the field data "
                f"(anytime-valid claims test, alpha {CLAIMS_ALPHA})."
            )
        unregistered = [v for v in self.versions if v.needs_registration and v.sites]
        lines += [
            f"Version {v.version} ran at {v.sites} site(s) and needs change registration "
            f"under {self.policy.name} (status: {v.status})."
            for v in unregistered
        ]
        lines += [
            f"Version {v.version} ran in the field from {v.first_seen:%Y-%m-%d}, before its "
            f"registration on {v.registered_on:%Y-%m-%d}."
            for v in self.versions
            if v.seen_before_registration and v.first_seen and v.registered_on
        ]
        outside = [
            f"{row.site} ({row.version}, {metric})"
            for row in self.sites
            for metric, position in row.funnel.items()
            if position == "below"
        ]
        if outside:
            lines.append("Sites below the 99.8 % funnel limit: " + ", ".join(outside) + ".")
        opened = [a for a in self.alerts if a.status.value != "resolved"]
        recurred = sum(a.recurrences for a in self.alerts)
        lines.append(
            f"{len(self.alerts)} alert(s) in the window, {len(opened)} not yet resolved"
            + (f"; they recurred {recurred} time(s)." if recurred else ".")
        )
        prospective, retrospective = self.design.prospective, self.design.retrospective
        lines.append(
            f"{self.design.total} outcomes: {prospective} prospective (live) and "
            f"{retrospective} retrospective (replayed)."
        )
        if self.reviews:
            streams = len({review.stream for review in self.reviews})
            lines.append(
                f"{len(self.reviews)} review decision(s) in the period restarted any rejected "
                f"claims test of {streams} stream(s) (see Review decisions); each restart is a "
                "new test, paid for by the fleet false-alarm budget."
            )
        if self.promise is not None:
            lines.append(self.promise.sentence())
        if not self.audit.intact:
            lines.append(f"THE AUDIT TRAIL IS BROKEN at {self.audit.problem}.")
        return lines


def window(start: date, end: date) -> tuple[datetime, datetime]:
    """``[start 00:00, end + 1 day 00:00)`` in UTC: both dates included."""
    if end < start:
        raise ValueError(f"--to {end} is before --from {start}")
    return (
        datetime.combine(start, time(), tzinfo=UTC),
        datetime.combine(end + timedelta(days=1), time(), tzinfo=UTC),
    )


def build_report(
    store: EvidenceStore,
    device_id: str,
    start: date,
    end: date,
    policy: ChangeControlPolicy,
    plan: SurveillancePlan | None = None,
    *,
    gates_in_period: bool = False,
) -> DeviceReport:
    """Read the store and compute the report of ``device_id`` for days ``start`` to ``end``;
    ``plan`` defaults to the configured one (:class:`postmarket.config.Settings`).

    The gate section holds every stored gate verdict of the device's versions, or with
    ``gates_in_period`` (the PSUR) only those run in the period."""
    begin, stop = window(start, end)
    device = store.device(device_id)
    trail = store.audit_entries()
    gates = (
        gate_evidence(store, device, begin, stop, trail)
        if gates_in_period
        else gate_evidence(store, device, audit=trail)
    )
    outcomes = store.outcomes(device_id, begin, stop)
    predictions = store.prediction_counts(device_id, begin, stop)
    alerts = [view for view in store.device_alerts(device_id) if alert_in_window(view, begin, stop)]
    sites, heterogeneity = site_analysis(outcomes)
    return DeviceReport(
        device=device,
        start=begin,
        end=stop,
        generated_at=utc_now(),
        policy=policy,
        outcomes=tuple(outcomes),
        claims=tuple(claim_checks(device.versions, outcomes)),
        withdrawn_claims=tuple(withdrawn_claims(device.versions, stop)),
        sites=tuple(sites),
        heterogeneity=tuple(heterogeneity),
        strata=tuple(strata_analysis(outcomes)),
        alerts=tuple(alerts),
        versions=tuple(version_history(device, outcomes, policy, store.first_sightings(device_id))),
        completeness=tuple(completeness_rows(predictions, outcomes)),
        truth_sources=dict(Counter(o.truth_source for o in outcomes)),
        audit=verify_chain(trail),
        reader_agreement=tuple(reader_agreement_rows(outcomes)),
        weekly=tuple(s for s in performance_snapshots(outcomes, []) if s.site is None),
        promise=AlarmPromise(
            plan or SurveillancePlan.from_settings(Settings()),
            streams=len({o.stream for o in outcomes} | {a.alert.stream for a in alerts}),
            years=(stop - begin) / timedelta(days=365),
            alerts_raised=len(alerts),
        ),
        gates=gates,
        reviews=tuple(store.review_decisions(device_id, begin, stop)),
    )
