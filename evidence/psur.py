"""The periodic safety update report (EU MDR Art. 86) of one device for one calendar year.

Built on the device report (:func:`evidence.report.build_report`) over the year,
it adds what a PSUR states beyond it: the exposure (cases per version and site), the
re-baselining decisions taken, a conclusion per claim, and the trend report (MDR Art. 88)
of every surveillance plan stored by the year's end. The year's review decisions (each
restarting a stream's rejected claims tests) are the device report's
(:attr:`~evidence.report.DeviceReport.reviews`), so they are in the PSUR's tables
as ``reviews`` when the year has one. Every table it shows is in its
JSON and CSV exports and in its content hash: the same store and year give the same hash.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import date, datetime
from functools import partial
from pathlib import Path

from evidence.report import DeviceReport, build_report
from evidence.report_claims import ClaimCheck
from evidence.report_tables import (
    ReportTable,
    export_tables_csv,
    export_tables_json,
    report_tables,
    table_of,
    tables_hash,
)
from evidence.store import EvidenceStore
from evidence.trend import TrendResult
from evidence.trend_store import plans_stored_before, trend_of
from postmarket.versions import ChangeControlPolicy

CONCLUSIONS = {
    "consistent": "claim upheld: no significant shortfall against the claim in the year",
    "below claim": "claim not upheld: the field shows a significant shortfall",
    "no cases": "no conclusion: no field cases with final truth in the year",
    "no registered claim": "no conclusion: the version holds no registered claim",
}
"""The conclusion a verdict of the anytime-valid claims test supports (see the report)."""


@dataclass(frozen=True)
class ExposureRow:
    """How many cases one version ran on at one site in the year, and how many got truth."""

    version: str
    site: str
    predictions: int
    with_truth: int


@dataclass(frozen=True)
class RebaselineRow:
    """One decision to rebuild a stream's label-free reference."""

    decided_at: datetime
    decided_by: str
    version: str
    site: str
    task: str
    alert_id: str
    reason: str


@dataclass(frozen=True)
class Conclusion:
    version: str
    task: str
    metric: str
    verdict: str
    conclusion: str
    observed: str


@dataclass(frozen=True)
class Psur:
    """The year's report, and what the PSUR adds to it."""

    year: int
    report: DeviceReport
    exposure: tuple[ExposureRow, ...]
    rebaselines: tuple[RebaselineRow, ...]
    conclusions: tuple[Conclusion, ...]
    trends: tuple[TrendResult, ...] = ()
    """Each plan stored before the year's end, as it stood then, judged as ``plan trend``."""


def build_psur(
    store: EvidenceStore, device_id: str, year: int, policy: ChangeControlPolicy
) -> Psur:
    """Read the store and compute the PSUR of ``device_id`` for calendar year ``year`` (UTC)."""
    if not 1900 <= year <= 9998:
        raise ValueError(f"--period {year} is not a calendar year")
    report = build_report(
        store, device_id, date(year, 1, 1), date(year, 12, 31), policy, gates_in_period=True
    )
    return Psur(
        year=year,
        report=report,
        exposure=exposure(report),
        rebaselines=rebaselines_in(store.rebaseline_decisions(device_id), report),
        conclusions=tuple(conclusion(check) for check in report.claims),
        trends=tuple(
            trend_of(store, plan, amendments)
            for plan, amendments in plans_stored_before(store, device_id, report.end)
        ),
    )


def exposure(report: DeviceReport) -> tuple[ExposureRow, ...]:
    """Cases per version and site, both study designs and every task together."""
    totals: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0])
    for row in report.completeness:
        counts = totals[(row.version, row.site)]
        counts[0] += row.predictions
        counts[1] += row.outcomes
    return tuple(
        ExposureRow(version, site, predictions, with_truth)
        for (version, site), (predictions, with_truth) in sorted(totals.items())
    )


def rebaselines_in(
    decisions: list[dict[str, object]], report: DeviceReport
) -> tuple[RebaselineRow, ...]:
    """The decisions on this device's streams taken inside the report's period."""
    rows = []
    for decision in decisions:
        stream = decision["stream"]
        if not isinstance(stream, dict) or stream.get("device_id") != report.device.device_id:
            continue
        decided_at = datetime.fromisoformat(str(decision["decided_at"]))
        if not report.start <= decided_at < report.end:
            continue
        rows.append(
            RebaselineRow(
                decided_at=decided_at,
                decided_by=str(decision["decided_by"]),
                version=str(stream["device_version"]),
                site=str(stream["site_id"]),
                task=str(stream["task"]),
                alert_id=str(decision["alert_id"]),
                reason=str(decision["reason"]),
            )
        )
    return tuple(sorted(rows, key=lambda row: (row.decided_at, row.alert_id)))


