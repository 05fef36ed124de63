"""The report's tables as plain rows: its CSV and JSON export, its content hash and its id.

Every table the report shows is here with full precision and full alert ids, so a regulator
can recompute or cite any figure. The content hash is SHA-256 of these tables in canonical
JSON: the same store and arguments give the same hash (the generation time is left out),
and the document id is derived from it, so two reports with one id say the same thing.
"""

from __future__ import annotations

import csv
import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from functools import partial
from pathlib import Path

from evidence.report import DeviceReport
from evidence.report_alerts import alert_metric, alert_observation, change_point
from evidence.report_gate import criterion_sentence
from evidence.report_outcomes import Proportion
from evidence.store import short_alert_id

Cell = str | int | float | bool | None


@dataclass(frozen=True)
class ReportTable:
    """One table of the report: a name (the CSV file's stem), column names and rows."""

    name: str
    columns: tuple[str, ...]
    rows: tuple[tuple[Cell, ...], ...]

    def records(self) -> list[dict[str, Cell]]:
        return [dict(zip(self.columns, row, strict=True)) for row in self.rows]


def _cell(value: object) -> Cell:
    if value is None or isinstance(value, str | int | float | bool):
        return value
    if isinstance(value, datetime | date):
        return value.isoformat()
    return str(value)


def table_of(name: str, columns: Sequence[str], rows: Sequence[Sequence[object]]) -> ReportTable:
    """A table of plain cells (datetimes and dates as ISO text)."""
    return ReportTable(
        name, tuple(columns), tuple(tuple(_cell(value) for value in row) for row in rows)
    )


def _proportion(prefix: str, observed: Proportion | None) -> dict[str, object]:
    if observed is None:
        return {f"{prefix}successes": None, f"{prefix}cases": None, f"{prefix}estimate": None,
                f"{prefix}ci_lower": None, f"{prefix}ci_upper": None}  # fmt: skip
    return {
        f"{prefix}successes": observed.successes,
        f"{prefix}cases": observed.n,
        f"{prefix}estimate": observed.estimate,
        f"{prefix}ci_lower": observed.lower,
        f"{prefix}ci_upper": observed.upper,
    }


def _dict_table(
    name: str, rows: Sequence[dict[str, object]], columns: Sequence[str]
) -> ReportTable:
    return table_of(name, columns, [[row[c] for c in columns] for row in rows])


def report_tables(report: DeviceReport) -> list[ReportTable]:
    """Every table of ``report``, in report order, summary first."""
    return [
        _summary(report),
        _findings(report),
        _claims(report),
        _withdrawn_claims(report),
        _sites(report),
        _heterogeneity(report),
        _strata(report),
        _alerts(report),
        *_reviews(report),
        _versions(report),
        *_gate(report),
        _completeness(report),
        _truth_sources(report),
        _readers(report),
        _weekly(report),
    ]


def _summary(report: DeviceReport) -> ReportTable:
    device, audit = report.device, report.audit
    facts: list[tuple[str, object]] = [
        ("device", device.device_id),
        ("name", device.name),
        ("manufacturer", device.manufacturer),
        ("tasks", ", ".join(device.tasks)),
        ("first_day", report.start.date()),
        ("last_day", report.last_day),
        ("policy", report.policy.name),
        ("prospective_outcomes", report.design.prospective),
        ("retrospective_outcomes", report.design.retrospective),
        ("audit_intact", audit.intact),
        ("audit_entries", audit.entries),
        ("audit_head_hash", audit.head_hash),
    ]
    return table_of("summary", ("fact", "value"), facts)


def _findings(report: DeviceReport) -> ReportTable:
    return table_of("findings", ("finding",), [[line] for line in report.findings()])


def _claims(report: DeviceReport) -> ReportTable:
    rows = []
    for check in report.claims:
        claim = check.claim
        rows.append(
            {
                "version": check.version, "task": check.task, "metric": check.metric,
                "claimed": claim.value if claim else None,
                "claimed_ci_lower": claim.ci_lower if claim else None,
                "claimed_ci_upper": claim.ci_upper if claim else None,
                "test_database": claim.test_database if claim else None,
                **_proportion("observed_", check.observed),
                "verdict": check.verdict, "decided_at_case": check.decided_at_case,
                "decided_at": check.decided_at, "log_e_value": check.log_evidence,
                "prospective": check.design.prospective,
                "retrospective": check.design.retrospective,
            }
        )  # fmt: skip
    columns = ["version", "task", "metric", "claimed", "claimed_ci_lower", "claimed_ci_upper",
               "test_database", *_proportion("observed_", None), "verdict", "decided_at_case",
               "decided_at", "log_e_value", "prospective", "retrospective"]  # fmt: skip
    return _dict_table("claims", rows, columns)


