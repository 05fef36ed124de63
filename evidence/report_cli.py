"""``postmarket report``: the post-market report of a device, as a document or its tables."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer

from evidence.cli_common import (
    DeviceOption,
    DocumentFormatOption,
    OutOption,
    PolicyOption,
    UrlOption,
    change_control_policy,
    fail,
    open_store,
    parse_day,
)

REPORT_FORMATS = ("html", "pdf", "json", "csv")


def _check_format(fmt: str) -> None:
    if fmt not in REPORT_FORMATS:
        raise fail(f"--format {fmt!r}: use {', '.join(REPORT_FORMATS)}")


def _check_output(fmt: str, out: Path, stem: str) -> None:
    """Refuse an ``--out`` of the wrong kind for ``fmt`` before any work."""
    if fmt == "csv" and out.exists() and not out.is_dir():
        raise fail(f"--out {out} is a file; csv writes one file per table into a directory")
    if fmt != "csv" and out.is_dir():
        raise fail(f"--out {out} is a directory; give a file, e.g. --out {out / f'{stem}.{fmt}'}")


@contextmanager
def _writing(out: Path) -> Iterator[None]:
    """Writing a document to ``out``: a failure is one line saying why, never a traceback."""
    from evidence.pdf import ReportError

    try:
        yield
    except ReportError as error:
        raise fail(str(error)) from None
    except OSError as error:
        raise fail(f"cannot write {out}: {error.strerror or error}") from None


def report_command(
    device: DeviceOption,
    start: Annotated[str, typer.Option("--from", help="first day, YYYY-MM-DD (UTC)")],
    end: Annotated[str, typer.Option("--to", help="last day, YYYY-MM-DD (UTC), included")],
    out: OutOption,
    fmt: DocumentFormatOption = "html",
    policy: PolicyOption = "nmpa-syzb",
    url: UrlOption = None,
) -> None:
    """Write the post-market report of a device: one self-contained HTML or PDF file, or
    its tables as JSON or CSV (with the same document id and content hash).

    Claims vs observed per version, per-site funnel plots and heterogeneity, performance per
    acquisition stratum, alerts and their resolution, version history with change control,
    and data provenance (prospective vs retrospective, follow-up completeness).
    `postmarket evidence contents` lists the devices and periods a store holds.
    """
    _check_format(fmt)
    first, last = parse_day("--from", start), parse_day("--to", end)
    if last < first:
        raise fail(f"--to {end} is before --from {start}")
    _check_output(fmt, out, "report")
    active = change_control_policy(policy)
    # Imported once the arguments are known good: reports need scipy and matplotlib.
    from evidence.report import build_report
    from evidence.report_render import write_report
    from evidence.report_tables import document_id, export_csv, export_json
    from evidence.store import NotFound

    with open_store(url, read_only=True) as store:
        try:
            report = build_report(store, device, first, last, active)
        except NotFound as error:
            raise fail(str(error)) from None
    with _writing(out):
        if fmt == "csv":
            export_csv(report, out)
        elif fmt == "json":
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(export_json(report), encoding="utf-8")
        else:
            write_report(report, out, fmt)
    typer.echo(
        f"wrote {out} ({fmt}): {document_id(report)}, {report.design.total} outcomes "
        f"({report.design}), {len(report.alerts)} alerts"
    )


def psur_command(
    device: DeviceOption,
    period: Annotated[int, typer.Option("--period", help="the calendar year, e.g. 2026 (UTC)")],
    out: OutOption,
    fmt: DocumentFormatOption = "html",
    policy: PolicyOption = "nmpa-syzb",
    url: UrlOption = None,
) -> None:
    """Write the periodic safety update report (EU MDR Art. 86) of a device for one year.

    Conclusions per claim, exposure (cases per version and site), performance against the
    claims per version, site and stratum, alerts and their resolution, version changes
    registered and unregistered, re-baselining decisions, and ground-truth completeness;
    deterministic for the same store and year (content hash and document id on every page).
    """
    _check_format(fmt)
    _check_output(fmt, out, "psur")
    active = change_control_policy(policy)
    from evidence.psur import build_psur, psur_document_id
    from evidence.psur_render import write_psur
    from evidence.store import NotFound

    with open_store(url, read_only=True) as store:
        try:
            psur = build_psur(store, device, period, active)
        except (NotFound, ValueError) as error:
            raise fail(str(error)) from None
    with _writing(out):
        write_psur(psur, out, fmt)
    typer.echo(
        f"wrote {out} ({fmt}): {psur_document_id(psur)}, {len(psur.conclusions)} claims "
        f"concluded, {sum(r.predictions for r in psur.exposure)} cases"
    )