def conclusion(check: ClaimCheck) -> Conclusion:
    observed = check.observed
    shown = (
        "no cases"
        if observed.estimate is None
        else f"{observed.estimate:.3f} [{observed.lower:.3f}, {observed.upper:.3f}] "
        f"({observed.successes}/{observed.n})"
    )
    return Conclusion(
        version=check.version,
        task=check.task,
        metric=check.metric,
        verdict=check.verdict,
        conclusion=CONCLUSIONS.get(check.verdict, check.verdict),
        observed=shown,
    )


# --- tables, identity, exports --------------------------------------------------------------


def psur_tables(psur: Psur) -> list[ReportTable]:
    """The device report's tables for the year, then the PSUR's own."""
    exposure_table = table_of(
        "exposure",
        ("version", "site", "predictions", "with_final_truth"),
        [(r.version, r.site, r.predictions, r.with_truth) for r in psur.exposure],
    )
    rebaseline_table = table_of(
        "rebaselines",
        ("decided_at", "decided_by", "version", "site", "task", "alert_id", "reason"),
        [
            (r.decided_at, r.decided_by, r.version, r.site, r.task, r.alert_id, r.reason)
            for r in psur.rebaselines
        ],
    )
    conclusion_table = table_of(
        "conclusions",
        ("version", "task", "metric", "verdict", "conclusion", "observed"),
        [
            (c.version, c.task, c.metric, c.verdict, c.conclusion, c.observed)
            for c in psur.conclusions
        ],
    )
    return [
        *report_tables(psur.report),
        exposure_table,
        rebaseline_table,
        conclusion_table,
        *trend_tables(psur.trends),
    ]


def trend_tables(trends: tuple[TrendResult, ...]) -> list[ReportTable]:
    """Each plan as recorded with its counts, p-value and verdict; then its amendments."""
    rows = []
    for result in trends:
        plan, base, seen = result.plan, result.baseline, result.observation
        rows.append(
            (plan.name, plan.metric, plan.version or "every version", plan.baseline_start,
             plan.baseline_end, plan.observation_start, plan.observation_end,
             result.statement, plan.alpha, plan.min_cases, base.successes, base.n,
             base.estimate, seen.successes, seen.n, seen.estimate, result.p_value,
             result.verdict, len(result.amendments))
        )  # fmt: skip
    trends_table = table_of(
        "trends",
        ("plan", "metric", "version", "baseline_start", "baseline_end", "observation_start",
         "observation_end", "method", "alpha", "min_cases", "baseline_successes",
         "baseline_cases", "baseline_proportion", "observation_successes",
         "observation_cases", "observation_proportion", "p_value", "verdict", "amendments"),
        rows,
    )  # fmt: skip
    amendments_table = table_of(
        "trend_amendments",
        ("plan", "amended_at", "amended_by", "why", "after_observation_began"),
        [
            (result.plan.name, a.at, a.by, a.why, a.after_data)
            for result in trends
            for a in result.amendments
        ],
    )
    return [trends_table, amendments_table]


def psur_hash(psur: Psur) -> str:
    """SHA-256 (hex) of every table, without the generation time."""
    return tables_hash(psur_tables(psur))


def psur_document_id(psur: Psur, digest: str | None = None) -> str:
    """``PSUR-<device>-<year>-<first 12 hex of the content hash>``."""
    return f"PSUR-{psur.report.device.device_id}-{psur.year}-{(digest or psur_hash(psur))[:12]}"


def export_psur_json(psur: Psur) -> str:
    return export_tables_json(
        psur_tables(psur), partial(psur_document_id, psur), psur.report.generated_at
    )


def export_psur_csv(psur: Psur, directory: Path) -> list[Path]:
    """One CSV per table in ``directory``, plus ``document.csv`` with the id and hash."""
    return export_tables_csv(
        psur_tables(psur), partial(psur_document_id, psur), psur.report.generated_at, directory
    )
