"""``postmarket testdb``: standard test databases, imported once, frozen, compared; and the
gate (``run``, ``verdict``) that scores a candidate version on one against its claims."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Literal

import typer

from evidence.cli_common import (
    ActorOption,
    DeviceOption,
    TableFormatOption,
    UrlOption,
    actor_or_login,
    fail,
    open_store,
)
from evidence.testdb import (
    MAJOR_CHANGE_FRACTION,
    STRATA,
    CaseListError,
    DatabaseCase,
    DatabaseDiff,
    diff,
    read_case_list,
    revised,
    stratum_counts,
)

if TYPE_CHECKING:
    from evidence.testdb_gate import GatePolicy, GateRow
    from evidence.testdb_gate_store import GateRun

EXIT_GATE_FAILED = 5
"""``testdb run``: the gate ran and the candidate failed (a stratum below its criterion)."""

testdb_app = typer.Typer(
    help="Standard test databases: versioned case lists with their reference standard, "
    "on which claims are measured; a new version's change is measured against its base.",
    no_args_is_help=True,
)

NameArgument = Annotated[str, typer.Argument(help="the database's name, e.g. lung-nodule-ct")]
VersionOption = Annotated[str, typer.Option("--version", help="the version, e.g. 2026.1")]
CasesOption = Annotated[
    Path | None,
    typer.Option(
        "--cases",
        help="CSV or Parquet case list: case_pseudonym, label (positive/negative); optional "
        "truth_source, first_read, second_read, adjudication, hospital, scanner_manufacturer, "
        "scanner_model, slice_thickness_band or slice_thickness_mm",
    ),
]
StrataOption = Annotated[
    str, typer.Option("--strata", help="more stratum columns, comma-separated")
]
MajorOption = Annotated[
    float,
    typer.Option(
        "--major-fraction",
        min=0.0,
        max=1.0,
        help="a change of at least this fraction of the base version's cases is major",
    ),
]


@testdb_app.command("import")
def import_database(
    name: NameArgument,
    version: VersionOption,
    task: Annotated[str, typer.Option("--task", help="the task its claims are about")],
    cases: CasesOption = None,
    dicom: Annotated[
        Path | None,
        typer.Option(
            "--dicom",
            help="instead of --cases: a folder of de-identified DICOM files, one case per "
            "study; strata from the headers",
        ),
    ] = None,
    truth: Annotated[
        Path | None,
        typer.Option(
            "--truth",
            help="with --dicom: CSV or Parquet, study_instance_uid, case_pseudonym, label, "
            "and any column --cases takes",
        ),
    ] = None,
    strata: StrataOption = "",
    description: Annotated[str, typer.Option("--description")] = "",
    actor: ActorOption = None,
    url: UrlOption = None,
) -> None:
    """Store a database version from a case file, or from a DICOM folder and a truth file:
    frozen, content-hashed and audited."""
    from evidence.testdb_store import TestDatabaseError, file_source, import_version

    extra = _strata(strata)
    if (cases is None) == (dicom is None):
        raise fail("give --cases FILE, or --dicom FOLDER with --truth FILE")
    if dicom is not None:
        from evidence.testdb_dicom_cli import read_folder

        if truth is None:
            raise fail("--dicom needs --truth FILE: the reference standard of each study")
        loaded = list(read_folder(dicom, truth, extra).cases)
        source = f"DICOM folder {dicom.name}; truth {file_source(truth)}"
    else:
        assert cases is not None  # noqa: S101 - checked above; for the type checker
        if truth is not None:
            raise fail("--truth goes with --dicom; a --cases file holds the truth itself")
        loaded = _read(cases, extra)
        source = file_source(cases)
    with open_store(url) as store:
        try:
            imported = import_version(
                store,
                name,
                version,
                task,
                loaded,
                by=actor_or_login(actor),
                source=source[:256],
                description=description,
                extra_strata=extra,
            )
        except TestDatabaseError as error:
            raise fail(str(error)) from None
    stored = imported.version
    typer.echo(f"{stored.reference}: {len(stored.cases):,} cases, sha256 {stored.content_sha256}")


@testdb_app.command("add")
def add_version(
    name: NameArgument,
    version: VersionOption,
    based_on: Annotated[str, typer.Option("--based-on", help="the version it revises")],
    cases: Annotated[
        Path | None,
        typer.Option("--cases", help="cases to add, or to relabel (same case_pseudonym)"),
    ] = None,
    remove: Annotated[
        Path | None,
        typer.Option("--remove", help="a text file of case pseudonyms to remove, one a line"),
    ] = None,
    major_fraction: MajorOption = MAJOR_CHANGE_FRACTION,
    description: Annotated[str, typer.Option("--description")] = "",
    actor: ActorOption = None,
    url: UrlOption = None,
) -> None:
    """Store a new version: a base version with cases added, relabelled or removed, and
    how large that change is under the change-control policy."""
    from evidence.testdb_store import (
        TestDatabaseError,
        file_source,
        import_version,
        load_version,
    )

    if cases is None and remove is None:
        raise fail("nothing to change: give --cases, --remove or both")
    with open_store(url) as store:
        try:
            base = load_version(store, name, based_on)
            changes = _read(cases, base.strata) if cases is not None else []
            new_cases = revised(base.cases, changes, _pseudonyms(remove))
            sources = [file_source(path) for path in (cases, remove) if path is not None]
            imported = import_version(
                store,
                name,
                version,
                base.task,
                new_cases,
                by=actor_or_login(actor),
                source="; ".join(sources)[:256],
                description=description,
                based_on=based_on,
                extra_strata=base.strata,
                major_fraction=major_fraction,
            )
        except (TestDatabaseError, CaseListError) as error:
            raise fail(str(error)) from None
    change = diff(base.cases, new_cases)
    typer.echo(
        f"{imported.version.reference}: {len(new_cases):,} cases; "
        f"{_change_line(change, major_fraction)}"
    )


@testdb_app.command("list")
def list_databases(url: UrlOption = None) -> None:
    """Every stored database version."""
    from evidence.testdb_store import list_versions

    with open_store(url, read_only=True) as store:
        versions = list_versions(store)
    if not versions:
        typer.echo("no test database stored (add one with `postmarket testdb import`)")
        return
    typer.echo(f"{'database':<32} {'task':<20} {'based on':<10} {'imported':<10} sha256")
    for stored in versions:
        typer.echo(
            f"{stored.reference:<32} {stored.task:<20} {stored.based_on or '-':<10} "
            f"{stored.imported_at:%Y-%m-%d} {stored.content_sha256[:16]}"
        )


@testdb_app.command("show")
def show_database(
    name: NameArgument,
    version: VersionOption,
    as_json: Annotated[bool, typer.Option("--json", help="everything as one JSON object")] = False,
    url: UrlOption = None,
) -> None:
    """A version's size, prevalence, reading rounds and cases per stratum."""
    from evidence.testdb_store import TestDatabaseError, load_version

    with open_store(url, read_only=True) as store:
        try:
            stored = load_version(store, name, version)
        except TestDatabaseError as error:
            raise fail(str(error)) from None
    strata = {s: stratum_counts(stored.cases, s) for s in (*STRATA, *stored.strata)}
    cases = len(stored.cases)
    positive = sum(case.label == "positive" for case in stored.cases)
    double_read = sum(_double_read(case) for case in stored.cases)
    adjudicated = sum(case.adjudication is not None for case in stored.cases)
    if as_json:
        summary = {
            "database": stored.reference,
            "task": stored.task,
            "description": stored.description,
            "cases": cases,
            "positive": positive,
            "double_read": double_read,
            "adjudicated": adjudicated,
            "content_sha256": stored.content_sha256,
            "based_on": stored.based_on,
            "source": stored.source,
            "imported_at": stored.imported_at.isoformat(),
            "imported_by": stored.imported_by,
            "strata": strata,
        }
        typer.echo(json.dumps(summary, indent=2))
        return
    typer.echo(f"{stored.reference} ({stored.task}): {cases:,} cases")
    typer.echo(f"  sha256 {stored.content_sha256}, from {stored.source}")
    typer.echo(
        f"  reference standard: {positive:,} positive ({positive / cases:.1%}); "
        f"{double_read:,} read twice blinded, {adjudicated:,} adjudicated"
    )
    for stratum, counts in strata.items():
        shown = ", ".join(f"{value} {count:,}" for value, count in counts.items())
        typer.echo(f"  {stratum}: {shown}")


