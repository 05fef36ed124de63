"""``postmarket replay``: a progress bar, invalid rows as they come, a summary, an exit code.

The command line on top of the replay: it parses the options, builds the sink and reports;
everything it runs lives in the modules below it.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import tzinfo
from pathlib import Path
from typing import Any

from postmarket.authenticity import SigningKey, SigningKeyError
from postmarket.kafka_security import KafkaSecurity, KafkaSecurityError
from postmarket.secrets import SecretFileError
from streams.replay.mapping import KINDS, ColumnMapping, Kind, MappingError, parse_assignments
from streams.replay.readers import estimated_rows, read_columns
from streams.replay.records import INPUT_CONTRACTS, InputContract
from streams.replay.rows import STUDY_DESIGN, InvalidRow
from streams.replay.run import ReplaySummary, replay_file
from streams.replay.sinks import CountingSink, EventSink, KafkaSink


def run_replay_command(
    path: Path,
    kind: str,
    mapping_file: Path | None,
    columns: Sequence[str],
    constants: Sequence[str],
    naive_timezone: str,
    dry_run: bool,
    show_invalid: int,
    bootstrap: str,
    signing_key: Path | None = None,
    security: KafkaSecurity | None = None,
    input_contract: str = "v2",
) -> int:
    """``postmarket replay``: progress bar, invalid rows as they come, a summary; exit code.

    ``signing_key``: the Ed25519 key file the records are signed with; workers that require
    authenticity accept them only if it is registered for the site of every replayed row.
    ``input_contract``: ``v2`` (signed batches per site) or ``v1`` (one record per event).
    """
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    from kafka.errors import KafkaError
    from rich.console import Console

    console = Console()
    try:
        if kind not in KINDS:
            raise MappingError(f"--kind must be predictions or followups, not {kind!r}")
        contract = _input_contract(input_contract)
        if not path.is_file():
            raise MappingError(f"{path} is not a file")
        mapping = ColumnMapping.from_toml(mapping_file) if mapping_file else ColumnMapping()
        mapping = mapping.overridden(
            parse_assignments(columns, "--column"), parse_assignments(constants, "--constant")
        )
        try:
            zone: tzinfo = ZoneInfo(naive_timezone)
        except (ZoneInfoNotFoundError, ValueError):
            raise MappingError(f"unknown time zone {naive_timezone!r}") from None
        mapping.resolve(kind, read_columns(path))
        signer = SigningKey.from_file(signing_key) if signing_key is not None else None
        sink: CountingSink | KafkaSink = (
            CountingSink() if dry_run else KafkaSink(bootstrap, signer=signer, security=security)
        )
    except (SigningKeyError, KafkaSecurityError, SecretFileError) as error:
        console.print(f"[red]replay refused:[/] {error}", highlight=False)
        return 2
    except KafkaError as error:
        console.print(f"[red]replay refused:[/] Kafka at {bootstrap}: {error}", highlight=False)
        return 2
    except MappingError as error:
        console.print(f"[red]replay refused:[/] {error}", highlight=False)
        return 2
    try:
        summary = _replay_with_progress(
            path, kind, mapping, sink, zone, show_invalid, console, contract
        )
    except MappingError as error:
        console.print(f"[red]replay refused:[/] {error}", highlight=False)
        return 2
    finally:
        if isinstance(sink, KafkaSink):
            sink.close()
    render_summary(summary, console, dry_run)
    return 1 if summary.not_acknowledged else 0


def _input_contract(text: str) -> InputContract:
    for contract in INPUT_CONTRACTS:
        if text.strip() == contract:
            return contract
    raise MappingError(f"--input-contract must be v2 or v1, not {text!r}")


def _replay_with_progress(
    path: Path,
    kind: Kind,
    mapping: ColumnMapping,
    sink: EventSink,
    zone: tzinfo,
    show_invalid: int,
    console: Any,
    input_contract: InputContract = "v2",
) -> ReplaySummary:
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TaskProgressColumn,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    shown = 0

    def report(invalid: InvalidRow) -> None:
        nonlocal shown
        shown += 1
        if shown <= show_invalid:
            progress.console.print(f"[yellow]skipped[/] {invalid}", highlight=False)
        elif shown == show_invalid + 1:
            progress.console.print("[yellow]more invalid rows: counted in the summary[/]")

    with Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TaskProgressColumn(),
        TextColumn("{task.fields[rate]}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
    ) as progress:
        task = progress.add_task(f"{kind} from {path.name}", total=estimated_rows(path), rate="")
        started = time.perf_counter()

        def advance(rows: int) -> None:
            done = progress.tasks[0].completed + rows
            rate = done / max(time.perf_counter() - started, 1e-9)
            progress.update(task, completed=done, rate=f"{rate:,.0f} rows/s")

        summary = replay_file(
            path,
            kind,
            mapping,
            sink,
            input_contract=input_contract,
            naive_timezone=zone,
            on_rows=advance,
            on_invalid=report,
        )
        progress.update(task, total=summary.rows, completed=summary.rows)
    return summary


def render_summary(summary: ReplaySummary, console: Any, dry_run: bool) -> None:
    """The end-of-replay table: counts, skipped rows by column, time and rate."""
    from rich.table import Table

    mode = "dry run, nothing sent" if dry_run else f"{STUDY_DESIGN} to {summary.topic}"
    table = Table(title=f"replay of {summary.path} ({mode})")
    table.add_column("")
    table.add_column("value", justify="right")
    table.add_row("rows read", f"{summary.rows:,}")
    table.add_row("events published" if not dry_run else "events valid", f"{summary.published:,}")
    if not dry_run:
        table.add_row("acknowledged by Kafka (acks=all)", f"{summary.acknowledged:,}")
    table.add_row("invalid rows skipped", f"{summary.invalid:,}")
    for column, count in summary.invalid_by_column.most_common(10):
        table.add_row(f"  problems in {column}", f"{count:,}")
    if summary.first_event_time and summary.last_event_time:
        span = f"{summary.first_event_time:%Y-%m-%d} .. {summary.last_event_time:%Y-%m-%d}"
        table.add_row("event times", span)
    t = summary.timings
    table.add_row(
        "time (read / convert / send / acks)",
        f"{t.reading:.1f} / {t.converting:.1f} / {t.sending:.1f} / {t.awaiting_acks:.1f} s",
    )
    table.add_row("rows per second", f"{summary.events_per_s:,.0f}")
    console.print(table)
    if summary.not_acknowledged:
        console.print(
            f"[red]{summary.not_acknowledged:,} events were not acknowledged[/]: run the same "
            "replay again; workers skip the events they already have (same event ids)."
        )
