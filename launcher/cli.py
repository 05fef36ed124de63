"""``postmarket``: the one command for operators, hospital IT and developers."""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from typer.core import TyperGroup

from collectors.cli import collector_app
from dashboards.cli import dashboards_app
from evidence.cli import (
    alerts_app,
    audit_app,
    evidence_app,
    psur_command,
    registry_app,
    report_command,
)
from evidence.plan_cli import plan_app
from evidence.testdb_cli import testdb_app
from postmarket.preflight import CONNECT_TIMEOUT_S, BootstrapOption, ConnectTimeoutOption
from postmarket.site_keys_cli import site_keys_app

if TYPE_CHECKING:
    from typer._click import Command, Context, HelpFormatter  # Typer bundles its own Click

LAZY_GROUPS = {"stack": ("launcher.stack.cli", "stack_app")}
"""Groups imported when run, not when listed: the stack's CLI loads pydantic-settings and
rich at import (about 0.4 s that ``postmarket --help`` and every store command would pay)."""
STACK_HELP = (
    "Run the local stack on 127.0.0.1: Apache Kafka (KRaft), Prometheus and, on request, "
    "PostgreSQL. State and logs live in POSTMARKET_HOME (default ./.postmarket)."
)
"""The stack group's help for ``postmarket --help``; a test keeps it equal to the real one."""


class LazyGroups(TyperGroup):
    """The root group: a group of LAZY_GROUPS is a placeholder in help until it is run."""

    _listing = False

    def format_help(self, ctx: Context, formatter: HelpFormatter) -> None:
        self._listing = True
        try:
            super().format_help(ctx, formatter)
        finally:
            self._listing = False

    def get_command(self, ctx: Context, cmd_name: str) -> Command | None:
        known = self.commands.get(cmd_name)
        if cmd_name in LAZY_GROUPS and not self._listing and not _loaded(known):
            module, attribute = LAZY_GROUPS[cmd_name]
            group: Any = typer.main.get_command(getattr(importlib.import_module(module), attribute))
            group.name, group.loaded = cmd_name, True
            self.commands[cmd_name] = group
        return super().get_command(ctx, cmd_name)


def _loaded(command: Command | None) -> bool:
    return bool(getattr(command, "loaded", False))


app = typer.Typer(
    name="postmarket",
    help="Post-market surveillance of medical-AI devices: collectors, workers, local stack.",
    no_args_is_help=True,
    rich_markup_mode="markdown",
    add_completion=False,
    pretty_exceptions_show_locals=False,
    cls=LazyGroups,
)
schemas_app = typer.Typer(help="JSON Schemas of the event contracts.", no_args_is_help=True)
app.add_typer(schemas_app, name="schemas")
topics_app = typer.Typer(help="The pipeline's Kafka topics.", no_args_is_help=True)
app.add_typer(topics_app, name="topics")
app.add_typer(typer.Typer(help=STACK_HELP, no_args_is_help=True), name="stack")  # LazyGroups
app.add_typer(collector_app, name="collector")
app.add_typer(registry_app, name="registry")
app.add_typer(site_keys_app, name="site-keys")
app.add_typer(alerts_app, name="alerts")
app.add_typer(audit_app, name="audit")
app.add_typer(evidence_app, name="evidence")
app.add_typer(testdb_app, name="testdb")
app.add_typer(plan_app, name="plan")
app.command("report")(report_command)
app.command("psur")(psur_command)
app.add_typer(dashboards_app, name="dashboards")


@schemas_app.command("export")
def schemas_export(
    directory: Annotated[Path, typer.Argument(help="where to write the files")] = Path("schemas"),
) -> None:
    """Write one JSON Schema per topic into DIRECTORY."""
    from postmarket.contracts.schemas import export_schemas

    for path in export_schemas(directory):
        typer.echo(path)


