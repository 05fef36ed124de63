"""The report and the PSUR show the claims withdrawn from a version by the period's end, with
when, by whom and why, in their HTML and their exports (and so in their content hash), and
judge none of them: a withdrawn claim is in no claims test, figure or conclusion."""

from __future__ import annotations

import csv
import dataclasses
import json
import re
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from evidence_builders import ACTOR, SENSITIVITY, T0, TASK
from report_builders import DEVICE, FIRST_DAY, LAST_DAY, populated_store

from evidence.psur import build_psur, psur_tables
from evidence.psur_render import render_psur_html
from evidence.report import DeviceReport, build_report
from evidence.report_render import render_html
from evidence.report_tables import content_hash, export_csv, export_json, report_tables
from evidence.store import EvidenceStore
from postmarket.versions import preset

POLICY = preset("nmpa-syzb")
VERSION = "2.1.0.3"
PPV = SENSITIVITY.model_copy(
    update={"metric": "ppv", "value": 0.613, "ci_lower": 0.552, "ci_upper": 0.671}
)
"""Entered on 2.1.0.3 by mistake, then withdrawn: 2.1.0.3 was never registered with a PPV."""
WITHDRAWN_AT = T0 + timedelta(days=4, hours=2)
WHY = "PPV entered by mistake: not in the registration certificate"


def store_with_a_withdrawn_claim(url: str, at: datetime = WITHDRAWN_AT) -> None:
    with EvidenceStore(url) as store:
        populated_store(store)
        store.add_claim(DEVICE, VERSION, PPV, actor=ACTOR)
        store.withdraw_claim(DEVICE, VERSION, TASK, "ppv", why=WHY, actor="ra-lead", at=at)


def monthly_report(url: str) -> DeviceReport:
    with EvidenceStore(url) as store:
        return build_report(store, DEVICE, FIRST_DAY, LAST_DAY, POLICY)


@pytest.fixture(scope="module")
def url(tmp_path_factory: pytest.TempPathFactory) -> str:
    url = f"sqlite:///{tmp_path_factory.mktemp('withdrawn') / 'evidence.db'}"
    store_with_a_withdrawn_claim(url)
    return url


@pytest.fixture(scope="module")
def report(url: str) -> DeviceReport:
    return monthly_report(url)


def claims_section(html: str) -> str:
    found = re.search(r'<section id="claims">.*?</section>', html, re.S)
    assert found is not None
    return found.group(0)


def test_the_claims_section_lists_the_withdrawn_claim_with_when_who_and_why(
    report: DeviceReport,
) -> None:
    tested, _, withdrawn = claims_section(render_html(report)).partition("Claims withdrawn")
    row = next(r for r in withdrawn.split("<tr>") if "ppv" in r)
    for shown in (VERSION, "61.3% [55.2%, 67.1%]", f"{WITHDRAWN_AT:%Y-%m-%d %H:%M} UTC",
                  "ra-lead", WHY):  # fmt: skip
        assert shown in row
    assert "ppv" not in tested and "61.3%" not in tested


def test_the_json_export_carries_the_withdrawn_claim_and_its_claims_table_does_not(
    report: DeviceReport,
) -> None:
    tables = json.loads(export_json(report))["tables"]
    assert tables["withdrawn_claims"] == [
        {
            "version": VERSION, "task": TASK, "metric": "ppv", "claimed": 0.613,
            "claimed_ci_lower": 0.552, "claimed_ci_upper": 0.671,
            "test_database": PPV.test_database, "withdrawn_at": WITHDRAWN_AT.isoformat(),
            "withdrawn_by": "ra-lead", "why": WHY,
        }
    ]  # fmt: skip
    assert [row["metric"] for row in tables["claims"] if row["version"] == VERSION] == [
        "sensitivity",
        "specificity",
    ]


def test_the_csv_export_writes_the_withdrawn_claims(report: DeviceReport, tmp_path: Path) -> None:
    export_csv(report, tmp_path)
    with (tmp_path / "withdrawn_claims.csv").open(newline="") as file:
        (row,) = csv.DictReader(file)
    assert (row["version"], row["metric"], row["withdrawn_by"], row["why"]) == (
        VERSION,
        "ppv",
        "ra-lead",
        WHY,
    )


def test_the_content_hash_covers_the_withdrawn_claims(report: DeviceReport) -> None:
    assert report.withdrawn_claims
    unlisted = dataclasses.replace(report, withdrawn_claims=())
    assert content_hash(report) != content_hash(unlisted)


def test_a_claim_withdrawn_after_the_period_is_not_yet_in_its_report(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'evidence.db'}"
    store_with_a_withdrawn_claim(url, at=T0 + timedelta(days=40))
    report = monthly_report(url)
    (withdrawn,) = [t for t in report_tables(report) if t.name == "withdrawn_claims"]
    assert withdrawn.rows == ()
    assert "No claim of any version was withdrawn by the period's end." in render_html(report)


def test_the_psur_shows_and_exports_the_withdrawn_claim_without_concluding_on_it(
    url: str,
) -> None:
    with EvidenceStore(url) as store:
        psur = build_psur(store, DEVICE, T0.year, POLICY)
    assert [(c.version, c.metric) for c in psur.conclusions if c.metric == "ppv"] == []
    (withdrawn,) = [t for t in psur_tables(psur) if t.name == "withdrawn_claims"]
    assert [(r["version"], r["metric"], r["why"]) for r in withdrawn.records()] == [
        (VERSION, "ppv", WHY)
    ]
    html = render_psur_html(psur)
    assert "1 claim(s) withdrawn by the year's end: no conclusion is drawn on them" in html
    assert WHY in claims_section(html)
