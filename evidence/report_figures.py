"""The figures of a :class:`~evidence.report.DeviceReport`: each a PNG in base64,
for :mod:`~evidence.report_render` to inline, or None with nothing to draw.

matplotlib's ``Figure`` is made directly, without pyplot, and needs no display.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Sequence
from datetime import date
from typing import TYPE_CHECKING

from evidence.html import percent
from evidence.report import MIN_WEEKLY_CASES, DeviceReport
from evidence.report_outcomes import Proportion
from evidence.report_sites import FUNNEL_COVERAGE
from evidence.snapshots import Snapshot

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure


def _png(figure: Figure) -> str:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def _new_figure(width: float, height: float) -> Figure:
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), layout="constrained")


def _observed(axes: Axes, observed: Proportion, row: int, color: str) -> None:
    """The observed value at ``row`` with its Wilson 95 % CI; nothing without cases."""
    if observed.estimate is None:
        return
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
        color = "#c0392b" if check.verdict == "below claim" else "#1f6fb2"
        _observed(axes, check.observed, row, color)
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

    from detectors.statistics import funnel_plot_limits

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
        axes.set_title(f"{metric} (fleet {percent(target)})", fontsize=9)
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
            _observed(axes, stratum.metrics[metric], row, "#1f6fb2")
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
