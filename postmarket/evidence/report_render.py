"""Render a :class:`~postmarket.evidence.report.DeviceReport` as one self-contained file.

HTML with inline CSS and every figure inline as a base64 PNG (matplotlib, Agg backend), so
the file can be mailed, archived and opened offline. PDF is the same HTML printed by
headless Chromium (Debian's ``chromium`` package; ``POSTMARKET_CHROMIUM`` names another).
"""

from __future__ import annotations

import base64
import html
import io
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterable, Sequence
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING

from postmarket.evidence.report import (
    FUNNEL_COVERAGE,
    MIN_WEEKLY_CASES,
    DesignCounts,
    DeviceReport,
    Proportion,
    observation_sentence,
)
from postmarket.evidence.report_tables import content_hash, document_id
from postmarket.evidence.snapshots import Snapshot
from postmarket.evidence.store import short_alert_id

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from postmarket.evidence.store import AlertView

SECTIONS = {
    "summary": "Summary for the regulator",
    "claims": "Claims vs observed, per version",
    "sites": "Generalizability: performance per site",
    "strata": "Compatibility: performance per acquisition stratum",
    "alerts": "Alerts and their resolution",
    "versions": "Version history and change control",
    "provenance": "Data provenance and completeness",
    "readers": "Ground-truth quality: reader agreement",
}
"""Section id -> heading, in report order."""

CHROMIUM_FLAGS = (
    "--headless",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)


class ReportError(RuntimeError):
    """The report cannot be written; the message says why."""


# --- figures -------------------------------------------------------------------------------


def _png(figure: Figure) -> str:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def _new_figure(width: float, height: float) -> Figure:
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), layout="constrained")


def claims_figure(report: DeviceReport) -> str | None:
    """Observed (Wilson 95 % CI) against the claimed value and CI, per version/task/metric."""
    checks = [c for c in report.claims if c.observed.n > 0 or c.claim is not None]
    if not checks:
        return None
    figure = _new_figure(7.5, 0.45 * len(checks) + 1.2)
    axes = figure.add_subplot()
    for row, check in enumerate(reversed(checks)):
        if check.claim is not None:
            claim = check.claim
            axes.plot([claim.ci_lower, claim.ci_upper], [row, row], color="#bbb", lw=8)
            axes.plot(claim.value, row, marker="|", color="#555", ms=16, mew=2)
        observed = check.observed
        if observed.estimate is not None:
            color = "#c0392b" if check.verdict == "below claim" else "#1f6fb2"
            axes.errorbar(
                observed.estimate,
                row,
                xerr=[
                    [observed.estimate - (observed.lower or 0.0)],
                    [(observed.upper or 1.0) - observed.estimate],
                ],
                fmt="o",
                color=color,
                capsize=3,
            )
    axes.set_yticks(
        range(len(checks)),
        [f"{c.version} {c.task}\n{c.metric}" for c in reversed(checks)],
        fontsize=7,
    )
    axes.set_xlim(0, 1)
    axes.set_xlabel("proportion (grey: registered claim and CI; dot: observed, Wilson 95 % CI)")
    axes.grid(axis="x", alpha=0.3)
    return _png(figure)


def weekly_rates(points: Sequence[Snapshot]) -> list[float]:
    """Each week's observed rate, NaN (a gap in the line) below ``MIN_WEEKLY_CASES`` cases."""
    return [
        p.successes / p.trials if p.trials >= MIN_WEEKLY_CASES else float("nan") for p in points
    ]


WEEKLY_CAPTION = (
    "Performance per week, all sites pooled, with Wilson 95 % bands; weeks with fewer than "
    f"{MIN_WEEKLY_CASES} cases (such as a partial first or last week) are left out of the "
    "line and its band"
)


