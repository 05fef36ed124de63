"""A regulator's review, as docs/regulator.md walks it: a copy of a manufacturer's store,
read only, its audit head checked against the one kept from last time, and the report.

The manufacturer's store holds a season of dr-screen's field data (the report tests'
builders). The reviewer keeps the head hash ``audit verify`` printed; the manufacturer then
acknowledges an alert and hands over a copy. On that copy, with the real ``postmarket``:
a mistyped path is refused (exit 3, no empty "intact" trail), the old head is found
``entries were added since`` (exit 4) and the new one matches (exit 0); ``evidence
contents`` names the device and the period; the HTML report renders in headless Chromium
to a page that is not blank and carries the verified head hash, and the PDF report
rasterises with pdftoppm, every page numbered with the document id. No command changes a
byte of the copy or leaves a journal beside it.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "evidence"))
from report_builders import populated_store  # noqa: E402 - the report tests' own builders
from report_rendering import EXPECTED_SECTIONS, headings, is_blank, pdf_pages, screenshot  # noqa: E402

from evidence.store import EvidenceStore  # noqa: E402

pytestmark = [pytest.mark.integration, pytest.mark.slow]

DEVICE = "dr-screen"
PERIOD = ("--from", "2026-03-01", "--to", "2026-03-31")


def postmarket(cwd: Path, *argv: str, expect: int = 0) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "postmarket", *argv], cwd=cwd,
        env={k: v for k, v in os.environ.items() if not k.startswith("POSTMARKET_")},
        capture_output=True, text=True, timeout=180, check=False,
    )  # fmt: skip
    shown = f"postmarket {' '.join(argv)} exited {done.returncode}\n{done.stdout}{done.stderr}"
    assert done.returncode == expect, shown
    assert "Traceback" not in done.stdout + done.stderr, shown
    return done.stdout + done.stderr


def head_hash(verified: str) -> str:
    found = re.search(r"head hash ([0-9a-f]{64})", verified)
    assert found is not None, verified
    return found.group(1)


def test_regulator_verifies_the_audit_head_and_reads_the_report(tmp_path: Path) -> None:
    manufacturer, reviewer = tmp_path / "manufacturer", tmp_path / "reviewer"
    manufacturer.mkdir()
    reviewer.mkdir()
    store_file = manufacturer / "evidence.db"
    with EvidenceStore(f"sqlite:///{store_file}") as store:
        populated_store(store)
    kept_head = head_hash(postmarket(manufacturer, "audit", "verify", "--url", "evidence.db"))
    open_alert = re.search(
        r"\b([0-9a-f]{8})\b.*unregistered_change",
        postmarket(manufacturer, "alerts", "list", "--url", "evidence.db", "--status", "open"),
    )
    assert open_alert is not None
    postmarket(manufacturer, "alerts", "ack", open_alert.group(1), "--url", "evidence.db",
               "--note", "registration of 2.2.0.0 filed", "--by", "qa-lead")  # fmt: skip
    shutil.copy(store_file, reviewer / "copy.db")
    (reviewer / "copy.db").chmod(0o444)
    before = hashlib.sha256((reviewer / "copy.db").read_bytes()).hexdigest()

    mistyped = postmarket(reviewer, "audit", "verify", "--url", "cpy.db", expect=3)
    assert len(mistyped.strip().splitlines()) <= 2 and not (reviewer / "cpy.db").exists()
    stale = postmarket(reviewer, "audit", "verify", "--url", "copy.db",
                       "--expect-head", kept_head, expect=4)  # fmt: skip
    assert "1 entry was added since" in stale
    verified = postmarket(reviewer, "audit", "verify", "--url", "copy.db")
    head = head_hash(verified)
    assert head != kept_head
    assert "audit trail intact" in postmarket(
        reviewer, "audit", "verify", "--url", "copy.db", "--expect-head", head
    )

    contents = postmarket(reviewer, "evidence", "contents", "--url", "copy.db")
    assert DEVICE in contents and "2026-03-" in contents

    html, pdf = reviewer / "dr-screen-2026-03.html", reviewer / "dr-screen-2026-03.pdf"
    for fmt, out in (("html", html), ("pdf", pdf)):
        postmarket(reviewer, "report", "--device", DEVICE, *PERIOD, "--format", fmt,
                   "--out", out.name, "--url", "copy.db")  # fmt: skip
    document = html.read_text(encoding="utf-8")
    assert headings(document) == EXPECTED_SECTIONS
    assert head in document  # the summary states the head the reviewer just verified
    document_id = re.search(r"PMR-dr-screen-20260301-20260331-[0-9a-f]{12}", document)
    assert document_id is not None
    assert not is_blank(screenshot(html, tmp_path / "first-page.png", tmp_path))

    pages = pdf_pages(pdf, tmp_path)
    assert len(pages) >= 2 and not any(is_blank(page) for page in pages[:2])
    text = subprocess.run(["pdftotext", str(pdf), "-"], capture_output=True, text=True,
                          check=True).stdout  # fmt: skip
    assert text.count(document_id.group(0)) >= len(pages)
    assert f"page {len(pages)} of {len(pages)}" in text

    assert hashlib.sha256((reviewer / "copy.db").read_bytes()).hexdigest() == before
    assert sorted(p.name for p in reviewer.iterdir() if p.name.startswith("copy.db")) == ["copy.db"]
