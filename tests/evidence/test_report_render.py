"""The post-market report from store data built directly: content, HTML, PDF, pixels."""

from __future__ import annotations

import base64
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from report_builders import DEVICE, FIRST_DAY, LAST_DAY, populated_store
from report_rendering import (
    EXPECTED_SECTIONS,
    figure_ids,
    headings,
    is_blank,
    pdf_pages,
    screenshot,
)
from typer.testing import CliRunner

from evidence.report import DeviceReport, build_report
from evidence.report_promise import SurveillancePlan
from evidence.report_render import SECTIONS, render_html
from evidence.store import EvidenceStore
from launcher.cli import app
from postmarket.versions import preset


@pytest.fixture(scope="module")
def report_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    url = f"sqlite:///{tmp_path_factory.mktemp('report') / 'evidence.db'}"
    with EvidenceStore(url) as store:
        populated_store(store)
    return url


@pytest.fixture(scope="module")
def report(report_url: str) -> Iterator[DeviceReport]:
    with EvidenceStore(report_url) as store:
        yield build_report(store, DEVICE, FIRST_DAY, LAST_DAY, preset("nmpa-syzb"))


@pytest.fixture(scope="module")
def document(report: DeviceReport) -> str:
    return render_html(report)


def test_every_section_appears_in_order(document: str) -> None:
    assert headings(document) == EXPECTED_SECTIONS
    for heading in SECTIONS.values():
        assert f"<h2>{heading}</h2>" in document


def test_every_section_states_prospective_and_retrospective_counts(document: str) -> None:
    for section in re.findall(r"<section .*?</section>", document):
        assert re.search(r"prospective \d+</b> · <b>retrospective \d+", section), section[:80]


def test_figures_are_inline_pngs(document: str) -> None:
    assert set(figure_ids(document)) == {
        "fig-claims",
        "fig-weekly",
        "fig-funnel-2.1.0.3-referable_dr",
        "fig-funnel-2.2.0.0-referable_dr",
        "fig-strata-referable_dr",
        "fig-provenance",
    }
    for encoded in re.findall(r'src="data:image/png;base64,([^"]+)"', document):
        assert base64.b64decode(encoded).startswith(b"\x89PNG")
    assert "http://" not in document and "https://" not in document  # self-contained


def test_the_degraded_unregistered_version_is_called_out(report: DeviceReport) -> None:
    findings = " ".join(report.findings())
    assert "Version 2.2.0.0 ran at 3 site(s) and needs change registration" in findings
    registered = [c for c in report.claims if c.version == "2.1.0.3"]
    assert {c.metric: c.verdict for c in registered} == {
        "sensitivity": "consistent",
        "specificity": "consistent",
    }


def test_counts_split_by_study_design_add_up(report: DeviceReport) -> None:
    design = report.design
    assert design.prospective > 0 and design.retrospective > 0
    assert design.total == len(report.outcomes)
    for study_design in ("prospective", "retrospective"):
        assert 0 < report.followed_up(study_design) < report.predictions(study_design)


def test_alert_lifecycle_is_reported(document: str) -> None:
    assert "camera recalibrated" in document
    assert 'class="status-open">open' in document


def test_reported_alerts_say_how_often_they_recurred(report: DeviceReport, document: str) -> None:
    assert "<th>Recurred</th>" in document
    assert "<td>1x, last 2026-03-10, up to critical</td>" in document
    assert "2 alert(s) in the window, 1 not yet resolved; they recurred 1 time(s)." in (
        report.findings()
    )


def test_html_renders_non_blank_in_headless_chromium(document: str, tmp_path: Path) -> None:
    source = tmp_path / "report.html"
    source.write_text(document)
    png = screenshot(source, tmp_path / "report.png", tmp_path)
    assert not is_blank(png)


