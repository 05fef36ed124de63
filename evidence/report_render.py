"""Render a :class:`~evidence.report.DeviceReport` as one self-contained file.

HTML (:mod:`~evidence.html`) with inline CSS and every figure
(:mod:`~evidence.report_figures`) inline as a base64 PNG, so the file can be
mailed, archived and opened offline. PDF is the same HTML printed by headless Chromium
(:mod:`~evidence.pdf`).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from evidence.html import document, escape, figure, percent, section, table
from evidence.pdf import ReportError, write_pdf
from evidence.report import DeviceReport
from evidence.report_alerts import change_point_sentence, observation_sentence
from evidence.report_figures import (
    WEEKLY_CAPTION,
    claims_figure,
    funnel_figure,
    provenance_figure,
    strata_figure,
    weekly_figure,
)
from evidence.report_gate_render import gate_body
from evidence.report_outcomes import DesignCounts, Proportion
from evidence.report_tables import content_hash, document_id
from evidence.store import short_alert_id

if TYPE_CHECKING:
    from evidence.store import AlertView

SECTIONS = {
    "summary": "Summary for the regulator",
    "claims": "Claims vs observed, per version",
    "sites": "Generalizability: performance per site",
    "strata": "Compatibility: performance per acquisition stratum",
    "alerts": "Alerts and their resolution",
    "versions": "Version history and change control",
    "gate": "Standard test database gate: verdicts per version",
    "provenance": "Data provenance and completeness",
    "readers": "Ground-truth quality: reader agreement",
}
"""Section id -> heading, in report order."""
REVIEWS_SECTION = ("reviews", "Review decisions: claims tests restarted")
"""The section after the alerts, shown only when the period has a review decision (so a
period without one keeps its document as it was)."""

# --- HTML ----------------------------------------------------------------------------------


def _ci(observed: Proportion) -> str:
    if observed.estimate is None:
        return "no cases"
    return (
        f"{percent(observed.estimate)} [{percent(observed.lower)}, {percent(observed.upper)}] "
        f"({observed.successes}/{observed.n})"
    )


def _design_line(counts: DesignCounts, what: str = "Outcomes in this section") -> str:
    return (
        f'<p class="design">{escape(what)}: <b>prospective {counts.prospective}</b> · '
        f"<b>retrospective {counts.retrospective}</b></p>"
    )


def _design_cell(counts: DesignCounts) -> str:
    return f"{counts.prospective} / {counts.retrospective}"


def _section(section_id: str, body: str) -> str:
    return section(section_id, SECTIONS[section_id], body)


def facts_table(
    report: DeviceReport,
    document: str,
    digest: str,
    *,
    hashed: str,
    same_hash_for: str,
    about: Sequence[tuple[str, str]],
) -> str:
    """The facts that open a document made from ``report`` (this report, the PSUR): its id
    and content hash, the device, ``about`` (the document's own rows, plain text), when it
    was generated and whether the audit trail is intact.

    The hash is explained as "SHA-256 of ``hashed`` ...; the same store and
    ``same_hash_for`` give the same hash" (both HTML).
    """
    device = report.device
    audit = report.audit
    return table(
        ["", ""],
        [
            ["Document", f'<span class="doc-id">{escape(document)}</span>'],
            [
                "Content hash",
                f'<code class="content-hash">{escape(digest)}</code><br><small>SHA-256 of '
                f"{hashed} in canonical JSON (see the JSON export); the same store and "
                f"{same_hash_for} give the same hash</small>",
            ],
            ["Device", escape(f"{device.device_id} {device.name}".strip())],
            ["Manufacturer", escape(device.manufacturer or "-")],
            *([label, escape(value)] for label, value in about),
            ["Generated", escape(f"{report.generated_at:%Y-%m-%d %H:%M} UTC")],
            [
                "Audit trail",
                escape(
                    f"intact, {audit.entries} entries, head hash {audit.head_hash}"
                    if audit.intact
                    else f"BROKEN at {audit.problem}"
                ),
            ],
        ],
        "facts",
    )


def _summary(report: DeviceReport, digest: str) -> str:
    policy = report.policy
    facts = facts_table(
        report,
        document_id(report, digest),
        digest,
        hashed="the report's tables",
        same_hash_for="arguments",
        about=[
            ("Tasks", ", ".join(report.device.tasks) or "-"),
            ("Period", f"{report.period} (both days included, UTC)"),
            ("Change-control policy", f"{policy.name}: {policy.description}"),
        ],
    )
    findings = "".join(f"<li>{escape(line)}</li>" for line in report.findings())
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
            else f"{percent(claim.value)} [{percent(claim.ci_lower)}, {percent(claim.ci_upper)}]"
            f"<br><small>{escape(claim.test_database)}</small>"
        )
        decided = ""
        if check.decided_at_case is not None and check.decided_at is not None:
            decided = (
                f"<br><small>at case {check.decided_at_case}, {check.decided_at:%Y-%m-%d}</small>"
            )
        verdict_class = VERDICT_CLASS.get(check.verdict, "neutral")
        rows.append(
            [
                escape(check.version),
                escape(check.task),
                escape(check.metric),
                claimed,
                escape(_ci(check.observed)),
                f'<span class="{verdict_class}">{escape(check.verdict)}</span>{decided}',
                _design_cell(check.design),
            ]
        )
    claims_table = table(
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
        + claims_table
        + note
        + _withdrawn_claims(report)
        + figure("fig-claims", claims_figure(report), "Claims vs observed per version")
        + figure(
            "fig-weekly",
            weekly_figure(report),
            WEEKLY_CAPTION,
        ),
    )


def _withdrawn_claims(report: DeviceReport) -> str:
    """The claims withdrawn by the period's end, with when, by whom and why; none is tested."""
    if not report.withdrawn_claims:
        return "<p class=none>No claim of any version was withdrawn by the period's end.</p>"
    rows = [
        [escape(r.version), escape(w.claim.task), escape(w.claim.metric),
         f"{percent(w.claim.value)} [{percent(w.claim.ci_lower)}, {percent(w.claim.ci_upper)}]"
         f"<br><small>{escape(w.claim.test_database)}</small>",
         escape(f"{w.withdrawn_at:%Y-%m-%d %H:%M} UTC"), escape(w.withdrawn_by), escape(w.why)]
        for r in report.withdrawn_claims
        for w in (r.withdrawn,)
    ]  # fmt: skip
    return (
        '<h3 id="withdrawn-claims">Claims withdrawn</h3><p class=note>Kept as the registration\'s '
        "record, never tested: a withdrawn claim is in no claims test, figure or finding.</p>"
        + table(["Version", "Task", "Metric", "Claimed [CI]", "Withdrawn", "By", "Why"], rows)
    )


def _sites(report: DeviceReport) -> str:
    rows = [
        [
            escape(r.version),
            escape(r.task),
            escape(r.site),
            escape(_ci(r.metrics["sensitivity"])),
            escape(r.funnel["sensitivity"]),
            escape(_ci(r.metrics["specificity"])),
            escape(r.funnel["specificity"]),
            _design_cell(r.design),
        ]
        for r in report.sites
    ]
    sites = table(
        ["Version", "Task", "Site", "Sensitivity", "Funnel", "Specificity", "Funnel",
         "Prosp. / retro."],
        rows,
    )  # fmt: skip
    pooled = table(
        ["Version", "Task", "Metric", "Sites", "Fleet", "Random-effects pooled [95 % CI]",
         "I²", "τ²", "Q p-value"],
        [
            [
                escape(h.version), escape(h.task), escape(h.metric), str(h.n_sites),
                escape(_ci(h.fleet)),
                escape("-" if h.pooled is None else
                   f"{percent(h.pooled)} [{percent(h.lower)}, {percent(h.upper)}]"),
                escape(percent(h.i2)), escape("-" if h.tau2 is None else f"{h.tau2:.3f}"),
                escape("-" if h.q_p_value is None else f"{h.q_p_value:.3g}"),
            ]
            for h in report.heterogeneity
        ],
    )  # fmt: skip
    figures = "".join(
        figure(
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
            escape(r.task),
            escape(r.dimension.replace("_", " ")),
            escape(r.value),
            escape(_ci(r.metrics["sensitivity"])),
            escape(_ci(r.metrics["specificity"])),
            _design_cell(r.design),
        ]
        for r in report.strata
    ]
    strata_table = table(
        ["Task", "Stratum", "Value", "Sensitivity", "Specificity", "Prosp. / retro."], rows
    )
    figures = "".join(
        figure(
            f"fig-strata-{task}", strata_figure(report, task), f"Performance per stratum, {task}"
        )
        for task in dict.fromkeys(r.task for r in report.strata)
    )
    return _section(
        "strata",
        _design_line(report.design)
        + "<p class=note>All versions of the device in the window, per task.</p>"
        + strata_table
        + figures,
    )


def _recurred(view: AlertView) -> str:
    """How often the stream's detector signalled again while the alert was unresolved."""
    if view.last_recurred_at is None:
        return "-"
    return (
        f"{view.recurrences}x, last {view.last_recurred_at:%Y-%m-%d}, "
        f"up to {escape(view.highest_severity)}"
    )


def _alerts(report: DeviceReport) -> str:
    rows = []
    for view in report.alerts:
        alert = view.alert
        lifecycle = ""
        if view.acknowledged_at is not None:
            lifecycle += (
                f"acknowledged {view.acknowledged_at:%Y-%m-%d} by {escape(view.acknowledged_by)}: "
                f"{escape(view.acknowledgement)}"
            )
        if view.resolved_at is not None:
            lifecycle += (
                f"<br>resolved {view.resolved_at:%Y-%m-%d} by {escape(view.resolved_by)}: "
                f"{escape(view.resolution)}"
            )
        observed = "; ".join(
            sentence
            for sentence in (observation_sentence(alert), change_point_sentence(alert))
            if sentence
        )
        rows.append(
            [
                f'<code class="alert-id" title="{escape(alert.alert_id)}">'
                f"{escape(short_alert_id(alert.alert_id))}</code>",
                f"{alert.raised_at:%Y-%m-%d %H:%M}",
                escape(alert.detector),
                escape(alert.severity),
                escape(f"{alert.stream.device_version} {alert.stream.site_id} {alert.stream.task}"),
                escape(alert.message)
                + (f'<br><small class="observed">{escape(observed)}</small>' if observed else ""),
                f'<span class="status-{view.status.value}">{escape(view.status.value)}</span>',
                lifecycle or "-",
                _recurred(view),
            ]
        )
    counts: dict[str, int] = {}
    for view in report.alerts:
        counts[view.status.value] = counts.get(view.status.value, 0) + 1
    summary = ", ".join(f"{n} {status}" for status, n in sorted(counts.items())) or "none"
    alerts_table = table(
        ["Alert", "Raised", "Detector", "Severity", "Stream", "Message", "Status", "Lifecycle",
         "Recurred"],
        rows,
    )  # fmt: skip
    return _section(
        "alerts",
        _design_line(report.alert_design(), "Outcomes on the alerted streams")
        + f"<p>{len(report.alerts)} alert(s): {escape(summary)}. The alert column is the first 8 "
        "characters of the alert's id (<code>postmarket alerts show ID</code> takes it; the "
        "full id is in the CSV/JSON export). Where the alert's evidence counts cases of its "
        "metric, the message is followed by the observed value they give, and a CUSUM's by "
        "where it places the change: the case after its statistic was last zero, Page's "
        "maximum-likelihood estimate of when the change began.</p>" + alerts_table,
    )


def _budget_sentence(report: DeviceReport) -> str:
    """Why a restart costs no more false alarms than planned, with the plan's numbers."""
    per_stream = ""
    if report.promise is not None:
        plan = report.promise.plan
        per_stream = (
            f" (the plan's {plan.budget_per_year:g} false alarms a year among "
            f"{plan.fleet_streams} streams: at most {plan.budget_per_year / plan.fleet_streams:.3g}"
            " a year for all of a stream's tests, restarts included)"
        )
    return (
        "Each restart is paid for by the fleet false-alarm budget: a restarted claims test is "
        "a new test on the cases that follow, at the same alpha = s/(1+s) for its share s of "
        f"the budget{per_stream}, and follows a rejection, so a claims test and all its "
        "restarts in a year expect at most alpha + alpha² + ... = s false rejections however "
        "many reviews there are. Restarting a CUSUM adds no false alarm."
    )


def _reviews(report: DeviceReport) -> str:
    """Every review decision of the period; nothing at all without one."""
    if not report.reviews:
        return ""
    rows = [
        [
            escape(f"{r.decided_at:%Y-%m-%d %H:%M} UTC")
            + f'<br><small>decision <code title="{escape(r.decision_id)}">'
            f"{escape(short_alert_id(r.decision_id))}</code></small>",
            escape(r.decided_by),
            escape(f"{r.stream.device_version} {r.stream.site_id} {r.stream.task}"),
            f'<code class="alert-id" title="{escape(r.alert_id)}">'
            f"{escape(short_alert_id(r.alert_id))}</code><br><small>"
            + escape(f"{r.detector}, raised {r.alert_raised_at:%Y-%m-%d}")
            + "</small>",
            escape(r.reason),
        ]
        for r in report.reviews
    ]
    streams = len({r.stream for r in report.reviews})
    section_id, heading = REVIEWS_SECTION
    return section(
        section_id,
        heading,
        f"<p>{len(report.reviews)} decision(s) on {streams} stream(s) in the period. Each "
        "closed the review of a claim-based alert of a site's stream (a CUSUM, a claims test, "
        "an estimate, ...): the stream's claims tests that had rejected started again from "
        "the next case, as new tests, with the CUSUMs that had alarmed since; no reference "
        "moved and no claim changed. The decision's and the alert's full ids are in the "
        "CSV/JSON export (<code>reviews</code>) and in the audit trail "
        "(<code>stream.review</code>).</p>"
        f"<p class=note>{escape(_budget_sentence(report))} The claims test of this document "
        "(claims section) runs once over all the period's cases: no review restarts it.</p>"
        + table(["Decided", "By", "Stream", "Alert", "Why"], rows),
    )


def _versions(report: DeviceReport) -> str:
    rows = [
        [
            escape(v.version),
            escape(v.status),
            escape(" ".join(x for x in (v.regulator, v.reference) if x) or "-"),
            escape(v.registered_on or "-"),
            escape(v.version_change),
            escape(v.change_record),
            f'<span class="{"bad" if v.needs_registration else "ok"}">'
            f"{'needs registration' if v.needs_registration else 'may run'}</span>"
            f"<br><small>{escape(v.decision)}</small>",
            escape(f"{v.first_seen:%Y-%m-%d}" if v.first_seen else "-")
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
    versions_table = table(
        ["Version", "Status", "Registration", "Registered on", "Version change",
         "Change record", f"Decision ({report.policy.name})", "First seen", "Sites",
         "Prosp. / retro."],
        rows,
    )  # fmt: skip
    return _section("versions", _design_line(report.design) + versions_table)


def _gate(report: DeviceReport) -> str:
    scored = DesignCounts(0, sum(run.cases for run in report.gates.runs))
    what = (
        "Test database cases scored by the runs below (a standard test database is retrospective)"
    )
    return _section("gate", _design_line(scored, what) + gate_body(report.gates))


def _provenance(report: DeviceReport) -> str:
    design_rows = []
    for design in ("prospective", "retrospective"):
        predictions, followed = report.predictions(design), report.followed_up(design)
        design_rows.append(
            [
                escape(design),
                str(predictions),
                str(followed),
                escape(percent(followed / predictions if predictions else None)),
            ]
        )
    by_design = table(
        ["Study design", "Predictions", "With final truth", "Follow-up completeness"],
        design_rows,
    )
    detail = table(
        ["Version", "Site", "Task", "Design", "Predictions", "With truth", "Completeness"],
        [
            [
                escape(r.version), escape(r.site), escape(r.task), escape(r.study_design),
                str(r.predictions), str(r.outcomes), escape(percent(r.completeness)),
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
        + f"<p>Ground truth sources: {escape(sources or '-')}. "
        f"Prediction times: {escape(span)}.</p>"
        + detail
        + figure("fig-provenance", provenance_figure(report), "Outcomes per week by design"),
    )


def _readers(report: DeviceReport) -> str:
    rows = [
        [
            escape(r.version), escape(r.task), escape(r.site), str(r.pairs),
            escape(percent(r.observed_agreement)),
            escape(f"{r.kappa.kappa:.3f}" if r.kappa else "-"),
            escape(f"{r.kappa.lower:.3f} - {r.kappa.upper:.3f}" if r.kappa else "-"),
        ]
        for r in report.reader_agreement
    ]  # fmt: skip
    reads_table = (
        table(
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
        "use the large-sample standard error of Fleiss, Cohen and Everitt (1969).</p>"
        + reads_table,
    )


def report_sections(report: DeviceReport) -> str:
    """Every section after the summary, as the report and the PSUR show them."""
    return "".join(
        (
            _claims(report),
            _sites(report),
            _strata(report),
            _alerts(report),
            _reviews(report),
            _versions(report),
            _gate(report),
            _provenance(report),
            _readers(report),
        )
    )


def render_html(report: DeviceReport) -> str:
    """The report as one self-contained HTML document."""
    title = f"Post-market surveillance report: {report.device.device_id}"
    digest = content_hash(report)
    identity = document_id(report, digest)
    note = (
        f"Period {escape(report.period)} (UTC, both days included). Document "
        f"{escape(identity)}. Read-only evidence from the post-market surveillance pipeline."
    )
    return document(title, identity, note, _summary(report, digest) + report_sections(report))


# --- PDF -----------------------------------------------------------------------------------


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
