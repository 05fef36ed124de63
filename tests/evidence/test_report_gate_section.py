"""The gate's verdicts as a section of the report and of the PSUR (issue 20, part 2): every
stored verdict, its numbers equal to the store's rows (read back with SQL, not through the
gate's code), whether each version was registered after a passing gate, and one sentence
when there is no verdict."""

from __future__ import annotations

import json
import sqlite3
import subprocess
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest
from report_builders import populated_store
from testdb_builders import candidate, lung_nodule_database
from typer.testing import CliRunner

from evidence.psur import build_psur, psur_tables
from evidence.report import DeviceReport, build_report
from evidence.report_render import render_html, write_report
from evidence.report_tables import export_csv, export_json
from evidence.store import EvidenceStore
from evidence.testdb_cli import EXIT_GATE_FAILED
from launcher.cli import app
from postmarket.versions import preset

runner = CliRunner()
POLICY = preset("nmpa-syzb")
DEVICE, TASK, DATABASE = "nodule-ai", "nodule", "lung-nodule-ct@2026.1"
GATED, UNGATED = "3.1.0.0", "3.0.0.0"
CLAIMS = {"sensitivity": (0.92, 0.85, 0.96), "specificity": (0.93, 0.88, 0.96)}
THIS_YEAR = datetime.now(UTC).year