def weekly_figure(report: DeviceReport) -> str | None:
    """Weekly sensitivity and specificity per version (all sites), Wilson 95 % bands."""
    metrics = [
        m for m in ("sensitivity", "specificity") if any(s.metric == m for s in report.weekly)
    ]
    if not metrics:
        return None
    figure = _new_figure(7.5, 2.4 * len(metrics))
    claims: dict[tuple[str, str, str], float] = {
        (str(v.version), c.task, c.metric): c.value
        for v in report.device.versions
        for c in v.claims
    }
    for index, metric in enumerate(metrics, start=1):
        axes = figure.add_subplot(len(metrics), 1, index)
        series: dict[tuple[str, str, str], list[Snapshot]] = {}
        for snapshot in report.weekly:
            if snapshot.metric == metric:
                series.setdefault(
                    (snapshot.version, snapshot.task, snapshot.study_design), []
                ).append(snapshot)
        for (version, task, design), points in sorted(series.items()):
            weeks = [p.window_start.toordinal() for p in points]
            rates = weekly_rates(points)
            shown = [rate == rate for rate in rates]  # NaN != NaN: too few cases
            style = "-" if design == "prospective" else ":"
            (line,) = axes.plot(
                weeks, rates, style, marker="o", ms=3, label=f"{version} {task} ({design})"
            )
            axes.fill_between(
                weeks,
                [p.ci_lower for p in points],
                [p.ci_upper for p in points],
                where=shown,
                color=line.get_color(),
                alpha=0.15,
            )
        for version, task in sorted({(v, t) for v, t, _ in series}):
            claimed = claims.get((version, task, metric))
            if claimed is not None:
                axes.axhline(claimed, color="#555", ls="--", lw=1)
                axes.annotate(
                    f"claim {version}", (1.0, claimed), xycoords=("axes fraction", "data"),
                    fontsize=6, color="#555", ha="right", va="bottom",
                )  # fmt: skip
        ticks = sorted({s.window_start.toordinal() for s in report.weekly})
        ticks = ticks[:: max(1, len(ticks) // 8)]
        axes.set_xticks(ticks, [date.fromordinal(t).isoformat() for t in ticks], fontsize=7)
        axes.set_ylim(0, 1.02)
        axes.set_ylabel(metric)
        axes.grid(alpha=0.3)
        axes.legend(fontsize=6, loc="lower left")
    figure.supxlabel("week of prediction (dashed: registered claim)", fontsize=8)
    return _png(figure)


def funnel_figure(report: DeviceReport, version: str, task: str) -> str | None:
    """Funnel plots (95 % and 99.8 % limits around the fleet value) of sensitivity and
    specificity across the sites of one version and task."""
    import numpy as np

    from detectors import funnel_plot_limits

    rows = [r for r in report.sites if r.version == version and r.task == task]
    if not rows:
        return None
    figure = _new_figure(8.0, 3.4)
    for column, metric in enumerate(("sensitivity", "specificity")):
        axes = figure.add_subplot(1, 2, column + 1)
        fleet = next(
            h.fleet for h in report.heterogeneity
            if (h.version, h.task, h.metric) == (version, task, metric)
        )  # fmt: skip
        points = [(r.site, r.metrics[metric]) for r in rows if r.metrics[metric].n > 0]
        target = fleet.estimate
        largest = max((p.n for _, p in points), default=10)
        if target is not None and 0.0 < target < 1.0:
            n = np.arange(1, max(largest * 1.2, 20) + 1)
            for coverage, style in ((0.95, "--"), (FUNNEL_COVERAGE, "-")):
                lower, upper = funnel_plot_limits(target, n, coverage)
                axes.plot(n, lower, style, color="#888", lw=1)
                axes.plot(n, upper, style, color="#888", lw=1)
            axes.axhline(target, color="#1f6fb2", lw=1)
        claims = [
            c.claim.value for c in report.claims
            if (c.version, c.task, c.metric) == (version, task, metric) and c.claim is not None
        ]  # fmt: skip
        for claimed in claims:
            axes.axhline(claimed, color="#c0392b", lw=1, ls=":")
        for site, observed in points:
            axes.plot(observed.n, observed.estimate or 0.0, "o", color="#222", ms=5)
            axes.annotate(site, (observed.n, observed.estimate or 0.0), fontsize=7,
                          xytext=(3, 3), textcoords="offset points")  # fmt: skip
        axes.set_title(f"{metric} (fleet {_pct(target)})", fontsize=9)
        axes.set_xlabel("cases at site")
        axes.set_ylim(0, 1.02)
        axes.grid(alpha=0.3)
    figure.suptitle(
        f"{version} {task}: funnel limits 95 % (dashed) and 99.8 % (solid); claim dotted",
        fontsize=9,
    )
    return _png(figure)


def strata_figure(report: DeviceReport, task: str) -> str | None:
    """Sensitivity and specificity with Wilson CIs per acquisition stratum."""
    rows = [r for r in report.strata if r.task == task]
    if not rows:
        return None
    figure = _new_figure(8.0, 0.32 * len(rows) + 1.4)
    for column, metric in enumerate(("sensitivity", "specificity")):
        axes = figure.add_subplot(1, 2, column + 1)
        for row, stratum in enumerate(reversed(rows)):
            observed = stratum.metrics[metric]
            if observed.estimate is None:
                continue
            axes.errorbar(
                observed.estimate,
                row,
                xerr=[
                    [observed.estimate - (observed.lower or 0.0)],
                    [(observed.upper or 1.0) - observed.estimate],
                ],
                fmt="o",
                color="#1f6fb2",
                capsize=3,
            )
        labels = [f"{r.dimension.replace('_', ' ')}: {r.value}" for r in reversed(rows)]
        axes.set_yticks(range(len(rows)), labels if column == 0 else [""] * len(rows), fontsize=7)
        axes.set_xlim(0, 1)
        axes.set_title(metric, fontsize=9)
        axes.grid(axis="x", alpha=0.3)
    return _png(figure)


def provenance_figure(report: DeviceReport) -> str | None:
    """Outcomes per week by study design."""
    if not report.outcomes:
        return None
    import numpy as np

    weeks = sorted({o.prediction_time.strftime("%G-W%V") for o in report.outcomes})
    index = {week: i for i, week in enumerate(weeks)}
    counts = {design: np.zeros(len(weeks)) for design in ("prospective", "retrospective")}
    for outcome in report.outcomes:
        counts[outcome.study_design][index[outcome.prediction_time.strftime("%G-W%V")]] += 1
    figure = _new_figure(7.5, 2.6)
    axes = figure.add_subplot()
    x = np.arange(len(weeks))
    axes.bar(x, counts["prospective"], color="#1f6fb2", label="prospective (live)")
    axes.bar(
        x,
        counts["retrospective"],
        bottom=counts["prospective"],
        color="#e6a23c",
        label="retrospective (replayed)",
    )
    axes.set_xticks(x, weeks, fontsize=7, rotation=45)
    axes.set_ylabel("outcomes")
    axes.legend(fontsize=8)
    return _png(figure)


# --- HTML ----------------------------------------------------------------------------------


def _e(value: object) -> str:
    return html.escape(str(value))


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.1%}"


def _ci(observed: Proportion) -> str:
    if observed.estimate is None:
        return "no cases"
    return (
        f"{_pct(observed.estimate)} [{_pct(observed.lower)}, {_pct(observed.upper)}] "
        f"({observed.successes}/{observed.n})"
    )


def _table(headers: Sequence[str], rows: Iterable[Sequence[str]], css: str = "") -> str:
    head = "".join(f"<th>{_e(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{cell}</td>" for cell in row) + "</tr>" for row in rows)
    if not body:
        body = f'<tr><td colspan="{len(headers)}" class="none">none in this window</td></tr>'
    return f'<table class="{css}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def _figure(figure_id: str, png: str | None, caption: str) -> str:
    if png is None:
        return (
            f'<p class="none" data-figure-missing="{_e(figure_id)}">No data for: {_e(caption)}</p>'
        )
    return (
        f'<figure id="{_e(figure_id)}" data-figure="{_e(figure_id)}">'
        f'<img alt="{_e(caption)}" src="data:image/png;base64,{png}">'
        f"<figcaption>{_e(caption)}</figcaption></figure>"
    )


