"""``postmarket simulate``: load a scenario, run it with a rich progress bar, summarise."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from collectors.batching import parse_input_contract
from collectors.delivery import RecordSender
from collectors.settings_environment import INPUT_CONTRACT_ENV
from simulator.collector_path import RecordFile, broker_reachable, kafka_connector
from simulator.run import SimulationSummary, run_simulation
from simulator.scenario import load_scenario


def run_simulate_command(
    scenario_path: Path,
    seed: int | None,
    bootstrap: str | None,
    ground_truth: Path,
    output: Path | None,
    state_dir: Path | None,
    console: Console | None = None,
) -> int:
    """Run the command; returns its exit status (0 done, 1 failed), printing why."""
    from kafka.errors import KafkaError

    from collectors.producer import DeliveryError

    console = console or Console()
    try:
        scenario = load_scenario(scenario_path, seed)
        # The collectors' own setting: simulated sites send what real ones would.
        contract = parse_input_contract(os.environ.get(INPUT_CONTRACT_ENV) or "v2")
    except ValueError as error:  # a ScenarioError, or an unknown input contract
        console.print(f"[red]error:[/] {error}", highlight=False)
        return 1
    record_file = RecordFile(output) if output is not None else None
    connect: Callable[[], RecordSender]
    if record_file is not None:
        connect = lambda: record_file  # noqa: E731 - the one shared file
        target = str(output)
    else:
        if bootstrap is None:
            from postmarket.config import Settings

            bootstrap = Settings().kafka_bootstrap
        connect, target = kafka_connector(bootstrap), f"Kafka at {bootstrap}"
        if not broker_reachable(bootstrap):
            console.print(f"[red]error:[/] cannot reach {target}", highlight=False)
            return 1
    columns = (
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("simulated day {task.fields[day]}"),
        TimeElapsedColumn(),
    )
    try:
        with Progress(*columns, console=console, transient=False) as progress:
            task = progress.add_task(f"{scenario.name} -> {target}", total=None, day=0)

            def advance(done: int, total: int, day: int) -> None:
                progress.update(task, completed=done, total=total, day=day)

            summary = run_simulation(
                scenario, connect, ground_truth, state_dir, advance, input_contract=contract
            )
    except (KafkaError, DeliveryError) as error:
        console.print(f"[red]error:[/] cannot reach {target}: {error}", highlight=False)
        return 1
    finally:
        if record_file is not None:
            record_file.finish()
    render_summary(summary, console)
    return 0


def render_summary(summary: SimulationSummary, console: Console) -> None:
    console.print(
        f"{summary.scenario} (seed {summary.seed}): {summary.registry_entries} registry entries, "
        f"{summary.predictions} predictions, {summary.followups} follow-ups, "
        f"{summary.malformed} malformed records; {summary.sent} sent in "
        f"{summary.seconds:.1f} s",
        highlight=False,
    )
    console.print(f"ground truth: {summary.ground_truth_path}", highlight=False)