@testdb_app.command("diff")
def diff_versions(
    name: NameArgument,
    old: Annotated[str, typer.Argument(help="the earlier version")],
    new: Annotated[str, typer.Argument(help="the later version")],
    major_fraction: MajorOption = MAJOR_CHANGE_FRACTION,
    url: UrlOption = None,
) -> None:
    """Cases added, removed and relabelled from OLD to NEW, and whether that is a major change."""
    from evidence.testdb_store import TestDatabaseError, load_version

    with open_store(url, read_only=True) as store:
        try:
            before, after = load_version(store, name, old), load_version(store, name, new)
        except TestDatabaseError as error:
            raise fail(str(error)) from None
    change = diff(before.cases, after.cases)
    typer.echo(f"{before.reference} -> {after.reference}: {_change_line(change, major_fraction)}")


def _change_line(change: DatabaseDiff, major_fraction: float) -> str:
    return (
        f"{change.added:,} added, {change.removed:,} removed, {change.relabelled:,} relabelled: "
        f"{change.changed_fraction:.1%} of {change.old_cases:,} cases, "
        f"{change.classification(major_fraction)} change (major at {major_fraction:.0%})"
    )


def _double_read(case: DatabaseCase) -> bool:
    return case.first_read is not None and case.second_read is not None


def _strata(text: str) -> tuple[str, ...]:
    return tuple(column.strip() for column in text.split(",") if column.strip())


