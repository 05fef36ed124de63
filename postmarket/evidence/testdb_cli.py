"""``postmarket testdb``: standard test databases, imported once, frozen, compared."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from postmarket.evidence.cli import ActorOption, UrlOption, _actor, _fail, _open
from postmarket.evidence.testdb import (
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

testdb_app = typer.Typer(
    help="Standard test databases: versioned case lists with their reference standard, "
    "on which claims are measured; a new version's change is measured against its base.",
    no_args_is_help=True,
)

NameArgument = Annotated[str, typer.Argument(help="the database's name, e.g. lung-nodule-ct")]
VersionOption = Annotated[str, typer.Option("--version", help="the version, e.g. 2026.1")]
CasesOption = Annotated[
    Path,
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
    cases: CasesOption,
    strata: StrataOption = "",
    description: Annotated[str, typer.Option("--description")] = "",
    actor: ActorOption = None,
    url: UrlOption = None,
) -> None:
    """Store a database version from a case file: frozen, content-hashed and audited."""
    from postmarket.evidence.testdb_store import TestDatabaseError, file_source, import_version

    extra = _strata(strata)
    loaded = _read(cases, extra)
    with _open(url) as store:
        try:
            imported = import_version(
                store,
                name,
                version,
                task,
                loaded,
                by=_actor(actor),
                source=file_source(cases),
                description=description,
                extra_strata=extra,
            )
        except TestDatabaseError as error:
            raise _fail(str(error)) from None
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
    from postmarket.evidence.testdb_store import (
        TestDatabaseError,
        file_source,
        import_version,
        load_version,
    )

    if cases is None and remove is None:
        raise _fail("nothing to change: give --cases, --remove or both")
    with _open(url) as store:
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
                by=_actor(actor),
                source="; ".join(sources)[:256],
                description=description,
                based_on=based_on,
                extra_strata=base.strata,
                major_fraction=major_fraction,
            )
        except (TestDatabaseError, CaseListError) as error:
            raise _fail(str(error)) from None
    change = diff(base.cases, new_cases)
    typer.echo(
        f"{imported.version.reference}: {len(new_cases):,} cases; "
        f"{_change_line(change, major_fraction)}"
    )


@testdb_app.command("list")
def list_databases(url: UrlOption = None) -> None:
    """Every stored database version."""
    from postmarket.evidence.testdb_store import list_versions

    with _open(url, read_only=True) as store:
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
    from postmarket.evidence.testdb_store import TestDatabaseError, load_version

    with _open(url, read_only=True) as store:
        try:
            stored = load_version(store, name, version)
        except TestDatabaseError as error:
            raise _fail(str(error)) from None
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
    from postmarket.evidence.testdb_store import TestDatabaseError, load_version

    with _open(url, read_only=True) as store:
        try:
            before, after = load_version(store, name, old), load_version(store, name, new)
        except TestDatabaseError as error:
            raise _fail(str(error)) from None
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
        raise _fail(str(error)) from None


def _pseudonyms(path: Path | None) -> list[str]:
    if path is None:
        return []
    try:
        lines = path.read_text().splitlines()
    except OSError as error:
        raise _fail(f"{path}: cannot be read ({error.strerror})") from None
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]
