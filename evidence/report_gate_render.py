"""The gate section of the report and the PSUR, as HTML: the runs, whether each version was
registered after a passing gate, and every verdict row of every run as it was stored."""

from __future__ import annotations

from evidence.html import escape, percent, table
from evidence.report_gate import GateEvidence, GateRegistration, criterion_sentence
from evidence.testdb_gate import GateRow
from evidence.testdb_gate_store import GateRun

INTRODUCTION = (
    "<p class=note>Before a version is registered or deployed, its outputs on a standard test "
    "database are judged against its registered claims under acceptance criteria fixed before "
    "the run (<code>postmarket testdb run</code>): overall, per hospital (generalizability: "
    "funnel limits around the database's own proportion, heterogeneity I² with its "
    "Higgins-Thompson interval), per slice-thickness band and scanner (compatibility), and the "
    "readers' agreement on the database's truth. Each run is an evidence record with its own "
    "<code>testdb.gate</code> audit entry; the numbers below are the stored ones.</p>"
)


OUTCOME_CLASS = {"met": "ok", "FAILED": "bad"}
"""A reported row (no criterion, or no cases) is neutral: reporting is not passing."""


def gate_body(gates: GateEvidence) -> str:
    """The section's HTML (without its heading)."""
    summary = f"<p class=gate-summary>{escape(gates.registration_sentence())}</p>"
    if not gates.runs:
        return INTRODUCTION + summary + f"<p class=none>{escape(gates.none_sentence())}</p>"
    return (
        INTRODUCTION
        + summary
        + _runs(gates)
        + "<h3>Registration after the gate</h3>"
        + _registrations(gates.registrations)
        + "".join(_verdict(run) for run in gates.runs)
    )


def _outcome(passed: bool) -> str:
    return '<span class="ok">passed</span>' if passed else '<span class="bad">FAILED</span>'


def _runs(gates: GateEvidence) -> str:
    rows = []
    for run in gates.runs:
        failed = sum(1 for row in run.rows if row.met is False)
        earlier = gates.earlier_run(run.run_id)
        rows.append(
            [
                f'<code class="gate-run" title="{escape(run.run_id)}">{escape(run.run_id[:8])}'
                "</code>"
                + (f"<br><small>same inputs as {escape(earlier[:8])}</small>" if earlier else ""),
                escape(f"{run.run_at:%Y-%m-%d %H:%M}") + f"<br><small>{escape(run.run_by)}</small>",
                escape(run.version),
                escape(run.database)
                + f"<br><small>content <code>{escape(run.database_sha256[:16])}</code></small>",
                escape(f"{run.cases:,}")
                + f"<br><small>predictions <code>{escape(run.predictions_sha256[:16])}</code>"
                "</small>",
                escape(criterion_sentence(run.policy)),
                _outcome(run.passed)
                + (f"<br><small>{failed} row(s) failed</small>" if failed else ""),
            ]
        )
    return table(
        ["Run", "Run at, by", "Version", "Database (content hash)", "Cases",
         "Pre-specified acceptance criterion", "Verdict"],
        rows,
    )  # fmt: skip


def _registrations(registrations: tuple[GateRegistration, ...]) -> str:
    rows = []
    for r in registrations:
        after = r.after_passing_gate
        css = "neutral" if after is None else "ok" if after else "bad"
        rows.append(
            [
                escape(r.version),
                escape(r.status),
                escape(f"{r.registered_at:%Y-%m-%d %H:%M}" if r.registered_at else "-"),
                f'<span class="{css}">{escape(r.sentence())}</span>',
            ]
        )
    return table(["Version", "Status", "Registered at", "Registered after a passing gate"], rows)


def _number(row: GateRow, value: float) -> str:
    """A kappa as a number, a proportion (or I²) as a percentage."""
    return f"{value:.3f}" if row.metric == "kappa" else percent(value)


def _estimate(row: GateRow) -> str:
    if row.estimate is None:
        return "-"
    interval = (
        ""
        if row.lower is None or row.upper is None
        else f" [{_number(row, row.lower)}, {_number(row, row.upper)}]"
    )
    counted = f" ({row.successes}/{row.n})" if row.successes is not None else f" (n {row.n})"
    return f"{_number(row, row.estimate)}{interval}{counted}"


def _verdict(run: GateRun) -> str:
    rows = [
        [
            escape(row.metric),
            escape(row.stratum.replace("_", " ")),
            escape(row.value),
            escape(_estimate(row)) + f"<br><small>{escape(row.interval)}</small>",
            escape("-" if row.acceptable is None else f"{row.acceptable:.3f}"),
            escape(row.criterion),
            escape(row.funnel or "-"),
            f'<span class="{OUTCOME_CLASS.get(row.outcome, "neutral")}">'
            f"{escape(row.outcome)}</span>",
            escape(row.note or ""),
        ]
        for row in run.rows
    ]
    heading = (
        f"Run {run.run_id[:8]}: version {run.version} on {run.database}, "
        f"{'passed' if run.passed else 'FAILED'}"
    )
    return f"<h3>{escape(heading)}</h3>" + table(
        ["Metric", "Stratum", "Value", "Estimate [interval] (n)", "Acceptable", "Criterion",
         "Funnel", "Outcome", "Note"],
        rows,
    )  # fmt: skip