def _read(path: Path, extra: tuple[str, ...]) -> list[DatabaseCase]:
    try:
        return read_case_list(path, extra)
    except CaseListError as error:
        raise fail(str(error)) from None


def _pseudonyms(path: Path | None) -> list[str]:
    if path is None:
        return []
    try:
        lines = path.read_text().splitlines()
    except OSError as error:
        raise fail(f"{path}: cannot be read ({error.strerror})") from None
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


GateFormat = Literal["table", "json", "csv"]
GATE_COLUMNS = (
    "metric", "stratum", "value", "n", "successes", "estimate", "lower", "upper", "interval",
    "acceptable", "criterion", "outcome", "funnel", "note",
)  # fmt: skip


@testdb_app.command("run")
def run_gate_command(
    device: DeviceOption,
    version: Annotated[str, typer.Option("--version", help="the candidate version S.Y.Z.B")],
    database: Annotated[
        str, typer.Option("--database", help="the test database version, NAME@VERSION")
    ],
    predictions: Annotated[
        Path,
        typer.Option(
            "--predictions",
            help="CSV or Parquet: case_pseudonym, score (0-1), decision (positive/negative), "
            "optionally operating_threshold; one row for every case of the database",
        ),
    ],
    interval: Annotated[
        str | None,
        typer.Option("--interval", help="wilson or exact \\[default: gate_interval setting]"),
    ] = None,
    criterion: Annotated[
        str | None,
        typer.Option(
            "--criterion",
            help="lower_bound, estimate or not_below, overall and per stratum "
            "\\[default: gate_criterion setting]",
        ),
    ] = None,
    stratum_criterion: Annotated[
        str | None,
        typer.Option("--stratum-criterion", help="another criterion for the strata only"),
    ] = None,
    max_i2: Annotated[
        float | None,
        typer.Option(
            "--max-i2", min=0.0, max=1.0, help="fail a claim whose I² across hospitals is above"
        ),
    ] = None,
    min_kappa: Annotated[
        float | None,
        typer.Option(
            "--min-kappa", min=-1.0, max=1.0, help="fail the gate if reader agreement is below"
        ),
    ] = None,
    output: TableFormatOption = "table",
    actor: ActorOption = None,
    url: UrlOption = None,
) -> None:
    """Score a candidate version's outputs on a standard test database against its claims:
    overall, per hospital, per slice-thickness band and scanner; store the verdict.

    Exit 0 when every judged row meets its criterion, 5 when one fails (the verdict is
    stored either way), 1 when the gate cannot run (the line says why).
    """
    from evidence.testdb_gate import PredictionFileError, read_predictions
    from evidence.testdb_gate_store import GateError, file_sha256, run_gate
    from evidence.testdb_store import TestDatabaseError, load_version

    fmt = _gate_format(output)
    policy = _gate_policy(interval, criterion, stratum_criterion, max_i2, min_kappa)
    name, _, database_version = database.partition("@")
    if not name or not database_version:
        raise fail(f"--database {database!r}: write NAME@VERSION, e.g. lung-nodule-ct@2026.1")
    try:
        outputs = read_predictions(predictions)
        digest = file_sha256(predictions)
    except PredictionFileError as error:
        raise fail(str(error)) from None
    except OSError as error:
        raise fail(f"{predictions}: cannot be read ({error.strerror})") from None
    with open_store(url) as store:
        try:
            stored = load_version(store, name, database_version)
            run = run_gate(
                store,
                device,
                version,
                stored,
                outputs,
                predictions_sha256=digest,
                predictions_source=f"{predictions.name} sha256:{digest}",
                policy=policy,
                by=actor_or_login(actor),
            )
        except (TestDatabaseError, GateError, PredictionFileError) as error:
            raise fail(str(error)) from None
    typer.echo(_shown(run, fmt), nl=False)
    if not run.passed:
        raise typer.Exit(EXIT_GATE_FAILED)