def _design_line(counts: DesignCounts, what: str = "Outcomes in this section") -> str:
    return (
        f'<p class="design">{_e(what)}: <b>prospective {counts.prospective}</b> · '
        f"<b>retrospective {counts.retrospective}</b></p>"
    )


def _design_cell(counts: DesignCounts) -> str:
    return f"{counts.prospective} / {counts.retrospective}"


def _section(section_id: str, body: str) -> str:
    return f'<section id="{section_id}"><h2>{_e(SECTIONS[section_id])}</h2>{body}</section>'


def _summary(report: DeviceReport, digest: str) -> str:
    device = report.device
    facts = _table(
        ["", ""],
        [
            ["Document", f'<span class="doc-id">{_e(document_id(report, digest))}</span>'],
            [
                "Content hash",
                f'<code class="content-hash">{_e(digest)}</code><br><small>SHA-256 of the '
                "report's tables in canonical JSON (see the JSON export); the same store and "
                "arguments give the same hash</small>",
            ],
            ["Device", _e(f"{device.device_id} {device.name}".strip())],
            ["Manufacturer", _e(device.manufacturer or "-")],
            ["Tasks", _e(", ".join(device.tasks) or "-")],
            ["Period", _e(f"{report.period} (both days included, UTC)")],
            ["Change-control policy", _e(f"{report.policy.name}: {report.policy.description}")],
            ["Generated", _e(f"{report.generated_at:%Y-%m-%d %H:%M} UTC")],
            [
                "Audit trail",
                _e(
                    f"intact, {report.audit.entries} entries, head hash {report.audit.head_hash}"
                    if report.audit.intact
                    else f"BROKEN at {report.audit.problem}"
                ),
            ],
        ],
        "facts",
    )
    findings = "".join(f"<li>{_e(line)}</li>" for line in report.findings())
    return _section(
        "summary",
        _design_line(report.design) + f"<ul class=findings>{findings}</ul>" + facts,
    )