@topics_app.command("create")
def topics_create(
    bootstrap: BootstrapOption = None,
    partitions: Annotated[
        int | None,
        typer.Option(
            min=1, help="partitions per keyed topic \\[default: POSTMARKET_TOPIC_PARTITIONS]"
        ),
    ] = None,
    replication_factor: Annotated[
        int, typer.Option(min=1, help="replicas of each partition (3 on a production cluster)")
    ] = 1,
    timeout: Annotated[
        float, typer.Option(help="seconds to wait for the broker to create the topics")
    ] = 60.0,
    connect_timeout: ConnectTimeoutOption = CONNECT_TIMEOUT_S,
) -> None:
    """Create the pipeline's topics on the configured broker; existing ones are kept.

    For deployments without the local stack (Kubernetes, compose). Idempotent: run it on
    every deploy. A topic that exists with another partition count is an error, not
    something to repair silently (keys would move between partitions mid-stream).
    """
    from postmarket.config import Settings
    from postmarket.preflight import ServiceProblem, check_kafka, describe_error, exit_for
    from postmarket.topics import pipeline_topics

    settings = Settings()
    target = bootstrap or settings.kafka_bootstrap
    security = settings.kafka_security()
    specs = pipeline_topics(partitions or settings.topic_partitions)
    try:
        check_kafka(target, security, connect_timeout)
    except ServiceProblem as problem:
        raise exit_for(problem) from None
    from kafka.errors import KafkaError

    from postmarket.topic_admin import TopicAdminError, ensure_topics

    try:
        created = ensure_topics(
            target, specs, timeout=timeout, security=security, replication_factor=replication_factor
        )
    except TopicAdminError as error:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(1) from None
    except KafkaError as error:  # e.g. this principal may not create topics
        typer.echo(f"error: Kafka at {target} refused: {describe_error(error)}", err=True)
        raise typer.Exit(1) from None
    for spec in specs:
        state = "created" if spec.name in created else "exists"
        typer.echo(f"{state:8} {spec.name} ({spec.partitions} partitions)")


@topics_app.command("rekey-by-site")
def topics_rekey_by_site(
    bootstrap: BootstrapOption = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="read and count only; write nothing")
    ] = False,
    connect_timeout: ConnectTimeoutOption = CONNECT_TIMEOUT_S,
) -> None:
    """Move the previous release's case files and stream states to their sites' partitions.

    For a fleet of several workers upgrading to the release whose inputs are keyed by site
    (one worker adopts them itself). Run it with every worker stopped, after the old
    release and before the new one: it reads POSTMARKET_WORKER_ID's table changelogs and
    copies each old state under its new key, then deletes the old one. Run again, it moves
    nothing. See docs/manufacturer.md, "Upgrade and roll back".
    """
    try:
        from streams.table_rekeying_kafka import WorkersRunning, rekey_by_site
    except ModuleNotFoundError as missing:
        raise typer.BadParameter(
            f"rekey-by-site needs the [worker] extra ({missing.name} is not installed)"
        ) from None
    from kafka.errors import KafkaError

    from postmarket.config import Settings
    from postmarket.preflight import ServiceProblem, check_kafka, describe_error, exit_for
    from postmarket.topic_admin import TopicAdminError

    settings = Settings()
    if bootstrap:
        settings = settings.model_copy(update={"kafka_bootstrap": bootstrap})
    try:
        check_kafka(settings.kafka_bootstrap, settings.kafka_security(), connect_timeout)
    except ServiceProblem as problem:
        raise exit_for(problem) from None
    try:
        plan = rekey_by_site(settings, apply=not dry_run, say=typer.echo)
    except WorkersRunning as running:
        typer.echo(f"error: {running}", err=True)
        raise typer.Exit(1) from None
    except (KafkaError, TimeoutError) as error:
        typer.echo(f"error: Kafka at {settings.kafka_bootstrap}: {describe_error(error)}", err=True)
        raise typer.Exit(1) from None
    except TopicAdminError as error:  # e.g. a changelog with another partition count
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(1) from None
    verb = "would move" if dry_run else "moved"
    for table, count in sorted(plan.moved.items()):
        typer.echo(f"{verb} {count} {table} state(s) to their sites' partitions")
    for table, count in sorted(plan.superseded.items()):
        typer.echo(
            f"{'would delete' if dry_run else 'deleted'} {count} old {table} state(s) "
            "a worker had adopted already"
        )
    for table, key, why in plan.left:
        typer.echo(f"left {table} {key}: {why}")
    if not plan:
        typer.echo("nothing to move: every state is keyed by site")


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
    from postmarket.metrics_endpoint import MetricsEndpointError
    from postmarket.topic_admin import TopicAdminError

    _kafka_preflight(None)
    try:
        run(loglevel)
    except (TopicAdminError, MetricsEndpointError) as error:
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
    signing_key: Annotated[
        Path | None,
        typer.Option(
            help="0600 Ed25519 key file registered for the replayed site (`postmarket site-keys`)",
            envvar="POSTMARKET_SIGNING_KEY_FILE",
        ),
    ] = None,
    input_contract: Annotated[
        str,
        typer.Option(
            help="v2: signed batches per site to pms.inputs.v2; v1: one record per event "
            "(for workers not upgraded yet)",
            envvar="POSTMARKET_INPUT_CONTRACT",
        ),
    ] = "v2",
) -> None:
    """Publish historical events from FILE as retrospective events with their event times."""
    from postmarket.config import Settings

    try:
        from streams.replay import run_replay_command
    except ModuleNotFoundError as missing:
        raise typer.BadParameter(
            f"replay needs the [worker] extra ({missing.name} is not installed)"
        ) from None
    from postmarket import topics

    kind_topics = {"predictions": topics.PREDICTIONS, "followups": topics.FOLLOWUPS}
    contract_topics = {"v2": topics.INPUTS, "v1": kind_topics.get(kind)}
    target = contract_topics.get(input_contract.strip())
    if not dry_run and target is not None and file.is_file():  # else the input error first
        _kafka_preflight(None, [target])
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
        signing_key,
        Settings().kafka_security(),
        input_contract,
    )
    raise typer.Exit(code)