@pytest.fixture(scope="module")
def gated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """3.0.0.0 registered without a gate; 3.1.0.0 failing on thin slices, then passing and
    registered; a store with the gate's default policy (no gate required)."""
    folder = tmp_path_factory.mktemp("gated")
    database = lung_nodule_database()
    database.to_csv(folder / "cases.csv", index=False)
    candidate(database, 0.97, 0.96, 0.70).to_csv(folder / "thin.csv", index=False)
    candidate(database, 0.95, 0.96, 0.95).to_csv(folder / "passing.csv", index=False)
    url = f"sqlite:///{folder / 'evidence.db'}"
    steps = [
        ["testdb", "import", "lung-nodule-ct", "--version", "2026.1", "--task", TASK,
         "--cases", str(folder / "cases.csv"), "--actor", "qa"],
        ["registry", "add-device", DEVICE, "--task", TASK],
        ["registry", "add-version", DEVICE, UNGATED, "--status", "registered",
         "--reference", "NMPA-2025-0007"],
        ["registry", "add-version", DEVICE, GATED, "--status", "pending"],
        *(
            ["registry", "add-claim", DEVICE, GATED, TASK, "--metric", metric,
             "--value", str(v), "--ci-lower", str(lo), "--ci-upper", str(hi),
             "--test-database", DATABASE]
            for metric, (v, lo, hi) in CLAIMS.items()
        ),
    ]  # fmt: skip
    for argv in steps:
        result = runner.invoke(app, [*argv, "--url", url])
        assert result.exit_code == 0, result.output
    for predictions, exit_code in (("thin.csv", EXIT_GATE_FAILED), ("passing.csv", 0)):
        result = runner.invoke(
            app,
            ["testdb", "run", "--device", DEVICE, "--version", GATED, "--database", DATABASE,
             "--predictions", str(folder / predictions), "--url", url, "--actor", "qa"],
        )  # fmt: skip
        assert result.exit_code == exit_code, result.output
    result = runner.invoke(
        app,
        ["registry", "set-status", DEVICE, GATED, "registered", "--why", "approved",
         "--reference", "NMPA-2026-0001", "--url", url],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    return folder / "evidence.db"


def stored(database: Path, query: str) -> list[dict[str, Any]]:
    """Rows as the store holds them, by plain SQL."""
    with sqlite3.connect(database) as connection:
        connection.row_factory = sqlite3.Row
        return [dict(row) for row in connection.execute(query)]


def stored_runs(database: Path) -> list[dict[str, Any]]:
    return stored(
        database,
        "SELECT run_id, device_version, database_name, database_version, database_sha256, "
        "predictions_sha256, cases, passed, policy FROM test_database_gate_runs ORDER BY id",
    )


def stored_rows(database: Path) -> list[dict[str, Any]]:
    return stored(
        database,
        "SELECT r.run_id, v.metric, v.stratum, v.value, v.n, v.successes, v.estimate, v.lower, "
        "v.upper, v.acceptable, v.criterion, v.met, v.funnel FROM test_database_gate_rows v "
        "JOIN test_database_gate_runs r ON v.run_id = r.id ORDER BY v.id",
    )


def report_of(database: Path, device: str = DEVICE) -> DeviceReport:
    with EvidenceStore(f"sqlite:///{database}") as store:
        return build_report(store, device, date(THIS_YEAR, 1, 1), date(THIS_YEAR, 12, 31), POLICY)


@pytest.fixture(scope="module")
def report(gated: Path) -> DeviceReport:
    return report_of(gated)


@pytest.fixture(scope="module")
def exported(report: DeviceReport) -> dict[str, list[dict[str, Any]]]:
    tables: dict[str, list[dict[str, Any]]] = json.loads(export_json(report))["tables"]
    return tables


def test_the_fixture_holds_one_failing_and_one_passing_run(gated: Path) -> None:
    assert [(r["device_version"], r["passed"]) for r in stored_runs(gated)] == [
        (GATED, 0),
        (GATED, 1),
    ]


def test_every_stored_verdict_row_is_in_the_report_as_stored(
    gated: Path, exported: dict[str, list[dict[str, Any]]]
) -> None:
    columns = ("run_id", "metric", "stratum", "value", "n", "successes", "estimate", "lower",
               "upper", "acceptable", "criterion", "met", "funnel")  # fmt: skip
    shown = [tuple(row[c] for c in columns) for row in exported["gate_verdicts"]]
    expected = [
        tuple(bool(row[c]) if c == "met" and row[c] is not None else row[c] for c in columns)
        for row in stored_rows(gated)
    ]
    assert shown == expected
    assert len(shown) > 2 * 2 * 10


def test_each_run_shows_its_database_content_hash_and_acceptance_criterion(
    gated: Path, exported: dict[str, list[dict[str, Any]]]
) -> None:
    runs = stored_runs(gated)
    shown = exported["gate_runs"]
    assert [(r["run_id"], r["device_version"], r["passed"]) for r in shown] == [
        (r["run_id"], r["device_version"], bool(r["passed"])) for r in runs
    ]
    for row, run in zip(shown, runs, strict=True):
        assert row["database"] == f"{run['database_name']}@{run['database_version']}"
        assert row["database_sha256"] == run["database_sha256"]
        assert row["predictions_sha256"] == run["predictions_sha256"]
        assert json.loads(row["policy"]) == json.loads(run["policy"])
        assert "lower bound >= acceptable" in row["acceptance_criterion"]


def test_the_html_shows_the_failing_band_and_both_verdicts_with_the_stored_numbers(
    gated: Path, report: DeviceReport
) -> None:
    document = render_html(report)
    section = document[document.index('<section id="gate">') :]
    section = section[: section.index("</section>")]
    failing, passing = stored_runs(gated)
    (thin,) = [
        r for r in stored_rows(gated)
        if r["run_id"] == failing["run_id"] and r["met"] == 0
    ]  # fmt: skip
    assert (thin["metric"], thin["stratum"], thin["value"]) == (
        "sensitivity", "slice_thickness_band", "sub_mm"
    )  # fmt: skip
    assert f"Run {failing['run_id'][:8]}: version {GATED} on {DATABASE}, FAILED" in section
    assert f"Run {passing['run_id'][:8]}: version {GATED} on {DATABASE}, passed" in section
    shown = (
        f"{thin['estimate']:.1%} [{thin['lower']:.1%}, {thin['upper']:.1%}] "
        f"({thin['successes']}/{thin['n']})"
    )
    assert shown in section
    assert failing["database_sha256"][:16] in section
    for stratum in ("hospital", "slice thickness band", "scanner manufacturer", "heterogeneity",
                    "reader agreement"):  # fmt: skip
        assert f"<td>{stratum}</td>" in section


def test_each_version_says_whether_it_was_registered_after_a_passing_gate(
    gated: Path, exported: dict[str, list[dict[str, Any]]]
) -> None:
    passing = stored_runs(gated)[1]["run_id"]
    shown = {r["device_version"]: r for r in exported["gate_registrations"]}
    assert shown[GATED]["registered_after_passing_gate"] is True
    assert shown[GATED]["latest_gate_run_before"] == passing
    assert shown[UNGATED]["registered_after_passing_gate"] is False
    assert shown[UNGATED]["finding"] == "registered with no gate run before it"


def gate_section(document: str) -> str:
    section = document[document.index('<section id="gate">') :]
    return section[: section.index("</section>")]


def test_the_section_counts_the_versions_registered_without_a_passing_gate(
    report: DeviceReport,
) -> None:
    assert (
        "<p class=gate-summary>Registered without a passing gate: 1 of 2 registered versions "
        f"({UNGATED}).</p>"
    ) in gate_section(render_html(report))


def test_a_psur_with_no_verdict_in_its_year_still_counts_them(gated: Path) -> None:
    """A year without gate runs is when a registration without one is easiest to miss."""
    with EvidenceStore(f"sqlite:///{gated}") as store:
        last_year = build_psur(store, DEVICE, THIS_YEAR - 1, POLICY)
    assert f"1 of 2 registered versions ({UNGATED})." in gate_section(render_html(last_year.report))


def test_the_csv_export_writes_the_gate_tables(report: DeviceReport, tmp_path: Path) -> None:
    names = {path.stem for path in export_csv(report, tmp_path)}
    assert {"gate_runs", "gate_verdicts", "gate_registrations"} <= names


def test_the_printed_pdf_shows_the_gate_section(
    gated: Path, report: DeviceReport, tmp_path: Path
) -> None:
    out = tmp_path / "report.pdf"
    write_report(report, out, "pdf")
    text = subprocess.run(
        ["pdftotext", "-layout", str(out), "-"], check=True, capture_output=True, text=True
    ).stdout
    failing = stored_runs(gated)[0]["run_id"]
    assert "Standard test database gate: verdicts per version" in text
    assert f"Run {failing[:8]}: version {GATED} on" in text
    assert "registered after passing gate run" in text


def test_the_psur_holds_the_year_s_verdicts_and_no_other(gated: Path) -> None:
    with EvidenceStore(f"sqlite:///{gated}") as store:
        this_year = build_psur(store, DEVICE, THIS_YEAR, POLICY)
        last_year = build_psur(store, DEVICE, THIS_YEAR - 1, POLICY)
    runs = {t.name: t for t in psur_tables(this_year)}["gate_runs"]
    assert [row[0] for row in runs.rows] == [r["run_id"] for r in stored_runs(gated)]
    assert last_year.report.gates.runs == ()
    assert "No standard test database gate verdict is stored for this device between" in (
        render_html(last_year.report)
    )


def test_a_report_with_no_verdict_says_so_in_one_sentence(tmp_path: Path) -> None:
    database = tmp_path / "field.db"
    with EvidenceStore(f"sqlite:///{database}") as store:
        populated_store(store)
    document = render_html(report_of(database, "dr-screen"))
    section = document[document.index('<section id="gate">') :]
    section = section[: section.index("</section>")]
    (none,) = [p for p in section.split("<p class=none>")[1:]]
    sentence = none[: none.index("</p>")]
    assert sentence.startswith("No standard test database gate verdict is stored")
    assert sentence.count(". ") == 0 and sentence.endswith(".")
    assert "<table" not in section


def test_the_psur_period_selects_the_runs_on_each_engine(evidence_url: str, tmp_path: Path) -> None:
    """The period's bounds compare with the stored run times on SQLite and PostgreSQL."""
    database = lung_nodule_database(cases=600)
    database.to_csv(tmp_path / "cases.csv", index=False)
    candidate(database, 0.95, 0.96, 0.95).to_csv(tmp_path / "outputs.csv", index=False)
    for argv in (
        ["testdb", "import", "lung-nodule-ct", "--version", "2026.1", "--task", TASK,
         "--cases", str(tmp_path / "cases.csv")],
        ["registry", "add-device", DEVICE, "--task", TASK],
        ["registry", "add-version", DEVICE, GATED, "--status", "pending"],
        ["registry", "add-claim", DEVICE, GATED, TASK, "--metric", "sensitivity", "--value",
         "0.9", "--ci-lower", "0.5", "--ci-upper", "0.95", "--test-database", DATABASE],
        ["testdb", "run", "--device", DEVICE, "--version", GATED, "--database", DATABASE,
         "--predictions", str(tmp_path / "outputs.csv")],
    ):  # fmt: skip
        result = runner.invoke(app, [*argv, "--url", evidence_url])
        assert result.exit_code == 0, result.output
    with EvidenceStore(evidence_url) as store:
        (run,) = [e for e in store.audit_entries() if e.action == "testdb.gate"]
        this_year = build_psur(store, DEVICE, THIS_YEAR, POLICY).report.gates
        next_year = build_psur(store, DEVICE, THIS_YEAR + 1, POLICY).report.gates
    assert [r.run_id for r in this_year.runs] == [json.loads(run.payload)["run_id"]]
    assert next_year.runs == ()
    (pending,) = [r for r in this_year.registrations if r.version == GATED]
    assert pending.sentence() == "not registered (pending)"