VERDICT_CLASS = {"below claim": "bad", "consistent": "ok"}
"""Only a tested claim is green: "no registered claim" and "no cases" are neutral, since the
absence of evidence is not a pass."""


def _claims(report: DeviceReport) -> str:
    rows = []
    for check in report.claims:
        claim = check.claim
        claimed = (
            "-"
            if claim is None
            else f"{_pct(claim.value)} [{_pct(claim.ci_lower)}, {_pct(claim.ci_upper)}]"
            f"<br><small>{_e(claim.test_database)}</small>"
        )
        decided = ""
        if check.decided_at_case is not None and check.decided_at is not None:
            decided = (
                f"<br><small>at case {check.decided_at_case}, {check.decided_at:%Y-%m-%d}</small>"
            )
        verdict_class = VERDICT_CLASS.get(check.verdict, "neutral")
        rows.append(
            [
                _e(check.version),
                _e(check.task),
                _e(check.metric),
                claimed,
                _e(_ci(check.observed)),
                f'<span class="{verdict_class}">{_e(check.verdict)}</span>{decided}',
                _design_cell(check.design),
            ]
        )
    table = _table(
        ["Version", "Task", "Metric", "Claimed [CI]", "Observed [Wilson 95 % CI]",
         "Claims test", "Prosp. / retro."],
        rows,
    )  # fmt: skip
    note = (
        "<p class=note>Claims test: anytime-valid beta-binomial confidence sequence "
        "(alpha 0.05) over the window's outcomes in prediction-time order; "
        "<i>below claim</i> means the claimed value left the sequence, with the case at "
        "which it did.</p>"
    )
    return _section(
        "claims",
        _design_line(report.design)
        + table
        + note
        + _figure("fig-claims", claims_figure(report), "Claims vs observed per version")
        + _figure(
            "fig-weekly",
            weekly_figure(report),
            WEEKLY_CAPTION,
        ),
    )


