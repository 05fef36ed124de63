"""Render a :class:`~evidence.psur.Psur` as HTML, PDF, JSON or CSV.

The PSUR's own sections (conclusions, exposure, the trend reports of MDR Art. 88) come
first, then the year's device report sections (with the year's review decisions, when there
is one, after the alerts) and the re-baselines, in the order of MDR
Art. 86 (1): conclusions of the benefit-risk determination, main findings of the
post-market clinical follow-up, volume of sales and the population using the device.
"""

from __future__ import annotations

from pathlib import Path

from evidence.html import document, escape, percent, section, table
from evidence.pdf import ReportError, write_pdf
from evidence.psur import (
    Psur,
    export_psur_csv,
    export_psur_json,
    psur_document_id,
    psur_hash,
)
from evidence.report_render import VERDICT_CLASS, facts_table, report_sections
from evidence.trend import TrendResult

FORMATS = ("html", "pdf", "json", "csv")


def _identity(psur: Psur, digest: str) -> str:
    report = psur.report
    facts = facts_table(
        report,
        psur_document_id(psur, digest),
        digest,
        hashed="every table",
        same_hash_for="year",
        about=[
            ("Period", f"calendar year {psur.year}: {report.period} (UTC)"),
            ("Change-control policy", report.policy.name),
        ],
    )
    return section("identity", "Device, period and document", facts)


def _conclusions(psur: Psur) -> str:
    rows = [
        [escape(c.version), escape(c.task), escape(c.metric), escape(c.observed),
         f'<span class="{VERDICT_CLASS.get(c.verdict, "")}">{escape(c.conclusion)}</span>']
        for c in psur.conclusions
    ]  # fmt: skip
    withdrawn = len(psur.report.withdrawn_claims)
    reviews = len(psur.report.reviews)
    return section(
        "conclusions",
        "Conclusions per claim",
        "<p>Each registered claim of each version that ran in the year, against the field "
        "cases with final truth, by the anytime-valid claims test the pipeline runs.</p>"
        + table(["Version", "Task", "Metric", "Observed [95 % CI] (n)", "Conclusion"], rows)
        + (
            f"<p class=note>{withdrawn} claim(s) withdrawn by the year's end: no conclusion is "
            'drawn on them (<a href="#withdrawn-claims">Claims withdrawn</a>).</p>'
            if withdrawn
            else ""
        )
        + (
            f"<p class=note>{reviews} review decision(s) restarted the pipeline's claims tests "
            'on streams in the year (<a href="#reviews">Review decisions</a>); the '
            "conclusions above come from one test over all the year's cases, which no review "
            "restarts.</p>"
            if reviews
            else ""
        ),
    )


def _exposure(psur: Psur) -> str:
    rows = [
        [escape(r.version), escape(r.site), str(r.predictions), str(r.with_truth)]
        for r in psur.exposure
    ]
    total = sum(r.predictions for r in psur.exposure)
    return section(
        "exposure",
        "Exposure: cases per version and site",
        f"<p>{total} cases in the year.</p>"
        + table(["Version", "Site", "Cases", "With final truth"], rows),
    )


def verdict_line(result: TrendResult) -> str:
    """The trend verdict as the PSUR prints it, with the one-sided p-value when tested."""
    p_value = "" if result.p_value is None else f" (one-sided p = {result.p_value:.4g})"
    return f"Verdict: {result.verdict}{p_value}"


TREND_CLASS = {"significant deterioration": "bad", "no significant deterioration": "ok"}


def _trend(result: TrendResult) -> str:
    plan = result.plan
    periods = [
        ("Baseline", plan.baseline_start, plan.baseline_end, result.baseline),
        ("Observation", plan.observation_start, plan.observation_end, result.observation),
    ]
    rows = [
        [label, escape(f"{first} to {last}"), str(p.successes), str(p.n), percent(p.estimate)]
        for label, first, last, p in periods
    ]
    amendments = "".join(
        f"<li>{a.at:%Y-%m-%d} by {escape(a.by)}"
        + (' <span class="bad">after the observation period began</span>' if a.after_data else "")
        + f": {escape(a.why)}</li>"
        for a in result.amendments
    )
    # One plan's statement, counts and verdict kept on one printed page.
    return (
        '<div class="trend-plan" style="break-inside: avoid">'
        f"<h3>Plan {escape(plan.name)}: {escape(plan.metric)}, "
        f"{escape(plan.version or 'every version')}</h3>"
        f"<p>{escape(result.statement)}; alpha {plan.alpha:g}; no conclusion with fewer "
        f"than {plan.min_cases} cases in a period.</p>"
        + table(["Period", "Days", f"Successes ({plan.metric})", "Cases", "Proportion"], rows)
        + f'<p class="{TREND_CLASS.get(result.verdict, "neutral")}">'
        f"{escape(verdict_line(result))}</p>"
        + (f"<p>Amendments:</p><ul>{amendments}</ul>" if amendments else "<p>Not amended.</p>")
        + "</div>"
    )


def _trends(psur: Psur) -> str:
    body = "".join(_trend(result) for result in psur.trends) or (
        f'<p class="none">No trend plan of this device was stored by the end of {psur.year}, '
        "so no trend is reported.</p>"
    )
    return section(
        "trends",
        "Trend reporting (MDR Art. 88)",
        "<p>Every surveillance plan of the device stored before the year's end, as it stood "
        "then, judged on the evidence store as <code>postmarket plan trend</code> judges "
        "it.</p>" + body,
    )


def _rebaselines(psur: Psur) -> str:
    rows = [
        [f"{r.decided_at:%Y-%m-%d}", escape(r.decided_by),
         escape(f"{r.version} {r.site} {r.task}"), f"<code>{escape(r.alert_id[:8])}</code>",
         escape(r.reason)]
        for r in psur.rebaselines
    ]  # fmt: skip
    return section(
        "rebaselines",
        "Re-baselining decisions",
        "<p>Decisions that a stream's label-free reference was out of date (a real change "
        "at the site, accepted); claims are never re-baselined.</p>"
        + table(["Decided", "By", "Stream", "Alert", "Reason"], rows),
    )


def render_psur_html(psur: Psur) -> str:
    """The PSUR as one self-contained HTML document."""
    digest = psur_hash(psur)
    identity = psur_document_id(psur, digest)
    title = f"Periodic safety update report {psur.year}: {psur.report.device.device_id}"
    note = (
        f"EU MDR Art. 86. Document {escape(identity)}. Read-only evidence from the "
        "post-market surveillance pipeline."
    )
    body = (
        _identity(psur, digest)
        + _conclusions(psur)
        + _exposure(psur)
        + _trends(psur)
        + report_sections(psur.report)
        + _rebaselines(psur)
    )
    return document(title, identity, note, body)


def write_psur(psur: Psur, out: Path, fmt: str) -> list[Path]:
    """Write the PSUR to ``out`` (a directory for ``csv``); the files written."""
    if fmt not in FORMATS:
        raise ReportError(f"unknown format {fmt!r}; use one of {', '.join(FORMATS)}")
    if fmt == "csv":
        return export_psur_csv(psur, out)
    out.parent.mkdir(parents=True, exist_ok=True)
    if fmt == "json":
        out.write_text(export_psur_json(psur), encoding="utf-8")
    elif fmt == "html":
        out.write_text(render_psur_html(psur), encoding="utf-8")
    else:
        write_pdf(render_psur_html(psur), out)
    return [out]