def _withdrawn_claims(report: DeviceReport) -> ReportTable:
    columns = ("version", "task", "metric", "claimed", "claimed_ci_lower", "claimed_ci_upper",
               "test_database", "withdrawn_at", "withdrawn_by", "why")  # fmt: skip
    rows = [
        (r.version, w.claim.task, w.claim.metric, w.claim.value, w.claim.ci_lower,
         w.claim.ci_upper, w.claim.test_database, w.withdrawn_at, w.withdrawn_by, w.why)
        for r in report.withdrawn_claims
        for w in (r.withdrawn,)
    ]  # fmt: skip
    return table_of("withdrawn_claims", columns, rows)


def _sites(report: DeviceReport) -> ReportTable:
    rows = []
    for site in report.sites:
        row: dict[str, object] = {"version": site.version, "task": site.task, "site": site.site}
        for metric, observed in site.metrics.items():
            row |= _proportion(f"{metric}_", observed)
            row[f"{metric}_funnel"] = site.funnel[metric]
        row |= {"prospective": site.design.prospective, "retrospective": site.design.retrospective}
        rows.append(row)
    columns = ["version", "task", "site"]
    for metric in ("sensitivity", "specificity"):
        columns += [*_proportion(f"{metric}_", None), f"{metric}_funnel"]
    return _dict_table("sites", rows, [*columns, "prospective", "retrospective"])


def _heterogeneity(report: DeviceReport) -> ReportTable:
    columns = ("version", "task", "metric", "sites", "fleet_successes", "fleet_cases", "pooled",
               "pooled_ci_lower", "pooled_ci_upper", "i2", "tau2", "q_p_value")  # fmt: skip
    rows = [
        (h.version, h.task, h.metric, h.n_sites, h.fleet.successes, h.fleet.n, h.pooled,
         h.lower, h.upper, h.i2, h.tau2, h.q_p_value)
        for h in report.heterogeneity
    ]  # fmt: skip
    return table_of("heterogeneity", columns, rows)


def _strata(report: DeviceReport) -> ReportTable:
    rows = []
    for stratum in report.strata:
        row: dict[str, object] = {
            "task": stratum.task,
            "dimension": stratum.dimension,
            "value": stratum.value,
        }
        for metric, observed in stratum.metrics.items():
            row |= _proportion(f"{metric}_", observed)
        row |= {
            "prospective": stratum.design.prospective,
            "retrospective": stratum.design.retrospective,
        }
        rows.append(row)
    columns = ["task", "dimension", "value"]
    for metric in ("sensitivity", "specificity"):
        columns += list(_proportion(f"{metric}_", None))
    return _dict_table("strata", rows, [*columns, "prospective", "retrospective"])


def _alerts(report: DeviceReport) -> ReportTable:
    columns = ("alert_id", "short_id", "raised_at", "detector", "severity", "device_version",
               "site", "task", "statistic", "threshold", "observed_metric", "observed_successes",
               "observed_cases", "observed_estimate", "first_case_time", "last_case_time",
               "status", "acknowledged_at", "acknowledged_by", "acknowledgement", "resolved_at",
               "resolved_by", "resolution", "recurrences", "last_recurred_at",
               "highest_severity", "message", "change_run_cases", "change_began_at")  # fmt: skip
    rows = []
    for view in report.alerts:
        alert = view.alert
        observed = alert_observation(alert)
        change = change_point(alert)
        rows.append(
            (str(alert.alert_id), short_alert_id(alert.alert_id), alert.raised_at, alert.detector,
             alert.severity, alert.stream.device_version, alert.stream.site_id,
             alert.stream.task, alert.statistic, alert.threshold,
             alert_metric(alert) if observed else None,
             observed.successes if observed else None, observed.n if observed else None,
             observed.estimate if observed else None, alert.first_case_time,
             alert.last_case_time, view.status.value, view.acknowledged_at,
             view.acknowledged_by, view.acknowledgement, view.resolved_at, view.resolved_by,
             view.resolution, view.recurrences, view.last_recurred_at, view.highest_severity,
             alert.message, change[0] if change else None, change[1] if change else None)
        )  # fmt: skip
    return table_of("alerts", columns, rows)


