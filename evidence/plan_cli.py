"""``postmarket plan``: trend plans fixed in advance (MDR Art. 88), and their trend reports."""

from __future__ import annotations

import json
from datetime import date
from typing import Annotated

import typer

from evidence.cli_common import (
    ActorOption,
    DeviceOption,
    UrlOption,
    actor_or_login,
    fail,
    open_store,
)
from evidence.trend import METRICS, Metric, PlanError, TrendPlan, TrendResult

plan_app = typer.Typer(
    help="Trend plans (EU MDR Art. 88): a metric, a baseline and an observation period and "
    "a test, fixed before the data are seen; changed only by audited amendments.",
    no_args_is_help=True,
)

NameOption = Annotated[str, typer.Option("--name", help="the plan's name, e.g. sens-2027")]
MetricOption = Annotated[
    Metric, typer.Option("--metric", metavar="METRIC", help=f"one of {', '.join(METRICS)}")
]
BaselineOption = Annotated[str, typer.Option("--baseline", help="FIRST:LAST days of the baseline")]
ObservationOption = Annotated[
    str, typer.Option("--observation", help="FIRST:LAST days observed against it")
]
AlphaOption = Annotated[
    float, typer.Option("--alpha", help="the test's false-alarm rate per evaluation")
]
MinCasesOption = Annotated[
    int, typer.Option("--min-cases", help="fewer cases in a period: no conclusion")
]
VersionOption = Annotated[
    str | None, typer.Option("--version", help="one version only (default: all pooled)")
]


def _period(text: str, option: str) -> tuple[date, date]:
    first, sep, last = text.partition(":")
    try:
        if not sep:
            raise ValueError
        return date.fromisoformat(first), date.fromisoformat(last)
    except ValueError:
        raise fail(f"{option} {text!r}: give FIRST:LAST as YYYY-MM-DD:YYYY-MM-DD") from None


def _plan(
    device: str,
    name: str,
    metric: Metric,
    baseline: str,
    observation: str,
    alpha: float,
    min_cases: int,
    version: str | None,
) -> TrendPlan:
    baseline_first, baseline_last = _period(baseline, "--baseline")
    observed_first, observed_last = _period(observation, "--observation")
    try:
        return TrendPlan(
            name=name,
            device_id=device,
            metric=metric,
            baseline_start=baseline_first,
            baseline_end=baseline_last,
            observation_start=observed_first,
            observation_end=observed_last,
            alpha=alpha,
            min_cases=min_cases,
            version=version,
        )
    except PlanError as error:
        raise fail(str(error)) from None


@plan_app.command("record")
def record(
    device: DeviceOption,
    name: NameOption,
    metric: MetricOption,
    baseline: BaselineOption,
    observation: ObservationOption,
    alpha: AlphaOption = 0.05,
    min_cases: MinCasesOption = 30,
    version: VersionOption = None,
    actor: ActorOption = None,
    url: UrlOption = None,
) -> None:
    """Fix a trend plan before its observation period's data are seen (audited)."""
    from evidence.trend_store import record_plan

    plan = _plan(device, name, metric, baseline, observation, alpha, min_cases, version)
    with open_store(url) as store:
        try:
            record_plan(store, plan, actor_or_login(actor))
        except PlanError as error:
            raise fail(str(error)) from None
    typer.echo(f"recorded plan {plan.name} of {plan.device_id}: {plan.metric}, alpha {alpha:g}")


