"""``postmarket``: the one command for operators, hospital IT and developers."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from collectors.cli import collector_app
from dashboards.cli import dashboards_app
from postmarket.evidence.cli import (
    alerts_app,
    audit_app,
    evidence_app,
    registry_app,
    report_command,
)
from postmarket.stack.cli import stack_app

app = typer.Typer(
    name="postmarket",
    help="Post-market surveillance of medical-AI devices: collectors, workers, local stack.",
    no_args_is_help=True,
    rich_markup_mode="rich",
    add_completion=False,
    pretty_exceptions_show_locals=False,
)
schemas_app = typer.Typer(help="JSON Schemas of the event contracts.", no_args_is_help=True)
app.add_typer(schemas_app, name="schemas")
app.add_typer(stack_app, name="stack")
app.add_typer(collector_app, name="collector")
app.add_typer(registry_app, name="registry")
app.add_typer(alerts_app, name="alerts")
app.add_typer(audit_app, name="audit")
app.add_typer(evidence_app, name="evidence")
app.command("report")(report_command)
app.add_typer(dashboards_app, name="dashboards")


@schemas_app.command("export")
def schemas_export(
    directory: Annotated[Path, typer.Argument(help="where to write the files")] = Path("schemas"),
) -> None:
    """Write one JSON Schema per topic into DIRECTORY."""
    from postmarket.contracts.schemas import export_schemas

    for path in export_schemas(directory):
        typer.echo(path)


@app.command()
def worker(
    loglevel: Annotated[str, typer.Option(help="debug, info, warning or error")] = "info",
) -> None:
    """Run a stream worker (needs the "worker" extra) against the configured Kafka."""
    try:
        from streams.worker import run
    except ModuleNotFoundError as missing:
        raise typer.BadParameter(
            f"the worker needs the [worker] extra ({missing.name} is not installed)"
        ) from None
    from postmarket.stack.processes import StackError

    try:
        run(loglevel)
    except StackError as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(1) from None


@app.command()
def replay(
    file: Annotated[Path, typer.Argument(help="CSV or Parquet file of historical events")],
    kind: Annotated[str, typer.Option(help="predictions or followups")] = "predictions",
    mapping: Annotated[
        Path | None, typer.Option(help="TOML file: tables 'columns' and 'constants' (by field)")
    ] = None,
    column: Annotated[
        list[str] | None, typer.Option(help="FIELD=COLUMN, e.g. score=Score (repeatable)")
    ] = None,
    constant: Annotated[
        list[str] | None, typer.Option(help="FIELD=VALUE for every row (repeatable)")
    ] = None,
    naive_timezone: Annotated[
        str, typer.Option(help="time zone of date-times without an offset")
    ] = "UTC",
    dry_run: Annotated[bool, typer.Option("--dry-run", help="validate only; send nothing")] = False,
    show_invalid: Annotated[int, typer.Option(help="invalid rows to print")] = 20,
) -> None:
    """Publish historical events from FILE as retrospective events with their event times."""
    from postmarket.config import Settings

    try:
        from streams.replay import run_replay_command
    except ModuleNotFoundError as missing:
        raise typer.BadParameter(
            f"replay needs the [worker] extra ({missing.name} is not installed)"
        ) from None
    code = run_replay_command(
        file,
        kind,
        mapping,
        column or [],
        constant or [],
        naive_timezone,
        dry_run,
        show_invalid,
        Settings().kafka_bootstrap,
    )
    raise typer.Exit(code)


@app.command()
def demo(
    keep_running: Annotated[
        bool, typer.Option("--keep-running", help="leave the stack up afterwards")
    ] = False,
    timeout: Annotated[float, typer.Option(help="seconds to wait for each step")] = 120.0,
) -> None:
    """Start the local stack and send one de-identified case through the whole pipeline."""
    from rich.console import Console

    from postmarket.config import Settings
    from postmarket.demo import DemoError, render, run_demo
    from postmarket.local_worker import WorkerStartError
    from postmarket.stack import manager
    from postmarket.stack.cli import RichProgress
    from postmarket.stack.processes import StackError

    console = Console()
    failed = False
    try:
        with console.status("starting the local stack") as status:
            stack = manager.up(Settings(), progress=RichProgress(status))
        result = run_demo(stack.settings, console, timeout)
        render(result, console)
    except (DemoError, StackError, WorkerStartError) as error:
        console.print(f"[red]demo failed:[/] {error}", highlight=False)
        failed = True
    finally:
        if keep_running:
            console.print(
                "the stack keeps running: [bold]postmarket stack status[/], then "
                "[bold]postmarket stack down[/]"
            )
        else:
            with console.status("stopping the local stack"):
                manager.down(Settings())
    if failed:
        raise typer.Exit(1)


@app.command()
def simulate(
    scenario: Annotated[
        Path, typer.Option("--scenario", help="scenario TOML file (see scenarios/demo.toml)")
    ],
    seed: Annotated[int | None, typer.Option(help="override the scenario's seed")] = None,
    bootstrap: Annotated[
        str | None, typer.Option(help="Kafka host:port (default: the configured one)")
    ] = None,
    ground_truth: Annotated[
        Path, typer.Option(help="where to write the ground truth of the injected changes")
    ] = Path("simulation-ground-truth.json"),
    output: Annotated[
        Path | None,
        typer.Option(help="write the records to this JSON-lines file instead of Kafka"),
    ] = None,
    state_dir: Annotated[
        Path | None, typer.Option(help="the sites' outboxes and case indexes (default: temporary)")
    ] = None,
) -> None:
    """Run a simulated fleet through the real collectors into Kafka (seeded, reproducible)."""
    from simulator.cli import run_simulate_command

    raise typer.Exit(
        run_simulate_command(scenario, seed, bootstrap, ground_truth, output, state_dir)
    )


def main() -> None:
    app()
