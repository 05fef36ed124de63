"""The demo's standard test database gate (``launcher.demo_gate``) on a real evidence
store, SQLite and PostgreSQL, holding the demo fleet's registry: the simulated database
imported with ``testdb import``, two candidates scored with ``testdb run``, registration
refused to the one that fails and granted to the one that passes, the report's gate
section showing both, and the demo's summary naming the failing stratum.
"""

from __future__ import annotations

import io
from dataclasses import replace
from datetime import date
from pathlib import Path

import pytest
from rich.console import Console
from sqlalchemy import make_url

from evidence.report import build_report
from evidence.report_render import render_html
from evidence.store import EvidenceStore
from launcher.demo import DEMO_SCENARIO, register_fleet
from launcher.demo_gate import (
    CANDIDATES,
    DATABASE,
    GATE_DEVICE,
    CandidateOutcome,
    GateDemoResult,
    gate_summary,
    run_gate_demo,
)
from postmarket.versions import preset
from simulator.scenario import load_scenario

FAILING, PASSING = (candidate.version for candidate in CANDIDATES)


@pytest.fixture
def gate_demo(evidence_url: str, tmp_path: Path) -> GateDemoResult:
    with EvidenceStore(evidence_url) as store:
        register_fleet(store, load_scenario(DEMO_SCENARIO))
    return run_gate_demo(evidence_url, tmp_path / "gate")


def outcome_of(result: GateDemoResult, version: str) -> CandidateOutcome:
    return next(o for o in result.candidates if o.candidate.version == version)


def test_the_failing_candidate_fails_on_sub_millimetre_sensitivity_alone(
    gate_demo: GateDemoResult,
) -> None:
    failing = outcome_of(gate_demo, FAILING)
    assert not failing.passed
    failed = [(row.metric, row.stratum, row.value) for row in failing.failed]
    assert failed == [("sensitivity", "slice_thickness_band", "sub_mm")]


def test_the_failing_candidates_overall_sensitivity_meets_the_claim(
    gate_demo: GateDemoResult,
) -> None:
    """The compatibility failure is one the overall number hides."""
    failing = outcome_of(gate_demo, FAILING)
    overall = next(r for r in failing.rows if (r.metric, r.stratum) == ("sensitivity", "overall"))
    assert overall.met is True


def test_the_passing_candidate_meets_every_judged_row(gate_demo: GateDemoResult) -> None:
    passing = outcome_of(gate_demo, PASSING)
    judged = [row for row in passing.rows if row.met is not None]
    assert passing.passed
    assert len(judged) > 20
    assert all(row.met for row in judged)


def test_registration_is_refused_to_the_failing_candidate_with_the_reason(
    gate_demo: GateDemoResult, evidence_url: str
) -> None:
    failing = outcome_of(gate_demo, FAILING)
    with EvidenceStore(evidence_url) as store:
        statuses = {
            str(v.version): v.registration_status for v in store.device(GATE_DEVICE).versions
        }
    assert statuses[FAILING] == "unregistered"
    assert not failing.registered
    assert "needs a passing standard test database gate" in failing.registry_answer
    assert f"the latest run, {failing.run_id}, failed" in failing.registry_answer


def test_the_passing_candidate_is_registered(gate_demo: GateDemoResult, evidence_url: str) -> None:
    with EvidenceStore(evidence_url) as store:
        statuses = {
            str(v.version): v.registration_status for v in store.device(GATE_DEVICE).versions
        }
    assert statuses[PASSING] == "registered"
    assert outcome_of(gate_demo, PASSING).registered


def test_the_report_shows_both_verdicts_and_the_registration_after_the_passing_one(
    gate_demo: GateDemoResult, evidence_url: str
) -> None:
    with EvidenceStore(evidence_url) as store:
        report = build_report(
            store, GATE_DEVICE, date(2026, 1, 1), date(2026, 12, 31), preset("nmpa-syzb")
        )
    html = render_html(report)
    gate = html[html.index('<section id="gate">') :]
    gate = gate[: gate.index("</section>")]
    passing = outcome_of(gate_demo, PASSING)
    assert (
        f"Run {outcome_of(gate_demo, FAILING).run_id[:8]}: version {FAILING} on {DATABASE}, FAILED"
        in gate
    )
    assert f"Run {passing.run_id[:8]}: version {PASSING} on {DATABASE}, passed" in gate
    assert f"registered after passing gate run {passing.run_id[:8]}" in gate


def test_the_summary_names_the_failing_stratum_and_the_refusal(
    gate_demo: GateDemoResult,
) -> None:
    shown = io.StringIO()
    gate_summary(gate_demo, Console(file=shown, width=200, color_system=None))
    lines = shown.getvalue().splitlines()
    failing = next(line for line in lines if line.startswith(f"{FAILING} ("))
    assert "gate FAILED (sensitivity on sub-mm slices (74/100)" in failing
    assert "registration refused" in failing
    passing = next(line for line in lines if line.startswith(f"{PASSING} ("))
    assert "gate passed; registered" in passing


def test_a_candidate_designed_to_fail_on_no_stratum_passes(
    evidence_url: str, tmp_path: Path
) -> None:
    """The failure is the design's, not the database's: without the thin-slice regression the
    same candidate passes."""
    with EvidenceStore(evidence_url) as store:
        register_fleet(store, load_scenario(DEMO_SCENARIO))
    unregressed = replace(CANDIDATES[0], band_sensitivity={})
    result = run_gate_demo(evidence_url, tmp_path / "gate", candidates=(unregressed,))
    assert result.candidates[0].passed


def test_the_commands_file_lists_every_command_run_and_hides_the_store_password(
    gate_demo: GateDemoResult, evidence_url: str
) -> None:
    text = (gate_demo.directory / "commands.txt").read_text()
    commands = [line.split()[1:3] for line in text.splitlines() if line.startswith("postmarket")]
    assert commands == [
        ["testdb", "import"],
        *[["testdb", "run"], ["registry", "set-status"]] * len(CANDIDATES),
    ]
    assert "export POSTMARKET_GATE_REQUIRED_FOR=deployment" in text
    password = make_url(evidence_url).password
    assert not password or str(password) not in text