def _sites(report: DeviceReport) -> str:
    rows = [
        [
            _e(r.version),
            _e(r.task),
            _e(r.site),
            _e(_ci(r.metrics["sensitivity"])),
            _e(r.funnel["sensitivity"]),
            _e(_ci(r.metrics["specificity"])),
            _e(r.funnel["specificity"]),
            _design_cell(r.design),
        ]
        for r in report.sites
    ]
    sites = _table(
        ["Version", "Task", "Site", "Sensitivity", "Funnel", "Specificity", "Funnel",
         "Prosp. / retro."],
        rows,
    )  # fmt: skip
    pooled = _table(
        ["Version", "Task", "Metric", "Sites", "Fleet", "Random-effects pooled [95 % CI]",
         "I²", "τ²", "Q p-value"],
        [
            [
                _e(h.version), _e(h.task), _e(h.metric), str(h.n_sites), _e(_ci(h.fleet)),
                _e("-" if h.pooled is None else
                   f"{_pct(h.pooled)} [{_pct(h.lower)}, {_pct(h.upper)}]"),
                _e(_pct(h.i2)), _e("-" if h.tau2 is None else f"{h.tau2:.3f}"),
                _e("-" if h.q_p_value is None else f"{h.q_p_value:.3g}"),
            ]
            for h in report.heterogeneity
        ],
    )  # fmt: skip
    figures = "".join(
        _figure(
            f"fig-funnel-{version}-{task}",
            funnel_figure(report, version, task),
            f"Funnel plot, {version} {task}",
        )
        for version, task in dict.fromkeys((r.version, r.task) for r in report.sites)
    )
    return _section(
        "sites",
        _design_line(report.design)
        + sites
        + "<h3>Heterogeneity across sites (DerSimonian-Laird)</h3>"
        + pooled
        + figures,
    )


def _strata(report: DeviceReport) -> str:
    rows = [
        [
            _e(r.task),
            _e(r.dimension.replace("_", " ")),
            _e(r.value),
            _e(_ci(r.metrics["sensitivity"])),
            _e(_ci(r.metrics["specificity"])),
            _design_cell(r.design),
        ]
        for r in report.strata
    ]
    table = _table(
        ["Task", "Stratum", "Value", "Sensitivity", "Specificity", "Prosp. / retro."], rows
    )
    figures = "".join(
        _figure(
            f"fig-strata-{task}", strata_figure(report, task), f"Performance per stratum, {task}"
        )
        for task in dict.fromkeys(r.task for r in report.strata)
    )
    return _section(
        "strata",
        _design_line(report.design)
        + "<p class=note>All versions of the device in the window, per task.</p>"
        + table
        + figures,
    )


def _recurred(view: AlertView) -> str:
    """How often the stream's detector signalled again while the alert was unresolved."""
    if view.last_recurred_at is None:
        return "-"
    return (
        f"{view.recurrences}x, last {view.last_recurred_at:%Y-%m-%d}, "
        f"up to {_e(view.highest_severity)}"
    )


