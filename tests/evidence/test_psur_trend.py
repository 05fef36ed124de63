"""The PSUR's trend reporting section (issue 20, part 4; EU MDR Art. 88): every plan stored
by the year's end, judged as ``plan trend`` judges it, its numbers equal the store's, and
the verdict printed in the PDF."""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Iterator
from datetime import UTC, date, datetime
from pathlib import Path

import pytest
from evidence_builders import registered_device
from report_rendering import is_blank, pdf_pages
from scipy.stats import fisher_exact
from test_trend import DEVICE, _cli, _plan, _positives

from evidence import store_unit
from evidence.psur import Psur, build_psur, export_psur_json, psur_hash
from evidence.psur_render import render_psur_html, verdict_line, write_psur
from evidence.store import EvidenceStore
from evidence.trend_store import amend_plan, record_plan
from postmarket.versions import preset

YEAR = 2026
POLICY = preset("nmpa-syzb")
BASELINE_START, OBSERVATION_START = (
    datetime(2026, 1, 2, tzinfo=UTC),
    datetime(2026, 4, 2, tzinfo=UTC),
)
# The field data: 300 positives a period, detected at 0.88, then at 0.55.
PERIODS = {
    "baseline": (300, 0.88, 1, BASELINE_START),
    "observation": (300, 0.55, 2, OBSERVATION_START),
}


def _stored_at(monkeypatch: pytest.MonkeyPatch, when: datetime) -> None:
    """The store's clock, so "stored before the year's end" does not depend on today."""
    monkeypatch.setattr(store_unit, "utc_now", lambda: when)


@pytest.fixture(scope="module")
def url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    url = f"sqlite:///{tmp_path_factory.mktemp('psur-trend') / 'evidence.db'}"
    with pytest.MonkeyPatch.context() as monkeypatch, EvidenceStore(url) as store:
        _stored_at(monkeypatch, datetime(2026, 1, 1, 8, tzinfo=UTC))
        registered_device(store)
        record_plan(store, _plan(name="sens-h1"), "qa-lead")
        record_plan(store, _plan(name="spec-h1", metric="specificity"), "qa-lead")
        record_plan(
            store,
            _plan(
                name="sens-q1",
                observation_start=date(2026, 2, 1),
                baseline_end=date(2026, 1, 31),
                observation_end=date(2026, 3, 31),
                alpha=0.01,
            ),
            "qa-lead",
        )
        _stored_at(monkeypatch, datetime(2026, 7, 1, 8, tzinfo=UTC))
        events = [_positives(start, n, rate, seed) for n, rate, seed, start in PERIODS.values()]
        store.record_field_events([e for period in events for e in period])  # type: ignore[misc]
        amend_plan(
            store,
            _plan(
                name="sens-q1",
                alpha=0.02,
                observation_start=date(2026, 2, 1),
                baseline_end=date(2026, 1, 31),
                observation_end=date(2026, 3, 31),
            ),
            "cro",
            "alpha agreed with the notified body",
            datetime(2026, 7, 1, tzinfo=UTC),
        )
        # Stored after the year's end: the 2026 PSUR shows neither of these.
        _stored_at(monkeypatch, datetime(2027, 1, 5, tzinfo=UTC))
        amend_plan(store, _plan(name="sens-h1", alpha=0.2), "cro", "too late for 2026")
        record_plan(store, _plan(name="sens-2027"), "qa-lead")
    yield url


def _build(url: str, year: int = YEAR) -> Psur:
    with EvidenceStore(url) as store:
        return build_psur(store, DEVICE, year, POLICY)


@pytest.fixture(scope="module")
def psur(url: str) -> Psur:
    return _build(url)


def _detected(period: str) -> tuple[int, int]:
    """Detected positives and positives of a period, recomputed from the seeds recorded."""
    n, rate, seed, start = PERIODS[period]
    cases = _positives(start, n, rate, seed)
    return sum(case.decision == "positive" for case in cases), n  # type: ignore[attr-defined]


def test_the_section_lists_every_plan_stored_by_the_year_s_end_as_it_stood(psur: Psur) -> None:
    plans = {result.plan.name: result.plan for result in psur.trends}
    assert sorted(plans) == ["sens-h1", "sens-q1", "spec-h1"]
    assert plans["sens-h1"].alpha == 0.05  # the 2027 amendment is not in force in 2026
    assert plans["sens-q1"].alpha == 0.02


def test_the_sensitivity_counts_and_p_value_equal_the_store_s(psur: Psur) -> None:
    document = json.loads(export_psur_json(psur))
    row = next(r for r in document["tables"]["trends"] if r["plan"] == "sens-h1")
    (base_hits, base_n), (seen_hits, seen_n) = _detected("baseline"), _detected("observation")
    assert (row["baseline_successes"], row["baseline_cases"]) == (base_hits, base_n)
    assert (row["observation_successes"], row["observation_cases"]) == (seen_hits, seen_n)
    assert row["observation_proportion"] == pytest.approx(seen_hits / seen_n)
    table = [[seen_n - seen_hits, seen_hits], [base_n - base_hits, base_hits]]
    expected = fisher_exact(table, alternative="greater")[1]
    assert row["p_value"] == pytest.approx(expected, rel=1e-9)
    assert row["verdict"] == "significant deterioration"


def test_a_plan_without_cases_of_its_metric_has_insufficient_data(psur: Psur) -> None:
    result = next(r for r in psur.trends if r.plan.name == "spec-h1")
    assert (result.baseline.n, result.observation.n) == (0, 0)
    assert (result.verdict, result.p_value) == ("insufficient data", None)


def test_an_amendment_is_exported_and_flagged_when_made_after_data(psur: Psur) -> None:
    document = json.loads(export_psur_json(psur))
    assert document["content_hash"] == psur_hash(psur)
    assert [
        (a["plan"], a["amended_by"], a["after_observation_began"])
        for a in document["tables"]["trend_amendments"]
    ] == [("sens-q1", "cro", True)]
    assert "after the observation period began" in render_psur_html(psur)


def test_the_pdf_prints_each_plan_s_verdict_line(psur: Psur, tmp_path: Path) -> None:
    out = tmp_path / "psur.pdf"
    write_psur(psur, out, "pdf")
    text = subprocess.run(
        ["pdftotext", str(out), "-"], check=True, capture_output=True, text=True
    ).stdout
    flat = re.sub(r"\s+", " ", text)
    assert "Trend reporting (MDR Art. 88)" in flat
    for result in psur.trends:
        assert verdict_line(result) in flat
    assert "Verdict: significant deterioration (one-sided p = " in flat
    assert not any(is_blank(png) for png in pdf_pages(out, tmp_path))


def test_a_year_without_a_stored_plan_says_so_in_one_sentence(url: str) -> None:
    psur = _build(url, YEAR - 1)
    assert psur.trends == ()
    assert f"No trend plan of this device was stored by the end of {YEAR - 1}" in (
        render_psur_html(psur)
    )


def test_the_section_shows_what_plan_trend_shows(url: str, psur: Psur) -> None:
    code, output = _cli("plan", "trend", "--device", DEVICE, "--name", "sens-q1", "--json",
                        "--url", url)  # fmt: skip
    assert code == 0, output
    shown = json.loads(output)
    result = next(r for r in psur.trends if r.plan.name == "sens-q1")
    assert (shown["baseline"]["n"], shown["observation"]["n"]) == (
        result.baseline.n,
        result.observation.n,
    )
    assert (shown["p_value"], shown["verdict"]) == (result.p_value, result.verdict)
