"""Print an HTML document to PDF with headless Chromium (Debian's ``chromium`` package;
``POSTMARKET_CHROMIUM`` names another), for the report and the PSUR."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

CHROMIUM_FLAGS = (
    "--headless",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)


class ReportError(RuntimeError):
    """The report cannot be written; the message says why."""


def chromium_executable() -> str:
    """Headless Chromium: ``POSTMARKET_CHROMIUM``, else ``chromium`` or Chrome on PATH."""
    configured = os.environ.get("POSTMARKET_CHROMIUM")
    candidates = [configured] if configured else []
    candidates += ["chromium", "chromium-browser", "google-chrome", "google-chrome-stable"]
    for candidate in candidates:
        found = shutil.which(candidate)
        if found:
            return found
    raise ReportError(
        "PDF needs headless Chromium: install Debian's chromium package "
        "(deploy/scripts/install-system-deps.sh) or set POSTMARKET_CHROMIUM; "
        "--format html needs nothing"
    )


def chromium_command(*arguments: str, profile: Path) -> list[str]:
    """A headless Chromium command line that talks to no network service of its own."""
    sandbox = ["--no-sandbox"] if os.geteuid() == 0 else []  # Chromium refuses root otherwise
    return [
        chromium_executable(),
        *CHROMIUM_FLAGS,
        *sandbox,
        f"--user-data-dir={profile}",
        *arguments,
    ]


def write_pdf(document: str, out: Path, timeout_s: float = 120.0) -> None:
    """Print the HTML ``document`` to the PDF file ``out`` with headless Chromium."""
    with tempfile.TemporaryDirectory(prefix="postmarket-report-") as scratch:
        source = Path(scratch) / "report.html"
        source.write_text(document, encoding="utf-8")
        target = out.resolve()
        command = chromium_command(
            "--no-pdf-header-footer",
            f"--print-to-pdf={target}",
            source.as_uri(),
            profile=Path(scratch) / "profile",
        )
        try:
            finished = subprocess.run(  # noqa: S603 - our own arguments, no shell
                command, capture_output=True, timeout=timeout_s, check=False
            )
        except subprocess.TimeoutExpired:
            raise ReportError(f"Chromium did not print the PDF within {timeout_s:.0f} s") from None
        if finished.returncode != 0 or not target.exists() or target.stat().st_size == 0:
            tail = finished.stderr.decode(errors="replace").strip().splitlines()[-5:]
            raise ReportError(f"Chromium could not print the PDF: {' | '.join(tail)}")
