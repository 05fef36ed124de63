"""``testdb import --dicom FOLDER --truth FILE``: the cases of a DICOM folder, read with a
progress bar, every skipped file and every case not built printed on its own line.

As an import from a case file refuses the whole file for one bad row, a folder from which
any case could not be built is refused whole (exit 1, nothing stored): a database version
is all of its cases, and its content hash must name them all. A file skipped (not DICOM, or
lacking an attribute) is reported and counted, and does not stop the import by itself.
"""

from __future__ import annotations

from pathlib import Path

import typer

from evidence.cli_common import fail
from evidence.testdb import CaseListError
from evidence.testdb_dicom import (
    DicomCases,
    dicom_files,
    iter_problems,
    read_dicom_cases,
)

SHOWN_PROBLEMS = 50
"""Problem lines printed before the rest are only counted."""


def read_folder(folder: Path, truth: Path, extra_strata: tuple[str, ...]) -> DicomCases:
    """Every case of ``folder``, or exit 1 with one ``error:`` line after listing why."""
    if not folder.is_dir():
        raise fail(f"--dicom {folder}: not a folder")
    try:
        import pydicom  # noqa: F401 - present only with the collector or dashboards extra
    except ImportError:
        raise fail("--dicom needs pydicom: install the package's worker extra") from None
    files = dicom_files(folder)
    if not files:
        raise fail(f"--dicom {folder}: no file in it")
    found = _read_with_progress(folder, truth, extra_strata, files)
    lines = list(iter_problems(found))
    for line in lines[:SHOWN_PROBLEMS]:
        typer.echo(line, err=True)
    if len(lines) > SHOWN_PROBLEMS:
        typer.echo(f"... and {len(lines) - SHOWN_PROBLEMS:,} more", err=True)
    summary = (
        f"{_count(found.files, 'file')} read, {len(found.skipped_files):,} skipped; "
        f"{_count(found.studies, 'study', 'studies')}, {_count(len(found.cases), 'case')} "
        f"built, {len(found.unbuilt_cases):,} not built"
    )
    if not found.complete:
        raise fail(
            f"{summary}: nothing stored (a database version is all its cases, as a case "
            "file with a bad row is refused whole); fix the truth file or the folder"
        )
    if not found.cases:
        raise fail(f"{summary}: no case to store")
    typer.echo(summary, err=True)
    return found


def _count(n: int, one: str, many: str = "") -> str:
    return f"{n:,} {one if n == 1 else many or one + 's'}"


def _read_with_progress(
    folder: Path, truth: Path, extra_strata: tuple[str, ...], files: list[Path]
) -> DicomCases:
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    with Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=Console(stderr=True),
        transient=True,
    ) as progress:
        task = progress.add_task(f"DICOM headers in {folder.name}", total=len(files))
        try:
            return read_dicom_cases(
                folder,
                truth,
                extra_strata,
                files=files,
                on_file=lambda _: progress.advance(task),
            )
        except CaseListError as error:
            raise fail(f"--truth {error}") from None
