"""A report a regulator can cite: ids, hashes, pages, honest styles, exports (issue 19)."""

from __future__ import annotations

import csv
import json
import math
import re
import subprocess
from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path

import pytest
from evidence_builders import ACTOR, T0, make_alert, make_stream
from report_builders import DEVICE, FIRST_DAY, LAST_DAY, populated_store
from typer.testing import CliRunner

from evidence.report import MIN_WEEKLY_CASES, DeviceReport, build_report
from evidence.report_figures import weekly_rates
from evidence.report_render import render_html
from evidence.report_tables import content_hash, document_id
from evidence.snapshots import Snapshot
from evidence.store import EvidenceStore
from launcher.cli import app
from postmarket.versions import preset

CLAIMS_ALERT = make_alert(
    stream=make_stream(site_id="site-c"),
    detector="sensitivity_claims_test",
    statistic=3.177,
    threshold=2.996,
    evidence={"charted_cases": 312, "true_positives": 247, "false_negatives": 65},
    message="sensitivity of dr-screen 2.1.0.3 at site-c below the registered 0.872: "
    "sensitivity_claims_test 3.177 >= 2.996 after 312 charted cases",
)
EARLY_VERSION = "2.1.1.0"
"""Registered on 2026-03-10, but seen at site-a from 2026-03-01."""


def citable_store(store: EvidenceStore) -> EvidenceStore:
    populated_store(store)
    store.record_alert(CLAIMS_ALERT, actor=ACTOR)
    store.add_version(
        DEVICE, EARLY_VERSION, status="registered", regulator="NMPA",
        registered_on=date(2026, 3, 10), actor=ACTOR,
    )  # fmt: skip
    store.record_sighting(make_stream(device_version=EARLY_VERSION), T0, actor=ACTOR)
    return store


@pytest.fixture(scope="module")
def report_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    url = f"sqlite:///{tmp_path_factory.mktemp('citable') / 'evidence.db'}"
    with EvidenceStore(url) as store:
        citable_store(store)
    return url


def _build(url: str) -> DeviceReport:
    with EvidenceStore(url) as store:
        return build_report(store, DEVICE, FIRST_DAY, LAST_DAY, preset("nmpa-syzb"))


@pytest.fixture(scope="module")
def report(report_url: str) -> Iterator[DeviceReport]:
    yield _build(report_url)


@pytest.fixture(scope="module")
def document(report: DeviceReport) -> str:
    return render_html(report)


def _report_cli(url: str, fmt: str, out: Path) -> None:
    result = CliRunner().invoke(
        app,
        ["report", "--device", DEVICE, "--from", str(FIRST_DAY), "--to", str(LAST_DAY),
         "--format", fmt, "--out", str(out), "--url", url],
    )  # fmt: skip
    assert result.exit_code == 0, result.output


def _alerts_section(document: str) -> str:
    match = re.search(r'<section id="alerts">.*?</section>', document)
    assert match
    return match.group(0)


def test_every_alert_row_shows_its_short_id(report: DeviceReport, document: str) -> None:
    section = _alerts_section(document)
    assert len(report.alerts) == 3
    for view in report.alerts:
        short = view.alert.alert_id.hex[:8]
        assert f'title="{view.alert.alert_id}">{short}</code>' in section


def test_an_alert_line_states_the_observed_value_behind_its_statistic(document: str) -> None:
    section = _alerts_section(document)
    row = next(r for r in section.split("<tr>") if "sensitivity_claims_test 3.177" in r)
    assert "observed sensitivity 0.79 over 312 cases" in row


def test_the_json_export_holds_every_table_and_full_alert_ids(
    report: DeviceReport, report_url: str, tmp_path: Path
) -> None:
    out = tmp_path / "report.json"
    _report_cli(report_url, "json", out)
    exported = json.loads(out.read_text())
    assert set(exported["tables"]) >= {
        "summary", "claims", "sites", "heterogeneity", "strata", "alerts", "versions",
        "completeness", "reader_agreement", "weekly",
    }  # fmt: skip
    alerts = {row["alert_id"]: row for row in exported["tables"]["alerts"]}
    assert set(alerts) == {str(view.alert.alert_id) for view in report.alerts}
    claims_alert = alerts[str(CLAIMS_ALERT.alert_id)]
    assert (claims_alert["observed_successes"], claims_alert["observed_cases"]) == (247, 312)
    assert exported["content_hash"] == content_hash(report)
    assert exported["document_id"] == document_id(report)


def test_the_csv_export_writes_one_file_per_table(report_url: str, tmp_path: Path) -> None:
    out = tmp_path / "tables"
    _report_cli(report_url, "csv", out)
    assert {"document.csv", "claims.csv", "alerts.csv", "versions.csv"} <= {
        p.name for p in out.iterdir()
    }
    with (out / "alerts.csv").open(newline="") as file:
        ids = {row["alert_id"] for row in csv.DictReader(file)}
    assert str(CLAIMS_ALERT.alert_id) in ids