def _gate_format(text: str) -> GateFormat:
    if text == "json":
        return "json"
    if text == "csv":
        return "csv"
    if text == "table":
        return "table"
    raise fail(f"--format {text!r}: use table, json or csv")


def _gate_policy(
    interval: str | None,
    criterion: str | None,
    stratum_criterion: str | None,
    max_i2: float | None,
    min_kappa: float | None,
) -> GatePolicy:
    """The settings' policy, with the options given over it."""
    from pydantic import ValidationError

    from evidence.testdb_gate import CRITERIA, GatePolicy
    from postmarket.config import Settings

    try:
        settings = Settings()
    except ValidationError as error:
        raise fail(f"settings: {error.errors()[0]['msg']}") from None
    chosen_interval = interval or settings.gate_interval
    if chosen_interval not in ("wilson", "exact"):
        raise fail(f"--interval {chosen_interval!r}: use wilson or exact")
    overall = criterion or settings.gate_criterion
    strata = stratum_criterion or overall
    for given in (overall, strata):
        if given not in CRITERIA:
            raise fail(f"criterion {given!r}: use {', '.join(CRITERIA)}")
    return GatePolicy(
        acceptable=settings.acceptable_level,
        interval="exact" if chosen_interval == "exact" else "wilson",
        overall_criterion=_criterion(overall),
        stratum_criterion=_criterion(strata),
        max_i2=max_i2,
        min_kappa=min_kappa,
    )


def _criterion(text: str) -> Literal["lower_bound", "estimate", "not_below"]:
    if text == "estimate":
        return "estimate"
    if text == "not_below":
        return "not_below"
    return "lower_bound"