def _reviews(report: DeviceReport) -> list[ReportTable]:
    """The period's review decisions; no table at all without one, so that a period without
    reviews keeps its tables, hash and id as they were before reviews were recorded."""
    if not report.reviews:
        return []
    columns = ("decided_at", "decided_by", "version", "site", "task", "alert_id",
               "alert_detector", "alert_raised_at", "reason", "decision_id")  # fmt: skip
    rows = [
        (r.decided_at, r.decided_by, r.stream.device_version, r.stream.site_id, r.stream.task,
         r.alert_id, r.detector, r.alert_raised_at, r.reason, r.decision_id)
        for r in report.reviews
    ]  # fmt: skip
    return [table_of("reviews", columns, rows)]


def _versions(report: DeviceReport) -> ReportTable:
    columns = ("version", "status", "regulator", "reference", "registered_on",
               "version_change", "change_record", "needs_registration", "decision",
               "first_seen", "seen_before_registration", "sites", "prospective",
               "retrospective")  # fmt: skip
    rows = [
        (v.version, v.status, v.regulator, v.reference, v.registered_on, v.version_change,
         v.change_record, v.needs_registration, v.decision, v.first_seen,
         v.seen_before_registration, v.sites, v.design.prospective, v.design.retrospective)
        for v in report.versions
    ]  # fmt: skip
    return table_of("versions", columns, rows)


def _gate(report: DeviceReport) -> list[ReportTable]:
    """The gate's runs, every stored verdict row, and each version's registration."""
    gates = report.gates
    runs = table_of(
        "gate_runs",
        ("run_id", "run_at", "run_by", "device_version", "database", "database_sha256",
         "predictions_sha256", "predictions_source", "task", "cases", "acceptance_criterion",
         "policy", "passed", "same_inputs_as"),
        [
            (run.run_id, run.run_at, run.run_by, run.version, run.database, run.database_sha256,
             run.predictions_sha256, run.predictions_source, run.task, run.cases,
             criterion_sentence(run.policy),
             json.dumps(run.policy, sort_keys=True, separators=(",", ":")), run.passed,
             gates.earlier_run(run.run_id))
            for run in gates.runs
        ],
    )  # fmt: skip
    verdicts = table_of(
        "gate_verdicts",
        ("run_id", "device_version", "database", "metric", "stratum", "value", "n",
         "successes", "estimate", "lower", "upper", "interval", "acceptable", "criterion",
         "met", "outcome", "funnel", "note"),
        [
            (run.run_id, run.version, run.database, row.metric, row.stratum, row.value, row.n,
             row.successes, row.estimate, row.lower, row.upper, row.interval, row.acceptable,
             row.criterion, row.met, row.outcome, row.funnel, row.note)
            for run in gates.runs
            for row in run.rows
        ],
    )  # fmt: skip
    registrations = table_of(
        "gate_registrations",
        ("device_version", "status", "registered_at", "latest_gate_run_before",
         "latest_gate_passed", "registered_after_passing_gate", "finding"),
        [
            (r.version, r.status, r.registered_at, r.gate_run_id, r.gate_passed,
             r.after_passing_gate, r.sentence())
            for r in gates.registrations
        ],
    )  # fmt: skip
    return [runs, verdicts, registrations]


def _completeness(report: DeviceReport) -> ReportTable:
    columns = ("version", "site", "task", "study_design", "predictions", "outcomes",
               "completeness")  # fmt: skip
    rows = [
        (r.version, r.site, r.task, r.study_design, r.predictions, r.outcomes, r.completeness)
        for r in report.completeness
    ]
    return table_of("completeness", columns, rows)


def _truth_sources(report: DeviceReport) -> ReportTable:
    rows = sorted(report.truth_sources.items())
    return table_of("truth_sources", ("truth_source", "outcomes"), rows)