def test_the_csv_export_refuses_a_file_as_its_directory(report_url: str, tmp_path: Path) -> None:
    taken = tmp_path / "report.csv"
    taken.write_text("kept")
    result = CliRunner().invoke(
        app,
        ["report", "--device", DEVICE, "--from", str(FIRST_DAY), "--to", str(LAST_DAY),
         "--format", "csv", "--out", str(taken), "--url", report_url],
    )  # fmt: skip
    assert result.exit_code == 1
    assert "one file per table into a directory" in result.output
    assert taken.read_text() == "kept"


def test_the_content_hash_is_the_same_for_the_same_store_and_arguments(
    report: DeviceReport, report_url: str, document: str
) -> None:
    again = _build(report_url)
    assert again.generated_at != report.generated_at
    digest = content_hash(again)
    assert re.fullmatch(r"[0-9a-f]{64}", digest)
    assert digest == content_hash(report)
    assert digest in document
    assert document_id(report) in document


def test_the_content_hash_changes_with_the_evidence(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'evidence.db'}"
    with EvidenceStore(url) as store:
        populated_store(store)
    before = content_hash(_build(url))
    with EvidenceStore(url) as store:
        store.record_alert(CLAIMS_ALERT, actor=ACTOR)
    assert content_hash(_build(url)) != before


def test_every_pdf_page_says_page_x_of_y_and_the_document_id(
    report: DeviceReport, report_url: str, tmp_path: Path
) -> None:
    out = tmp_path / "report.pdf"
    _report_cli(report_url, "pdf", out)
    text = subprocess.run(
        ["pdftotext", "-layout", str(out), "-"], check=True, capture_output=True, text=True
    ).stdout
    pages = text.split("\f")[:-1]  # pdftotext ends every page with a form feed
    assert len(pages) >= 3
    for number, page in enumerate(pages, start=1):
        assert f"page {number} of {len(pages)}" in page
        assert document_id(report) in page


def test_absence_of_evidence_is_not_styled_as_a_pass(document: str) -> None:
    assert 'class="neutral">no registered claim' in document
    assert 'class="ok">no registered claim' not in document
    assert 'class="ok">no cases' not in document
    assert 'class="ok">consistent' in document


def test_the_period_is_printed_with_the_last_day_the_user_gave(document: str) -> None:
    assert f"{FIRST_DAY} to {LAST_DAY}" in document
    assert str(LAST_DAY + timedelta(days=1)) not in document
    assert "exclusive" not in document


def test_a_version_run_before_its_registration_is_flagged(
    report: DeviceReport, document: str
) -> None:
    [early] = [v for v in report.versions if v.version == EARLY_VERSION]
    assert early.seen_before_registration
    assert not any(v.seen_before_registration for v in report.versions if v is not early)
    assert (
        f"Version {EARLY_VERSION} ran in the field from 2026-03-01, before its registration "
        "on 2026-03-10." in report.findings()
    )
    row = next(r for r in document.split("<tr>") if f"<td>{EARLY_VERSION}</td>" in r)
    assert "before registration" in row


def _week(successes: int, trials: int, week: int) -> Snapshot:
    start = T0 + timedelta(weeks=week)
    return Snapshot(
        "2.1.0.3", "referable_dr", None, "sensitivity", "prospective",
        start, start + timedelta(days=7), successes, trials, 0.0, 1.0, 1.0,
    )  # fmt: skip


def test_a_week_with_too_few_cases_is_a_gap_not_a_perfect_score() -> None:
    rates = weekly_rates([_week(40, 50, 0), _week(1, 1, 1), _week(8, 10, 2)])
    assert rates[0] == pytest.approx(0.8)
    assert math.isnan(rates[1])
    assert rates[2] == pytest.approx(0.8)


def test_the_weekly_caption_states_the_minimum_cases_rule(document: str) -> None:
    caption = re.search(r'<figure id="fig-weekly".*?<figcaption>(.*?)</figcaption>', document)
    assert caption
    assert f"fewer than {MIN_WEEKLY_CASES} cases" in caption.group(1)


def test_contents_lists_devices_versions_and_days(report_url: str) -> None:
    result = CliRunner().invoke(app, ["evidence", "contents", "--url", report_url])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].startswith(f"{DEVICE} (DR Screen, Acme Imaging): 446 outcomes, 2026-03-01 to")
    assert any(
        line.startswith("  2.2.0.0 (unregistered) referable_dr: 3 site(s)") for line in lines
    )
    assert f"  {EARLY_VERSION} (registered) no outcomes" in lines
    assert any(line.startswith(f"  report: postmarket report --device {DEVICE}") for line in lines)


def test_contents_never_creates_a_store(tmp_path: Path) -> None:
    missing = tmp_path / "missing.db"
    result = CliRunner().invoke(app, ["evidence", "contents", "--url", str(missing)])
    assert result.exit_code == 3
    assert not missing.exists()