def _shown(run: GateRun, fmt: GateFormat) -> str:
    """The verdict as a table a reviewer reads, one JSON object, or CSV of the rows."""
    rows = [_record(row) for row in run.rows]
    if fmt == "json":
        document = {
            "run_id": run.run_id,
            "device": run.device_id,
            "version": run.version,
            "database": run.database,
            "database_sha256": run.database_sha256,
            "predictions": run.predictions_source,
            "predictions_sha256": run.predictions_sha256,
            "task": run.task,
            "cases": run.cases,
            "policy": run.policy,
            "passed": run.passed,
            "run_at": run.run_at.isoformat(),
            "run_by": run.run_by,
            "same_inputs_as": run.same_inputs_as,
            "rows": rows,
        }
        return json.dumps(document, indent=2) + "\n"
    if fmt == "csv":
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=GATE_COLUMNS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
        return buffer.getvalue()
    return _table(run)


def _record(row: GateRow) -> dict[str, object]:
    return {
        "metric": row.metric,
        "stratum": row.stratum,
        "value": row.value,
        "n": row.n,
        "successes": row.successes,
        "estimate": row.estimate,
        "lower": row.lower,
        "upper": row.upper,
        "interval": row.interval,
        "acceptable": row.acceptable,
        "criterion": row.criterion,
        "outcome": row.outcome,
        "funnel": row.funnel,
        "note": row.note,
    }


def _table(run: GateRun) -> str:
    lines = [
        f"gate {run.run_id}: {run.device_id} {run.version} on {run.database} ({run.task}), "
        f"{run.cases:,} cases",
        f"  database sha256 {run.database_sha256}",
        f"  predictions {run.predictions_source}",
        f"  policy: acceptable level {run.policy['acceptable']}, {run.policy['interval']} "
        f"intervals at {1 - float(str(run.policy['alpha'])):.0%}",
    ]
    if run.same_inputs_as:
        lines.append(f"  same inputs and policy as run {run.same_inputs_as}")
    lines.append("")
    header = (
        f"{'metric':<12} {'stratum':<22} {'value':<20} {'n':>6} {'estimate':>8} "
        f"{'interval':<17} {'criterion':<26} {'outcome':<8} funnel"
    )
    lines += [header, "-" * len(header)]
    for row in run.rows:
        estimate = "-" if row.estimate is None else f"{row.estimate:.3f}"
        interval = (
            "-" if row.lower is None or row.upper is None else f"{row.lower:.3f}-{row.upper:.3f}"
        )
        criterion = row.criterion
        if row.acceptable is not None and row.stratum not in ("heterogeneity", "reader_agreement"):
            criterion = f"{row.criterion.replace('acceptable', f'{row.acceptable:.3f}')}"
        lines.append(
            f"{row.metric:<12} {row.stratum[:22]:<22} {row.value[:20]:<20} {row.n:>6,} "
            f"{estimate:>8} {interval:<17} {criterion[:26]:<26} {row.outcome:<8} "
            f"{row.funnel or ''}".rstrip()
        )
        if row.note and row.stratum in ("overall", "heterogeneity", "reader_agreement"):
            lines.append(f"{'':<12} {row.note}")
    failed = [row for row in run.rows if row.met is False]
    lines.append("")
    if run.passed:
        lines.append(f"PASSED: every judged row meets its criterion ({len(run.rows)} rows)")
    else:
        lines.append(f"FAILED: {len(failed)} of {len(run.rows)} rows below their criterion")
    return "\n".join(lines) + "\n"


@testdb_app.command("verdict")
def show_verdict(
    device: DeviceOption,
    version: Annotated[str, typer.Option("--version", help="the version S.Y.Z.B")],
    output: TableFormatOption = "table",
    url: UrlOption = None,
) -> None:
    """A version's latest gate run, as stored: exit 0 if it passed, 5 if it failed, 1 if
    the version was never gated (a release pipeline's check before deploying it)."""
    from evidence.testdb_gate_store import GateError, latest_run

    fmt = _gate_format(output)
    with open_store(url, read_only=True) as store:
        try:
            run = latest_run(store, device, version)
        except GateError as error:
            raise fail(str(error)) from None
    if run is None:
        raise fail(f"{device} {version} has no gate run: run `postmarket testdb run` first")
    typer.echo(_shown(run, fmt), nl=False)
    if not run.passed:
        raise typer.Exit(EXIT_GATE_FAILED)