def test_cli_writes_a_pdf_whose_pages_render(report_url: str, tmp_path: Path) -> None:
    out = tmp_path / "report.pdf"
    result = CliRunner().invoke(
        app,
        ["report", "--device", DEVICE, "--from", str(FIRST_DAY), "--to", str(LAST_DAY),
         "--format", "pdf", "--out", str(out), "--url", report_url],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert out.read_bytes().startswith(b"%PDF")
    pages = pdf_pages(out, tmp_path)
    assert len(pages) >= 3
    assert not any(is_blank(page) for page in pages[:3])


def test_cli_refuses_an_unknown_device(report_url: str, tmp_path: Path) -> None:
    result = CliRunner().invoke(
        app,
        ["report", "--device", "nope", "--from", "2026-03-01", "--to", "2026-03-31",
         "--out", str(tmp_path / "r.html"), "--url", report_url],
    )  # fmt: skip
    assert result.exit_code == 1
    assert "no device 'nope'" in result.output


def test_cli_refuses_a_reversed_period(report_url: str, tmp_path: Path) -> None:
    result = CliRunner().invoke(
        app,
        ["report", "--device", DEVICE, "--from", "2026-03-31", "--to", "2026-03-01",
         "--out", str(tmp_path / "r.html"), "--url", report_url],
    )  # fmt: skip
    assert result.exit_code == 1
    assert "before --from" in result.output


def test_reader_agreement_is_kappa_of_the_stored_read_pairs(report: DeviceReport) -> None:
    from sklearn.metrics import cohen_kappa_score

    read = [o for o in report.outcomes if o.blinded_reads is not None]
    assert read, "the builder double-reads every other case"
    for row in report.reader_agreement:
        cases = [
            o
            for o in read
            if o.stream.device_version == row.version
            and (row.site == "all sites" or o.stream.site_id == row.site)
        ]
        first = [o.blinded_reads[0] for o in cases if o.blinded_reads]
        second = [o.blinded_reads[1] for o in cases if o.blinded_reads]
        assert row.pairs == len(cases)
        assert row.kappa is not None
        assert row.kappa.kappa == pytest.approx(cohen_kappa_score(first, second), abs=1e-12)
    pooled = {r.version for r in report.reader_agreement if r.site == "all sites"}
    assert pooled == {"2.1.0.3", "2.2.0.0"}


def test_weekly_series_pool_the_sites_of_each_version_and_week(report: DeviceReport) -> None:
    assert report.weekly and all(s.site is None for s in report.weekly)
    for snapshot in report.weekly:
        label = "positive" if snapshot.metric == "sensitivity" else "negative"
        judged = [
            o
            for o in report.outcomes
            if o.stream.device_version == snapshot.version
            and o.study_design == snapshot.study_design
            and snapshot.window_start <= o.prediction_time < snapshot.window_end
            and o.label == label
        ]
        assert snapshot.trials == len(judged)
        assert snapshot.successes == sum(o.decision == label for o in judged)


def test_the_summary_states_what_an_alarm_promises_beside_what_was_raised(
    report_url: str,
) -> None:
    plan = SurveillancePlan("ci_lower", budget_per_year=36.5, fleet_streams=10)
    with EvidenceStore(report_url) as store:
        report = build_report(store, DEVICE, FIRST_DAY, LAST_DAY, preset("nmpa-syzb"), plan)
    promise = report.promise
    assert promise is not None
    days = (LAST_DAY - FIRST_DAY).days + 1
    streams = len({o.stream for o in report.outcomes} | {a.alert.stream for a in report.alerts})
    # 36.5 a year among 10 streams: 0.01 a day per stream
    assert promise.expected_false_alarms == pytest.approx(0.01 * streams * days)
    [sentence] = [line for line in report.findings() if line.startswith("Every alarm's")]
    assert "the lower 95 % confidence bound of its registered claim" in sentence
    assert f"{len(report.alerts)} alert(s) were raised" in sentence
    assert f"expect at most {0.01 * streams * days:.2f} in this period" in sentence
    assert sentence in render_html(report).replace("&#x27;", "'")