@app.command()
def demo(
    keep_running: Annotated[
        bool,
        typer.Option("--keep-running", help="leave the stack and the worker up afterwards"),
    ] = False,
    scenario: Annotated[
        Path | None, typer.Option(help="scenario TOML file (default: scenarios/demo.toml)")
    ] = None,
    timeout: Annotated[float, typer.Option(help="seconds to wait for the worker")] = 600.0,
) -> None:
    """Simulate a hospital fleet with injected changes through the whole local pipeline,
    show which changes were detected (by what, how late) and write the HTML reports."""
    import time

    from rich.console import Console

    from launcher.demo import DEMO_SCENARIO, DemoError, demo_on_fresh_stack
    from launcher.demo_render import render
    from launcher.local_worker import WorkerStartError
    from launcher.stack.processes import StackError
    from postmarket.topic_admin import TopicAdminError
    from simulator.scenario import ScenarioError

    console = Console()
    began = time.monotonic()
    try:
        result = demo_on_fresh_stack(console, scenario or DEMO_SCENARIO, keep_running, timeout)
    except (DemoError, StackError, TopicAdminError, WorkerStartError, ScenarioError) as error:
        console.print(f"[red]demo failed:[/] {error}", highlight=False)
        raise typer.Exit(1) from None
    render(result, console)
    console.print(f"demo took {time.monotonic() - began:.0f} s", highlight=False)


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
    from simulator.scenario import ScenarioError, load_scenario

    try:
        load_scenario(scenario, seed)  # a broken scenario is reported first, with exit 1
    except ScenarioError:
        pass
    else:
        if output is None:
            _kafka_preflight(bootstrap)
    raise typer.Exit(
        run_simulate_command(scenario, seed, bootstrap, ground_truth, output, state_dir)
    )


def _kafka_preflight(bootstrap: str | None, topic_names: list[str] | None = None) -> None:
    """Exit with one line (5 unreachable, 6 credentials refused, 7 topic missing, 1 bad
    setting) unless the configured Kafka, or ``bootstrap``, answers; sends nothing."""
    from postmarket.config import Settings
    from postmarket.preflight import ServiceProblem, check_kafka, exit_for

    settings = Settings()
    target = bootstrap or settings.kafka_bootstrap
    try:
        check_kafka(target, settings.kafka_security(), CONNECT_TIMEOUT_S, topics=topic_names or [])
    except ServiceProblem as problem:
        raise exit_for(problem) from None


def main() -> None:
    app()