def _alerts(report: DeviceReport) -> str:
    rows = []
    for view in report.alerts:
        alert = view.alert
        lifecycle = ""
        if view.acknowledged_at is not None:
            lifecycle += (
                f"acknowledged {view.acknowledged_at:%Y-%m-%d} by {_e(view.acknowledged_by)}: "
                f"{_e(view.acknowledgement)}"
            )
        if view.resolved_at is not None:
            lifecycle += (
                f"<br>resolved {view.resolved_at:%Y-%m-%d} by {_e(view.resolved_by)}: "
                f"{_e(view.resolution)}"
            )
        observed = observation_sentence(alert)
        rows.append(
            [
                f'<code class="alert-id" title="{_e(alert.alert_id)}">'
                f"{_e(short_alert_id(alert.alert_id))}</code>",
                f"{alert.raised_at:%Y-%m-%d %H:%M}",
                _e(alert.detector),
                _e(alert.severity),
                _e(f"{alert.stream.device_version} {alert.stream.site_id} {alert.stream.task}"),
                _e(alert.message)
                + (f'<br><small class="observed">{_e(observed)}</small>' if observed else ""),
                f'<span class="status-{view.status.value}">{_e(view.status.value)}</span>',
                lifecycle or "-",
                _recurred(view),
            ]
        )
    counts: dict[str, int] = {}
    for view in report.alerts:
        counts[view.status.value] = counts.get(view.status.value, 0) + 1
    summary = ", ".join(f"{n} {status}" for status, n in sorted(counts.items())) or "none"
    table = _table(
        ["Alert", "Raised", "Detector", "Severity", "Stream", "Message", "Status", "Lifecycle",
         "Recurred"],
        rows,
    )  # fmt: skip
    return _section(
        "alerts",
        _design_line(report.alert_design(), "Outcomes on the alerted streams")
        + f"<p>{len(report.alerts)} alert(s): {_e(summary)}. The alert column is the first 8 "
        "characters of the alert's id (<code>postmarket alerts show ID</code> takes it; the "
        "full id is in the CSV/JSON export). Where the alert's evidence counts cases of its "
        "metric, the message is followed by the observed value they give.</p>" + table,
    )


def _versions(report: DeviceReport) -> str:
    rows = [
        [
            _e(v.version),
            _e(v.status),
            _e(" ".join(x for x in (v.regulator, v.reference) if x) or "-"),
            _e(v.registered_on or "-"),
            _e(v.version_change),
            _e(v.change_record),
            f'<span class="{"bad" if v.needs_registration else "ok"}">'
            f"{'needs registration' if v.needs_registration else 'may run'}</span>"
            f"<br><small>{_e(v.decision)}</small>",
            _e(f"{v.first_seen:%Y-%m-%d}" if v.first_seen else "-")
            + (
                '<br><span class="bad seen-before-registration">before registration</span>'
                if v.seen_before_registration
                else ""
            ),
            str(v.sites),
            _design_cell(v.design),
        ]
        for v in report.versions
    ]
    table = _table(
        ["Version", "Status", "Registration", "Registered on", "Version change",
         "Change record", f"Decision ({report.policy.name})", "First seen", "Sites",
         "Prosp. / retro."],
        rows,
    )  # fmt: skip
    return _section("versions", _design_line(report.design) + table)


def _provenance(report: DeviceReport) -> str:
    design_rows = []
    for design in ("prospective", "retrospective"):
        predictions, followed = report.predictions(design), report.followed_up(design)
        design_rows.append(
            [
                _e(design),
                str(predictions),
                str(followed),
                _e(_pct(followed / predictions if predictions else None)),
            ]
        )
    by_design = _table(
        ["Study design", "Predictions", "With final truth", "Follow-up completeness"],
        design_rows,
    )
    detail = _table(
        ["Version", "Site", "Task", "Design", "Predictions", "With truth", "Completeness"],
        [
            [
                _e(r.version), _e(r.site), _e(r.task), _e(r.study_design), str(r.predictions),
                str(r.outcomes), _e(_pct(r.completeness)),
            ]
            for r in report.completeness
        ],
    )  # fmt: skip
    sources = ", ".join(f"{source} {n}" for source, n in sorted(report.truth_sources.items()))
    times = [o.prediction_time for o in report.outcomes]
    span = f"{min(times):%Y-%m-%d} to {max(times):%Y-%m-%d}" if times else "-"
    return _section(
        "provenance",
        _design_line(report.design)
        + "<p class=note>Prospective: live predictions as they happened; retrospective: "
        "historical cases replayed through the same pipeline with their original event "
        "times. Completeness: predictions with final ground truth over predictions.</p>"
        + by_design
        + f"<p>Ground truth sources: {_e(sources or '-')}. Prediction times: {_e(span)}.</p>"
        + detail
        + _figure("fig-provenance", provenance_figure(report), "Outcomes per week by design"),
    )


