"""The periodic safety update report (issue 20, part 3): its numbers equal the store's, it is
deterministic for the same store and year, and it prints with its id on every page."""

from __future__ import annotations

import json
import subprocess
from datetime import timedelta
from pathlib import Path

import pandas as pd
import pytest
from evidence_builders import DEVICE, T0, make_alert
from report_builders import field_cases, populated_store
from report_rendering import is_blank, pdf_pages

from evidence.psur import CONCLUSIONS, Psur, build_psur, psur_document_id, psur_hash
from evidence.psur_render import render_psur_html, write_psur
from evidence.rebaseline import rebaseline_decision
from evidence.store import EvidenceStore
from postmarket.versions import preset

YEAR = T0.year
POLICY = preset("nmpa-syzb")
WHY = "site-a's new camera validated against the reference reads"


def _store(url: str) -> None:
    with EvidenceStore(url) as store:
        populated_store(store)
        for at in (T0 + timedelta(days=10), T0 - timedelta(days=400)):  # this year, and not
            alert = make_alert(detector="score_drift", raised_at=at)
            store.record_alert(alert, actor="worker")
            store.acknowledge_alert(alert.alert_id, by="dr.li", note="new camera?", at=at)
            store.record_rebaseline(rebaseline_decision(alert, "dr.li", WHY, at))


@pytest.fixture(scope="module")
def url(tmp_path_factory: pytest.TempPathFactory) -> str:
    url = f"sqlite:///{tmp_path_factory.mktemp('psur') / 'evidence.db'}"
    _store(url)
    return url


def _build(url: str, year: int = YEAR) -> Psur:
    with EvidenceStore(url) as store:
        return build_psur(store, DEVICE, year, POLICY)


@pytest.fixture(scope="module")
def psur(url: str) -> Psur:
    return _build(url)


def _field_frame() -> tuple[pd.DataFrame, pd.DataFrame]:
    """The same field data populated_store recorded, recomputed from its seeds."""
    predictions, outcomes = [], []
    for version, sensitivity, n, seed, design in [
        ("2.1.0.3", 0.88, 300, 1, "prospective"),
        ("2.1.0.3", 0.88, 120, 2, "retrospective"),
        ("2.2.0.0", 0.55, 150, 3, "prospective"),
    ]:
        done, made = field_cases(version, sensitivity, n, seed, design)
        predictions += [(p.stream.device_version, p.site_id) for p in made]
        outcomes += [(o.stream.device_version, o.stream.site_id) for o in done]
    columns = ["version", "site"]
    return pd.DataFrame(predictions, columns=columns), pd.DataFrame(outcomes, columns=columns)


def test_exposure_equals_the_cases_the_store_holds_per_version_and_site(psur: Psur) -> None:
    predictions, outcomes = _field_frame()
    expected = pd.DataFrame(
        {
            "predictions": predictions.value_counts(["version", "site"]),
            "with_truth": outcomes.value_counts(["version", "site"]),
        }
    ).sort_index()
    shown = pd.DataFrame(
        [(r.version, r.site, r.predictions, r.with_truth) for r in psur.exposure],
        columns=["version", "site", "predictions", "with_truth"],
    ).set_index(["version", "site"])
    pd.testing.assert_frame_equal(shown, expected, check_dtype=False, check_names=False)


def test_each_claim_gets_the_conclusion_its_claims_test_supports(psur: Psur) -> None:
    verdicts = {(c.version, c.task, c.metric): c.verdict for c in psur.report.claims}
    assert {(c.version, c.task, c.metric): c.verdict for c in psur.conclusions} == verdicts
    assert all(c.conclusion == CONCLUSIONS[c.verdict] for c in psur.conclusions)
    # 2.1.0.3 holds its claims in the field; 2.2.0.0 runs with none registered.
    by_version = {c.version: c.verdict for c in psur.conclusions}
    assert by_version["2.1.0.3"] == "consistent"
    assert by_version["2.2.0.0"] == "no registered claim"


def test_only_the_year_s_rebaselines_are_listed(psur: Psur) -> None:
    assert [(r.decided_by, r.reason, r.decided_at.year) for r in psur.rebaselines] == [
        ("dr.li", WHY, YEAR)
    ]


def test_the_same_store_and_year_give_the_same_hash_and_another_year_another(url: str) -> None:
    first, again = _build(url), _build(url)
    assert psur_hash(first) == psur_hash(again)
    assert psur_document_id(first) == psur_document_id(again)
    assert psur_hash(_build(url, YEAR - 1)) != psur_hash(first)


def test_the_json_export_holds_the_psur_tables_and_the_hash(psur: Psur, tmp_path: Path) -> None:
    out = tmp_path / "psur.json"
    write_psur(psur, out, "json")
    document = json.loads(out.read_text())
    assert document["content_hash"] == psur_hash(psur)
    assert {"exposure", "conclusions", "rebaselines", "claims", "alerts"} <= set(document["tables"])
    exposure = document["tables"]["exposure"]
    assert sum(row["predictions"] for row in exposure) == sum(r.predictions for r in psur.exposure)


def test_the_csv_export_writes_one_file_per_table(psur: Psur, tmp_path: Path) -> None:
    written = write_psur(psur, tmp_path / "csv", "csv")
    names = {path.stem for path in written}
    assert {"document", "exposure", "conclusions", "rebaselines"} <= names


def test_the_html_has_the_psur_sections_before_the_year_s_report(psur: Psur) -> None:
    document = render_psur_html(psur)
    sections = ("identity", "conclusions", "exposure", "claims", "alerts", "rebaselines")
    order = [document.index(f'<section id="{name}">') for name in sections]
    assert order == sorted(order)
    assert psur_document_id(psur) in document


def test_every_pdf_page_says_page_x_of_y_and_the_document_id(psur: Psur, tmp_path: Path) -> None:
    out = tmp_path / "psur.pdf"
    write_psur(psur, out, "pdf")
    text = subprocess.run(
        ["pdftotext", "-layout", str(out), "-"], check=True, capture_output=True, text=True
    ).stdout
    pages = text.split("\f")[:-1]
    assert len(pages) >= 3
    for number, page in enumerate(pages, start=1):
        assert f"page {number} of {len(pages)}" in page
        assert psur_document_id(psur) in page
    assert not any(is_blank(png) for png in pdf_pages(out, tmp_path))


def test_a_year_that_is_not_one_is_refused(url: str) -> None:
    with pytest.raises(ValueError, match="not a calendar year"):
        _build(url, 99999)