def _readers(report: DeviceReport) -> ReportTable:
    columns = ("version", "task", "site", "read_pairs", "agreeing", "observed_agreement",
               "kappa", "kappa_ci_lower", "kappa_ci_upper")  # fmt: skip
    rows = [
        (r.version, r.task, r.site, r.pairs, r.agreeing, r.observed_agreement,
         r.kappa.kappa if r.kappa else None, r.kappa.lower if r.kappa else None,
         r.kappa.upper if r.kappa else None)
        for r in report.reader_agreement
    ]  # fmt: skip
    return table_of("reader_agreement", columns, rows)


def _weekly(report: DeviceReport) -> ReportTable:
    columns = ("version", "task", "metric", "study_design", "week_start", "week_end",
               "successes", "cases", "ci_lower", "ci_upper", "followup_completeness")  # fmt: skip
    rows = [
        (s.version, s.task, s.metric, s.study_design, s.window_start, s.window_end,
         s.successes, s.trials, s.ci_lower, s.ci_upper, s.followup_completeness)
        for s in report.weekly
    ]  # fmt: skip
    return table_of("weekly", columns, rows)


# --- identity ------------------------------------------------------------------------------


def canonical_json(tables: Sequence[ReportTable]) -> str:
    """The tables as one JSON text whose bytes depend only on their content."""
    payload = {table.name: {"columns": table.columns, "rows": table.rows} for table in tables}
    return json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=True)


def content_hash(report: DeviceReport) -> str:
    """SHA-256 (hex) of the report's data: every table, without the generation time."""
    return tables_hash(report_tables(report))


def tables_hash(tables: Sequence[ReportTable]) -> str:
    """SHA-256 (hex) of a document's tables in canonical JSON: its content hash."""
    return hashlib.sha256(canonical_json(tables).encode("ascii")).hexdigest()


def document_id(report: DeviceReport, digest: str | None = None) -> str:
    """``PMR-<device>-<first day>-<last day>-<first 12 hex of the content hash>``."""
    digest = digest or content_hash(report)
    return (
        f"PMR-{report.device.device_id}-{report.start:%Y%m%d}-{report.last_day:%Y%m%d}-"
        f"{digest[:12]}"
    )


# --- export --------------------------------------------------------------------------------

DocumentId = Callable[[str], str]
"""A document's id from its content hash (:func:`document_id`, the PSUR's own)."""


def export_json(report: DeviceReport) -> str:
    """The report's tables as one JSON document, with its id, hash and generation time."""
    return export_tables_json(
        report_tables(report), partial(document_id, report), report.generated_at
    )


def export_csv(report: DeviceReport, directory: Path) -> list[Path]:
    """One CSV file per table in ``directory`` (created), plus ``document.csv`` naming the
    report's id and hash; returns the files written."""
    return export_tables_csv(
        report_tables(report), partial(document_id, report), report.generated_at, directory
    )


def export_tables_json(
    tables: Sequence[ReportTable], identify: DocumentId, generated_at: datetime
) -> str:
    """A document's tables as one JSON text: its id and content hash, when it was
    generated, then every table as records (the device report's export and the PSUR's)."""
    digest = tables_hash(tables)
    document = {
        "document_id": identify(digest),
        "content_hash": digest,
        "content_hash_of": "SHA-256 of the canonical JSON of `tables` (sorted keys, no spaces)",
        "generated_at": generated_at.isoformat(),
        "tables": {table.name: table.records() for table in tables},
    }
    return json.dumps(document, indent=2, ensure_ascii=False) + "\n"


def export_tables_csv(
    tables: Sequence[ReportTable], identify: DocumentId, generated_at: datetime, directory: Path
) -> list[Path]:
    """A document's tables as CSV files in ``directory``, with ``document.csv`` naming its
    id, content hash and generation time; returns the files written."""
    digest = tables_hash(tables)
    identity = [
        ("document_id", identify(digest)),
        ("content_hash", digest),
        ("generated_at", generated_at),
    ]
    return write_csv_tables(tables, identity, directory)


def write_csv_tables(
    tables: Sequence[ReportTable], identity: Sequence[tuple[str, object]], directory: Path
) -> list[Path]:
    """``document.csv`` with the ``identity`` rows, then one CSV per table, in ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for table in [table_of("document", ("field", "value"), identity), *tables]:
        path = directory / f"{table.name}.csv"
        with path.open("w", newline="", encoding="utf-8") as file:
            writer = csv.writer(file)
            writer.writerow(table.columns)
            writer.writerows(["" if cell is None else cell for cell in row] for row in table.rows)
        written.append(path)
    return written