def _readers(report: DeviceReport) -> str:
    rows = [
        [
            _e(r.version), _e(r.task), _e(r.site), str(r.pairs),
            _e(_pct(r.observed_agreement)),
            _e(f"{r.kappa.kappa:.3f}" if r.kappa else "-"),
            _e(f"{r.kappa.lower:.3f} - {r.kappa.upper:.3f}" if r.kappa else "-"),
        ]
        for r in report.reader_agreement
    ]  # fmt: skip
    table = (
        _table(
            [
                "Version",
                "Task",
                "Site",
                "Read pairs",
                "Observed agreement",
                "Cohen's kappa",
                "95 % CI",
            ],
            rows,
        )  # fmt: skip
        if rows
        else "<p class=none>No case in the window had two blinded reads.</p>"
    )
    read = DesignCounts.of(o for o in report.outcomes if o.blinded_reads is not None)
    return _section(
        "readers",
        _design_line(read, "Outcomes with two blinded reads")
        + "<p class=note>The labels behind every outcome above come from two blinded reads by "
        "different readers, adjudicated when they disagree (or from pathology and follow-up). "
        "Cohen's kappa of the two reads before adjudication measures how reproducible the "
        "ground truth is: low agreement at a site weakens its performance figures. Intervals "
        "use the large-sample standard error of Fleiss, Cohen and Everitt (1969).</p>" + table,
    )


STYLE = """
body { font-family: "DejaVu Sans", Arial, sans-serif; font-size: 10.5pt; color: #222;
       margin: 24px auto; max-width: 1100px; }
h1 { font-size: 18pt; margin-bottom: 2px; } h2 { border-bottom: 2px solid #1f6fb2;
     padding-bottom: 3px; margin-top: 28px; font-size: 14pt; } h3 { font-size: 11pt; }
table { border-collapse: collapse; width: 100%; margin: 8px 0; font-size: 9pt; }
th, td { border: 1px solid #ccc; padding: 3px 6px; text-align: left; vertical-align: top; }
th { background: #eef3f8; } table.facts th { display: none; }
table.facts td:first-child { width: 180px; font-weight: bold; }
.design { background: #f6f6f6; border-left: 4px solid #e6a23c; padding: 4px 8px; }
.note { color: #555; font-size: 9pt; } .none { color: #888; font-style: italic; }
.bad { color: #c0392b; font-weight: bold; } .ok { color: #1e7b34; } .neutral { color: #555; }
.status-open { color: #c0392b; font-weight: bold; } .status-acknowledged { color: #b7791f; }
.status-resolved { color: #1e7b34; }
figure { margin: 10px 0; page-break-inside: avoid; } figure img { max-width: 100%; }
figcaption { font-size: 9pt; color: #555; } ul.findings li { margin: 3px 0; }
@page { size: A4; margin: 14mm 14mm 16mm;
        @bottom-right { content: "page " counter(page) " of " counter(pages); font-size: 7.5pt;
                        color: #555; } }
@media print { body { margin: 0; max-width: none; } }
"""


def page_footer(document: str) -> str:
    """CSS printing ``document`` (an id) in every page's footer, beside "page X of Y"."""
    # A CSS escape for anything but plain characters: no quote or "</style>" can end it.
    quoted = "".join(
        c if c.isascii() and (c.isalnum() or c in "-_. ") else f"\\{ord(c):x} " for c in document
    )
    return f'@page {{ @bottom-left {{ content: "{quoted}"; font-size: 7.5pt; color: #555; }} }}'