@plan_app.command("amend")
def amend(
    device: DeviceOption,
    name: NameOption,
    metric: MetricOption,
    baseline: BaselineOption,
    observation: ObservationOption,
    why: Annotated[str, typer.Option("--why", help="why the plan changes (kept in the audit)")],
    alpha: AlphaOption = 0.05,
    min_cases: MinCasesOption = 30,
    version: VersionOption = None,
    actor: ActorOption = None,
    url: UrlOption = None,
) -> None:
    """Replace a recorded plan, with the reason; every trend report lists the amendment."""
    from evidence.trend_store import amend_plan

    plan = _plan(device, name, metric, baseline, observation, alpha, min_cases, version)
    with open_store(url) as store:
        try:
            amendment = amend_plan(store, plan, actor_or_login(actor), why)
        except PlanError as error:
            raise fail(str(error)) from None
    when = "after its observation period began" if amendment.after_data else "before its data"
    typer.echo(f"amended plan {plan.name} of {plan.device_id} ({when})")


@plan_app.command("list")
def list_plans(
    device: Annotated[str | None, typer.Option("--device", help="one device only")] = None,
    url: UrlOption = None,
) -> None:
    """Every recorded plan, as last amended."""
    from evidence.trend_store import list_plans as stored_plans

    with open_store(url, read_only=True) as store:
        plans = stored_plans(store, device)
    if not plans:
        typer.echo("no trend plan recorded (add one with `postmarket plan record`)")
        return
    typer.echo(f"{'device':<16} {'plan':<20} {'metric':<12} {'baseline':<23} observation")
    for plan in plans:
        typer.echo(
            f"{plan.device_id:<16} {plan.name:<20} {plan.metric:<12} "
            f"{plan.baseline_start}:{plan.baseline_end} "
            f"{plan.observation_start}:{plan.observation_end}"
        )


@plan_app.command("trend")
def trend(
    device: DeviceOption,
    name: NameOption,
    as_json: Annotated[bool, typer.Option("--json", help="the result as one JSON object")] = False,
    url: UrlOption = None,
) -> None:
    """The trend report of a plan: baseline, observation, the test and its verdict.

    Exit 0 without a significant deterioration, 4 with one.
    """
    from evidence.trend_store import load_plan, trend_of

    with open_store(url, read_only=True) as store:
        try:
            plan, amendments = load_plan(store, device, name)
        except PlanError as error:
            raise fail(str(error)) from None
        result = trend_of(store, plan, amendments)
    typer.echo(json.dumps(_as_json(result), indent=2) if as_json else _as_text(result))
    if result.verdict == "significant deterioration":
        raise typer.Exit(4)


def _as_json(result: TrendResult) -> dict[str, object]:
    def share(p: object) -> dict[str, object]:
        return {k: getattr(p, k) for k in ("successes", "n", "estimate", "lower", "upper")}

    return {
        "plan": result.plan.as_json(),
        "baseline": share(result.baseline),
        "observation": share(result.observation),
        "p_value": result.p_value,
        "verdict": result.verdict,
        "method": result.statement,
        "amendments": [
            {"at": a.at.isoformat(), "by": a.by, "why": a.why, "after_data": a.after_data}
            for a in result.amendments
        ],
    }


def _as_text(result: TrendResult) -> str:
    plan = result.plan

    def line(label: str, p: object, first: date, last: date) -> str:
        estimate = getattr(p, "estimate", None)
        shown = "no cases" if estimate is None else f"{estimate:.3f} ({p.successes}/{p.n})"  # type: ignore[attr-defined]
        return f"  {label:<12} {first}:{last}  {plan.metric} {shown}"

    lines = [
        f"trend plan {plan.name} of {plan.device_id}"
        + (f" {plan.version}" if plan.version else " (every version)"),
        line("baseline", result.baseline, plan.baseline_start, plan.baseline_end),
        line("observation", result.observation, plan.observation_start, plan.observation_end),
        f"  verdict      {result.verdict}"
        + ("" if result.p_value is None else f" (one-sided p = {result.p_value:.4g})"),
        f"  method       {result.statement}",
    ]
    for amendment in result.amendments:
        flag = " AFTER DATA WERE SEEN" if amendment.after_data else ""
        lines.append(
            f"  amended      {amendment.at:%Y-%m-%d} by {amendment.by}{flag}: {amendment.why}"
        )
    return "\n".join(lines)
