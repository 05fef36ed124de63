"""Rendering reports for the tests: HTML -> PNG screenshot (Chromium), PDF -> PNG pages."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import numpy as np
from matplotlib.image import imread

from evidence.pdf import chromium_command
from evidence.report_render import SECTIONS


def screenshot(html_file: Path, png: Path, scratch: Path) -> Path:
    command = chromium_command(
        f"--screenshot={png}", "--window-size=1200,1600", "--hide-scrollbars",
        html_file.resolve().as_uri(), profile=scratch / "chromium-profile",
    )  # fmt: skip
    subprocess.run(command, check=True, capture_output=True, timeout=120)
    return png


def pdf_pages(pdf: Path, scratch: Path, dpi: int = 50) -> list[Path]:
    prefix = scratch / "page"
    subprocess.run(["pdftoppm", "-r", str(dpi), "-png", str(pdf), str(prefix)], check=True)
    return sorted(scratch.glob("page-*.png"))


def is_blank(png: Path) -> bool:
    """True if the image is a single colour (nothing rendered)."""
    pixels = np.asarray(imread(png), dtype=np.float64)
    return bool(pixels.std() < 1e-3)


def headings(document: str) -> list[str]:
    return re.findall(r'<section id="([a-z]+)"><h2>', document)


def figure_ids(document: str) -> list[str]:
    return re.findall(r'<figure id="([^"]+)" data-figure=', document)


EXPECTED_SECTIONS = list(SECTIONS)