def _page_footer(report: DeviceReport, digest: str) -> str:
    return page_footer(document_id(report, digest))


def report_sections(report: DeviceReport) -> str:
    """Every section after the summary, as the report and the PSUR show them."""
    return "".join(
        (
            _claims(report),
            _sites(report),
            _strata(report),
            _alerts(report),
            _versions(report),
            _provenance(report),
            _readers(report),
        )
    )


escape = _e
html_table = _table


def render_html(report: DeviceReport) -> str:
    """The report as one self-contained HTML document."""
    title = f"Post-market surveillance report: {report.device.device_id}"
    digest = content_hash(report)
    body = _summary(report, digest) + report_sections(report)
    return (
        "<!DOCTYPE html><html lang=en><head><meta charset=utf-8>"
        f"<title>{_e(title)}</title><style>{STYLE}{_page_footer(report, digest)}</style>"
        f"</head><body><h1>{_e(title)}</h1><p class=note>Period {_e(report.period)} (UTC, "
        f"both days included). Document {_e(document_id(report, digest))}. Read-only "
        "evidence from the post-market surveillance pipeline.</p>"
        f"{body}</body></html>"
    )


# --- PDF -----------------------------------------------------------------------------------


def chromium_executable() -> str:
    """Headless Chromium: ``POSTMARKET_CHROMIUM``, else ``chromium`` or Chrome on PATH."""
    configured = os.environ.get("POSTMARKET_CHROMIUM")
    candidates = [configured] if configured else []
    candidates += ["chromium", "chromium-browser", "google-chrome", "google-chrome-stable"]
    for candidate in candidates:
        found = shutil.which(candidate)
        if found:
            return found
    raise ReportError(
        "PDF needs headless Chromium: install Debian's chromium package "
        "(deploy/scripts/install-system-deps.sh) or set POSTMARKET_CHROMIUM; "
        "--format html needs nothing"
    )


def chromium_command(*arguments: str, profile: Path) -> list[str]:
    """A headless Chromium command line that talks to no network service of its own."""
    sandbox = ["--no-sandbox"] if os.geteuid() == 0 else []  # Chromium refuses root otherwise
    return [
        chromium_executable(),
        *CHROMIUM_FLAGS,
        *sandbox,
        f"--user-data-dir={profile}",
        *arguments,
    ]


def write_pdf(document: str, out: Path, timeout_s: float = 120.0) -> None:
    """Print the HTML ``document`` to the PDF file ``out`` with headless Chromium."""
    with tempfile.TemporaryDirectory(prefix="postmarket-report-") as scratch:
        source = Path(scratch) / "report.html"
        source.write_text(document, encoding="utf-8")
        target = out.resolve()
        command = chromium_command(
            "--no-pdf-header-footer",
            f"--print-to-pdf={target}",
            source.as_uri(),
            profile=Path(scratch) / "profile",
        )
        try:
            finished = subprocess.run(  # noqa: S603 - our own arguments, no shell
                command, capture_output=True, timeout=timeout_s, check=False
            )
        except subprocess.TimeoutExpired:
            raise ReportError(f"Chromium did not print the PDF within {timeout_s:.0f} s") from None
        if finished.returncode != 0 or not target.exists() or target.stat().st_size == 0:
            tail = finished.stderr.decode(errors="replace").strip().splitlines()[-5:]
            raise ReportError(f"Chromium could not print the PDF: {' | '.join(tail)}")


def write_report(report: DeviceReport, out: Path, fmt: str) -> None:
    """Write ``report`` to ``out`` as ``html`` or ``pdf``."""
    if fmt not in ("html", "pdf"):
        raise ReportError(f"unknown format {fmt!r}; use html or pdf")
    out.parent.mkdir(parents=True, exist_ok=True)
    document = render_html(report)
    if fmt == "html":
        out.write_text(document, encoding="utf-8")
    else:
        write_pdf(document, out)
