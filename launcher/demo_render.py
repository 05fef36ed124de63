"""What ``postmarket demo`` shows at the end: one row per injected change (detected, by
what, how late, against its bound), the false alarms against the fleet budget, the gate's
verdicts, and where to look next."""

from __future__ import annotations

import urllib.parse
from typing import TYPE_CHECKING

from rich.console import Console
from rich.panel import Panel
from rich.table import Table

from launcher.demo import FALSE_ALARM_BUDGET
from postmarket.metrics import ALERTS

if TYPE_CHECKING:
    from launcher.demo import DemoResult
    from simulator.scoring import Scorecard


def _delay(value: float | int | None, unit: str = "") -> str:
    if value is None:
        return "-"
    return f"{value:g}{unit}"


def detection_table(scorecard: Scorecard) -> Table:
    """One row per injected change: detected, by what, how late, against its bound."""
    table = Table(title="injected changes and what the pipeline made of them")
    for column in ("injected change", "expected signal", "detected", "by", "streams"):
        table.add_column(column)
    for column in ("delay (cases)", "delay (sim. days)", "per-site (d)", "pooled (d)"):
        table.add_column(column, justify="right")
    table.add_column("bound")
    for change in scorecard.changes:
        verdict = "[green]yes[/]" if change.detected else "[red]no[/]"
        if change.detected and not change.within_bound:
            verdict = "[yellow]late[/]"
        streams = f"{change.streams_detected}/{change.streams_affected}"
        table.add_row(
            change.name,
            change.expected_signal,
            verdict,
            ", ".join(change.detectors) or "-",
            streams if change.streams_affected else "-",
            _delay(change.delay_cases),
            _delay(change.delay_days),
            _delay(change.site_delay_days),
            _delay(change.pooled_delay_days),
            str(change.bound),
        )
    return table


def render(result: DemoResult, console: Console) -> None:
    """The detection table, the false alarms, and where everything is."""
    from streams.false_alarm_budget import POOLED_TESTS_PER_GROUP
    from streams.monitor_policy import TESTS_PER_STREAM

    card = result.scorecard
    console.print(detection_table(card))
    untouched = len(card.false_alarms_on_untouched)
    style = "green" if not card.false_alarms else "yellow"
    console.print(
        f"[{style}]false alarms: {len(card.false_alarms)}[/] "
        f"({untouched} on streams or sites no change touched) among {card.alerts} alerts; "
        f"fleet budget {FALSE_ALARM_BUDGET} expected false alarms over the run, shared by "
        f"{TESTS_PER_STREAM} tests on each of {result.streams} streams and "
        f"{POOLED_TESTS_PER_GROUP} pooled tests on each of {result.pooled_groups} versions' "
        "tasks, each designed at its acceptable level (the claim's lower 95% bound)",
        highlight=False,
    )
    for alarm in card.false_alarms:
        console.print(
            f"  {alarm.detector} on {alarm.where} at {alarm.detected_at:%Y-%m-%d %H:%M}",
            highlight=False,
        )
    if result.gate is not None:
        from launcher.demo_gate import GATE_DEVICE, gate_summary

        gate_summary(result.gate, console, result.reports.get(GATE_DEVICE))
    promql = urllib.parse.quote(f"sum by (site_id, detector) ({ALERTS}_total)")
    reports = "\n".join(f"report ({device}): {path}" for device, path in result.reports.items())
    timing = ", ".join(f"{name} {seconds:.0f} s" for name, seconds in result.seconds.items())
    console.print(
        Panel.fit(
            f"{result.scenario}: {result.records} records, {result.predictions} predictions; "
            f"{result.outcomes_stored} outcomes and {result.alerts_stored} alerts stored\n"
            f"{reports}\n"
            f"ground truth: {result.ground_truth}\n"
            f"evidence store: {result.evidence_url}\n"
            f"worker metrics: {result.metrics_url}\n"
            f"Prometheus: {result.prometheus_url}/graph?g0.expr={promql} "
            f"({result.prometheus_outcomes:g} outcomes scraped)\n"
            f"logs: {result.logs}\n"
            f"steps: {timing}"
            + (
                ""
                if result.kept_running
                else "\n(the stack is stopped; --keep-running leaves the metrics and Prometheus up)"
            ),
            title="where to look",
        ),
        soft_wrap=True,
    )
