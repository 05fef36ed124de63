"""The standard test database gate: a candidate version scored on a database against its
registered claims, per stratum, stored as evidence with its provenance.

Every verdict row is checked against an offline recomputation with pandas and statsmodels
on the same files: Wilson and Clopper-Pearson intervals (``proportion_confint``), the
DerSimonian-Laird I² (``combine_effects``) with the Higgins-Thompson interval written out
from the paper, and Cohen's kappa (``cohens_kappa``).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd  # type: ignore[import-untyped]
import pytest
from statsmodels.stats.inter_rater import cohens_kappa  # type: ignore[import-untyped]
from statsmodels.stats.meta_analysis import combine_effects  # type: ignore[import-untyped]
from statsmodels.stats.proportion import proportion_confint  # type: ignore[import-untyped]
from testdb_builders import HOSPITALS, candidate, lung_nodule_database
from typer.testing import CliRunner

from evidence.registration import GateOutcome, gate_problem
from evidence.store import EvidenceStore
from evidence.testdb import read_case_list
from evidence.testdb_cli import EXIT_GATE_FAILED
from evidence.testdb_gate import (
    CRITERIA,
    DatabasePrediction,
    GatePolicy,
    PredictionFileError,
    confusion_cell,
    gate_verdict,
    match_predictions,
    read_predictions,
)
from evidence.testdb_gate_store import gate_refusal, latest_run
from evidence.testdb_store import import_version
from launcher.cli import app

runner = CliRunner()

DEVICE, VERSION, TASK = "nodule-ai", "3.1.0.0", "nodule"
DATABASE = "lung-nodule-ct@2026.1"
CLAIMS = {"sensitivity": (0.92, 0.85, 0.96), "specificity": (0.93, 0.88, 0.96)}
"""metric -> (value, ci_lower, ci_upper): the acceptable levels are 0.85 and 0.88."""
SUCCESS = {"sensitivity": ("positive", "positive"), "specificity": ("negative", "negative")}
"""metric -> (label of its cases, decision that is a success)."""
STRATA = ("hospital", "slice_thickness_band", "scanner_manufacturer", "scanner_model")


def band(mm: float) -> str:
    return "sub_mm" if mm < 1.0 else "1_2mm" if mm <= 2.0 else "about_5mm"


def offline_rows(
    database: pd.DataFrame, outputs: pd.DataFrame, method: str
) -> dict[tuple[str, str, str], tuple[int, int, float, float]]:
    """(metric, stratum, value) -> (successes, n, lower, upper), by pandas and statsmodels."""
    frame = database.merge(outputs, on="case_pseudonym")
    frame["slice_thickness_band"] = frame["slice_thickness_mm"].map(band)
    frame["overall"] = "all"
    expected = {}
    for metric, (label, success) in SUCCESS.items():
        cases = frame[frame["label"] == label]
        for stratum in ("overall", *STRATA):
            for value, group in cases.groupby(stratum):
                hits, n = int((group["decision"] == success).sum()), len(group)
                lower, upper = proportion_confint(hits, n, alpha=0.05, method=method)
                expected[(metric, stratum, str(value))] = (hits, n, lower, upper)
    return expected


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    database = lung_nodule_database()
    paths = {
        "cases": tmp_path / "cases.csv",
        "passing": tmp_path / "v3.1-passing.csv",
        "thin": tmp_path / "v3.1-thin-slices.parquet",
        "weak": tmp_path / "v3.1-weak-hospital.csv",
    }
    database.to_csv(paths["cases"], index=False)
    candidate(database, 0.95, 0.96, 0.95).to_csv(paths["passing"], index=False)
    candidate(database, 0.97, 0.96, 0.70).to_parquet(paths["thin"], index=False)
    candidate(database, 0.97, 0.96, 0.97, "wuhan-4").to_csv(paths["weak"], index=False)
    return paths


@pytest.fixture
def gated_store(sqlite_url: str, files: dict[str, Path]) -> str:
    """A SQLite store with the database imported and the candidate's claims registered."""
    return registered(sqlite_url, files)


@pytest.fixture
def gated_store_on_each_engine(evidence_url: str, files: dict[str, Path]) -> str:
    """As :func:`gated_store`, on SQLite and on PostgreSQL in turn."""
    return registered(evidence_url, files)


def registered(url: str, files: dict[str, Path]) -> str:
    with EvidenceStore(url) as store:
        import_version(
            store, "lung-nodule-ct", "2026.1", TASK, read_case_list(files["cases"]),
            by="qa", source="cases.csv",
        )  # fmt: skip
    for argv in (
        ["registry", "add-device", DEVICE, "--task", TASK],
        ["registry", "add-version", DEVICE, VERSION, "--status", "pending"],
        *(
            ["registry", "add-claim", DEVICE, VERSION, TASK, "--metric", metric,
             "--value", str(v), "--ci-lower", str(lo), "--ci-upper", str(hi),
             "--test-database", DATABASE]
            for metric, (v, lo, hi) in CLAIMS.items()
        ),
    ):  # fmt: skip
        result = runner.invoke(app, [*argv, "--url", url])
        assert result.exit_code == 0, result.output
    return url


def gate(url: str, predictions: Path, *options: str) -> tuple[int, str]:
    result = runner.invoke(
        app,
        ["testdb", "run", "--device", DEVICE, "--version", VERSION, "--database", DATABASE,
         "--predictions", str(predictions), "--url", url, "--actor", "qa", *options],
    )  # fmt: skip
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    return result.exit_code, result.output


@pytest.mark.parametrize(("interval", "method"), [("wilson", "wilson"), ("exact", "beta")])
def test_every_proportion_row_equals_pandas_and_statsmodels(
    gated_store: str, files: dict[str, Path], interval: str, method: str
) -> None:
    code, output = gate(gated_store, files["passing"], "--format", "json", "--interval", interval)
    rows = json.loads(output)["rows"]
    expected = offline_rows(pd.read_csv(files["cases"]), pd.read_csv(files["passing"]), method)
    judged = {
        (r["metric"], r["stratum"], r["value"]): r for r in rows if r["successes"] is not None
    }
    judged = {key: row for key, row in judged.items() if key[0] in SUCCESS}
    assert judged.keys() == expected.keys()
    for key, (hits, n, lower, upper) in expected.items():
        row = judged[key]
        assert (row["successes"], row["n"]) == (hits, n), key
        assert row["lower"] == pytest.approx(lower, abs=1e-9), key
        assert row["upper"] == pytest.approx(upper, abs=1e-9), key
        assert row["outcome"] == ("met" if lower >= CLAIMS[key[0]][1] else "FAILED"), key
    assert code == 0
    assert len(expected) == 2 * (1 + 5 + 3 + 2 + 4)


def test_heterogeneity_across_hospitals_equals_dersimonian_laird_by_statsmodels(
    gated_store: str, files: dict[str, Path]
) -> None:
    _, output = gate(gated_store, files["weak"], "--format", "json")
    rows = json.loads(output)["rows"]
    expected = offline_rows(pd.read_csv(files["cases"]), pd.read_csv(files["weak"]), "wilson")
    i2 = {}
    for metric in SUCCESS:
        counts = np.array([expected[(metric, "hospital", h)][:2] for h in sorted(HOSPITALS)])
        hits, n = counts[:, 0] + 0.5, counts[:, 1] - counts[:, 0] + 0.5
        effects, variances = np.log(hits / n), 1 / hits + 1 / n
        pooled = combine_effects(effects, variances, method_re="dl")
        k, q = len(HOSPITALS), float(pooled.q)
        # Higgins & Thompson (2002), appendix: SE of ln H, H truncated at 1 (as R's meta
        # and heterometa compute it), then back to I².
        if q > k:
            se = 0.5 * (math.log(q) - math.log(k - 1)) / (math.sqrt(2 * q) - math.sqrt(2 * k - 3))
        else:
            se = math.sqrt(1 / (2 * (k - 2)) * (1 - 1 / (3 * (k - 2) ** 2)))
        h = max(1.0, math.sqrt(q / (k - 1)))
        bounds = [1 - 1 / max(1.0, h * math.exp(z * se)) ** 2 for z in (-1.959964, 1.959964)]
        (row,) = [r for r in rows if r["metric"] == metric and r["stratum"] == "heterogeneity"]
        assert row["n"] == k
        assert row["estimate"] == pytest.approx(max(0.0, pooled.i2), abs=1e-9)
        assert [row["lower"], row["upper"]] == pytest.approx(bounds, abs=1e-5)
        assert row["outcome"] == "reported"
        i2[metric] = row["estimate"]
    assert i2["sensitivity"] > 0.5 and i2["specificity"] == 0.0
    rows_by = {(r["metric"], r["stratum"], r["value"]): r for r in rows}
    assert rows_by[("sensitivity", "hospital", "wuhan-4")]["funnel"] == "below"
    assert rows_by[("sensitivity", "hospital", "beijing-1")]["funnel"] == "inside"


def test_reader_agreement_equals_cohens_kappa_by_statsmodels(
    gated_store: str, files: dict[str, Path]
) -> None:
    _, output = gate(gated_store, files["passing"], "--format", "json")
    (row,) = [r for r in json.loads(output)["rows"] if r["stratum"] == "reader_agreement"]
    database = pd.read_csv(files["cases"])
    table = pd.crosstab(database["first_read"], database["second_read"]).to_numpy()
    expected = cohens_kappa(table)
    assert row["n"] == len(database)
    assert row["estimate"] == pytest.approx(expected.kappa, abs=1e-9)
    assert [row["lower"], row["upper"]] == pytest.approx(
        [expected.kappa_low, expected.kappa_upp], abs=1e-9
    )


def test_a_candidate_failing_on_thin_slices_passes_overall_and_fails_that_band(
    gated_store: str, files: dict[str, Path]
) -> None:
    code, output = gate(gated_store, files["thin"], "--format", "json")
    rows = {(r["metric"], r["stratum"], r["value"]): r for r in json.loads(output)["rows"]}
    assert rows[("sensitivity", "overall", "all")]["outcome"] == "met"
    assert rows[("sensitivity", "slice_thickness_band", "sub_mm")]["outcome"] == "FAILED"
    failed = sorted(key for key, row in rows.items() if row["outcome"] == "FAILED")
    assert failed == [("sensitivity", "slice_thickness_band", "sub_mm")]
    assert code == EXIT_GATE_FAILED


def test_the_verdict_table_names_every_stratum_and_the_failing_band(
    gated_store: str, files: dict[str, Path]
) -> None:
    code, output = gate(gated_store, files["thin"])
    assert code == EXIT_GATE_FAILED
    failing = [line for line in output.splitlines() if " FAILED " in f"{line} "]
    assert len(failing) == 1 and "sub_mm" in failing[0] and "sensitivity" in failing[0]
    assert "FAILED: 1 of" in output
    for value in (*HOSPITALS, "about_5mm", "Siemens", "Revolution", "first vs second read"):
        assert value in output


def test_the_gate_writes_csv_with_one_line_per_row(
    gated_store: str, files: dict[str, Path]
) -> None:
    code, output = gate(gated_store, files["passing"], "--format", "csv")
    lines = output.splitlines()
    assert lines[0].startswith("metric,stratum,value,n,successes,estimate,lower,upper")
    assert code == 0
    # 2 claims x (overall, 5 hospitals, 3 bands, 2 makers, 4 models, heterogeneity) + kappa
    assert len(lines) == 1 + 2 * 16 + 1


def test_a_run_is_stored_with_its_provenance_in_one_audit_entry(
    gated_store_on_each_engine: str, files: dict[str, Path]
) -> None:
    code, output = gate(gated_store_on_each_engine, files["thin"], "--format", "json")
    run = json.loads(output)
    with EvidenceStore(gated_store_on_each_engine) as store:
        entries = [e for e in store.audit_entries() if e.action == "testdb.gate"]
        stored = latest_run(store, DEVICE, VERSION)
        (imported,) = [e for e in store.audit_entries() if e.action == "testdb.import"]
        assert store.verify_audit_chain().intact
    assert len(entries) == 1
    payload = json.loads(entries[0].payload)
    assert entries[0].actor == "qa"
    assert entries[0].subject == f"device:{DEVICE}/version:{VERSION}"
    assert payload["predictions_sha256"] == hashlib.sha256(files["thin"].read_bytes()).hexdigest()
    assert payload["database_sha256"] == json.loads(imported.payload)["content_sha256"]
    assert payload["database"] == DATABASE
    assert payload["policy"]["interval"] == "wilson"
    assert payload["policy"]["stratum_criterion"] == "lower_bound"
    assert payload["passed"] is False
    assert payload["failed_rows"] == ["sensitivity slice_thickness_band=sub_mm"]
    assert stored is not None and stored.run_id == run["run_id"] == payload["run_id"]
    assert [r.outcome for r in stored.rows] == [r["outcome"] for r in run["rows"]]
    assert code == EXIT_GATE_FAILED


def test_running_the_same_inputs_again_is_recorded_again_naming_the_first_run(
    gated_store_on_each_engine: str, files: dict[str, Path]
) -> None:
    _, first = gate(gated_store_on_each_engine, files["passing"], "--format", "json")
    _, second = gate(gated_store_on_each_engine, files["passing"], "--format", "json")
    _, stricter = gate(
        gated_store_on_each_engine, files["passing"], "--format", "json", "--interval", "exact"
    )
    with EvidenceStore(gated_store_on_each_engine) as store:
        entries = [
            json.loads(e.payload) for e in store.audit_entries() if e.action == "testdb.gate"
        ]
    first_id = json.loads(first)["run_id"]
    assert [e["same_inputs_as"] for e in entries] == [None, first_id, None]
    assert json.loads(second)["same_inputs_as"] == first_id
    assert json.loads(stricter)["run_id"] not in (first_id, json.loads(second)["run_id"])


@pytest.mark.parametrize(
    ("required_for", "target", "latest", "refused"),
    [
        ("none", "registered", None, False),
        ("registration", "pending", None, True),
        ("registration", "registered", GateOutcome("r1", passed=False), True),
        ("registration", "registered", GateOutcome("r1", passed=True), False),
        ("registration", "withdrawn", None, False),
        ("deployment", "pending", None, False),
        ("deployment", "registered", None, True),
    ],
)
def test_the_policy_says_which_statuses_need_a_passing_gate(
    required_for: str, target: str, latest: GateOutcome | None, refused: bool
) -> None:
    problem = gate_problem(required_for, target, latest)  # type: ignore[arg-type]
    assert (problem is not None) == refused


def test_set_status_is_refused_after_a_failing_gate_and_allowed_after_a_passing_one(
    gated_store: str, files: dict[str, Path]
) -> None:
    with EvidenceStore(gated_store) as store:
        before = gate_refusal(store, DEVICE, VERSION, "registered", "registration")
    gate(gated_store, files["thin"])
    with EvidenceStore(gated_store) as store:
        after_failing = gate_refusal(store, DEVICE, VERSION, "registered", "registration")
        off = gate_refusal(store, DEVICE, VERSION, "registered", "none")
    gate(gated_store, files["passing"])
    with EvidenceStore(gated_store) as store:
        after_passing = gate_refusal(store, DEVICE, VERSION, "registered", "registration")
    assert before is not None and "run `postmarket testdb run` first" in before
    assert after_failing is not None and "failed" in after_failing
    assert off is None and after_passing is None


def test_registry_set_status_enforces_the_gate_policy(
    gated_store: str, files: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """With ``gate_required_for = deployment``, registering waits for a passing gate."""
    monkeypatch.setenv("POSTMARKET_GATE_REQUIRED_FOR", "deployment")

    def register() -> tuple[int, str]:
        result = runner.invoke(
            app,
            ["registry", "set-status", DEVICE, VERSION, "registered", "--why", "approved",
             "--reference", "NMPA-2026-0001", "--url", gated_store, "--actor", "ra"],
        )  # fmt: skip
        return result.exit_code, result.output

    refused_code, refused = register()
    gate(gated_store, files["thin"])
    failed_code, failed = register()
    gate(gated_store, files["passing"])
    passed_code, passed = register()
    assert refused_code != 0 and "testdb run" in refused, refused
    assert failed_code != 0 and "failed" in failed, failed
    assert passed_code == 0 and "pending -> registered" in passed, passed


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ("case-00001,0.8,maybe,0.5", "row 3, column decision: 'maybe' is not positive or negative"),
        ("case-00001,1.5,positive,0.5", "row 3, column score: 1.5 is not between 0 and 1"),
        ("case-00001,0.2,positive,0.5", "row 3, column decision: positive disagrees with score"),
        ("bad pseudonym,0.8,positive,0.5", "row 3, column case_pseudonym"),
    ],
)
def test_a_bad_row_is_refused_naming_its_row_and_column(
    tmp_path: Path, row: str, message: str
) -> None:
    path = tmp_path / "p.csv"
    path.write_text(
        f"case_pseudonym,score,decision,operating_threshold\ncase-00000,0.1,negative,0.5\n{row}\n"
    )
    with pytest.raises(PredictionFileError, match=message.replace("(", r"\(")):
        read_predictions(path)


def test_predictions_must_cover_exactly_the_database(
    gated_store: str, files: dict[str, Path], tmp_path: Path
) -> None:
    outputs = pd.read_csv(files["passing"])
    missing, stranger = tmp_path / "missing.csv", tmp_path / "stranger.csv"
    outputs.iloc[1:].to_csv(missing, index=False)
    extra = pd.DataFrame([{"case_pseudonym": "case-99999", "score": 0.1, "decision": "negative"}])
    pd.concat([outputs, extra]).to_csv(stranger, index=False)
    code, output = gate(gated_store, missing)
    assert code == 1 and "1 case(s) of the database have no prediction, first case-00000" in output
    code, output = gate(gated_store, stranger)
    assert code == 1 and "not in the database, first case-99999" in output
    with EvidenceStore(gated_store) as store:
        assert latest_run(store, DEVICE, VERSION) is None


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--database", "lung-nodule-ct"], "write NAME@VERSION"),
        (["--database", "lung-nodule-ct@2030.1"], "is not in the store"),
        (["--version", "9.9.9.9"], "has no version 9.9.9.9"),
        (["--version", "three"], "three"),
        (["--format", "xml"], "--format 'xml'"),
        (["--criterion", "vibes"], "criterion 'vibes'"),
    ],
)
def test_a_gate_that_cannot_run_says_why_in_one_line(
    gated_store: str, files: dict[str, Path], argv: list[str], message: str
) -> None:
    code, output = gate(gated_store, files["passing"], *argv)
    assert code == 1
    assert message in output and "Traceback" not in output


def test_the_gate_counts_cases_as_the_live_pipeline_does() -> None:
    from streams.stream_monitor import CELLS
    from streams.stream_monitor import confusion_cell as live_cell
    from tests.factories import make_outcome

    for offset, (decision, label) in enumerate(
        [(d, lab) for d in ("positive", "negative") for lab in ("positive", "negative")]
    ):
        outcome = make_outcome(decision, label, offset)  # type: ignore[arg-type]
        assert confusion_cell(label, decision) == CELLS[live_cell(outcome)]  # type: ignore[arg-type]


def test_a_stratum_without_cases_of_a_metric_is_reported_not_judged() -> None:
    from evidence.testdb import DatabaseCase
    from postmarket.contracts.events import Claim

    cases = [DatabaseCase(f"c{i}", "negative", strata={"hospital": "H1"}) for i in range(50)]
    cases += [DatabaseCase(f"p{i}", "positive", strata={"hospital": "H2"}) for i in range(80)]
    outputs = [DatabasePrediction(c.case_pseudonym, 0.5, c.label) for c in cases]
    claim = Claim(
        task=TASK, metric="sensitivity", value=0.9, ci_lower=0.8, ci_upper=0.95,
        test_database=DATABASE,
    )  # fmt: skip
    verdict = gate_verdict(match_predictions(cases, outputs), [claim], GatePolicy())
    by_value = {row.value: row for row in verdict.rows if row.stratum == "hospital"}
    assert by_value["H1"].met is None and by_value["H1"].n == 0
    assert by_value["H2"].met is True and verdict.passed
    assert set(CRITERIA) == {"lower_bound", "estimate", "not_below"}


def test_the_latest_verdict_is_read_back_with_its_exit_code(
    gated_store: str, files: dict[str, Path]
) -> None:
    def verdict() -> tuple[int, str]:
        argv = ["testdb", "verdict", "--device", DEVICE, "--version", VERSION, "--url", gated_store]
        result = runner.invoke(app, [*argv, "--format", "json"])
        return result.exit_code, result.output

    never = verdict()
    _, passing = gate(gated_store, files["passing"], "--format", "json")
    after_pass = verdict()
    gate(gated_store, files["thin"])
    after_fail = verdict()
    assert never[0] == 1 and "has no gate run" in never[1]
    assert after_pass == (0, passing)
    assert after_fail[0] == EXIT_GATE_FAILED and json.loads(after_fail[1])["passed"] is False


def test_the_settings_choose_the_interval_and_the_criterion(
    gated_store: str, files: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("POSTMARKET_GATE_INTERVAL", "exact")
    monkeypatch.setenv("POSTMARKET_GATE_CRITERION", "estimate")
    _, output = gate(gated_store, files["thin"], "--format", "json")
    run = json.loads(output)
    assert run["policy"]["interval"] == "exact"
    assert run["policy"]["overall_criterion"] == run["policy"]["stratum_criterion"] == "estimate"
    assert {row["criterion"] for row in run["rows"] if row["metric"] in SUCCESS} >= {
        "estimate >= acceptable"
    }


def test_revision_10_adds_the_gate_tables_and_removes_them_again(
    evidence_url: str, files: dict[str, Path]
) -> None:
    from sqlalchemy import inspect
    from test_evidence_migrations import downgrade

    from evidence.migrate import current_revision, make_engine, upgrade

    tables = {"test_database_gate_runs", "test_database_gate_rows"}
    with EvidenceStore(evidence_url) as store:
        database = read_case_list(files["cases"])
        import_version(store, "db", "1", TASK, database[:10], by="qa", source="x")
    engine = make_engine(evidence_url)
    try:
        assert tables <= set(inspect(engine).get_table_names())
        downgrade(engine, "0009")
        assert current_revision(engine) == "0009"
        assert not tables & set(inspect(engine).get_table_names())
        assert "test_databases" in set(inspect(engine).get_table_names())
        upgrade(engine)
        assert tables <= set(inspect(engine).get_table_names())
    finally:
        engine.dispose()


def test_a_claim_measured_on_another_database_version_says_so_in_its_overall_row() -> None:
    from evidence.testdb import DatabaseCase
    from postmarket.contracts.events import Claim

    cases = [DatabaseCase(f"p{i}", "positive") for i in range(40)]
    outputs = [DatabasePrediction(c.case_pseudonym, 0.9, "positive") for c in cases]
    claims = [
        Claim(task=TASK, metric="sensitivity", value=0.9, ci_lower=0.8, ci_upper=0.95,
              test_database=database)
        for database in ("lung-nodule-ct@2026.1", "lung-nodule-ct@2025.2")
    ]  # fmt: skip
    scored = match_predictions(cases, outputs)
    verdict = gate_verdict(scored, claims, GatePolicy(), database="lung-nodule-ct@2026.1")
    notes = [row.note for row in verdict.rows if row.stratum == "overall"]
    assert notes == ["", "claim measured on lung-nodule-ct@2025.2, not lung-nodule-ct@2026.1"]


def _page_block(marker: str) -> str:
    """The first fenced block of docs/manufacturer.md that contains ``marker``."""
    page = (Path(__file__).resolve().parents[2] / "docs" / "manufacturer.md").read_text()
    blocks = re.findall(r"^```(?:console|shell)\n(.*?)^```", page, re.MULTILINE | re.DOTALL)
    return str(next(block for block in blocks if marker in block))


def test_the_manufacturer_page_s_database_and_gate_examples_run_as_pasted(
    tmp_path: Path,
) -> None:
    """The page's testdb and gate blocks, in a fresh directory with the default store and
    the files they name: a database, a revision of it, and a passing candidate's outputs."""
    database = lung_nodule_database()
    database.to_csv(tmp_path / "cases.csv", index=False)
    relabelled = database.head(20).assign(label="positive", adjudication="")
    relabelled.assign(first_read="positive", second_read="positive").to_csv(
        tmp_path / "new.csv", index=False
    )
    (tmp_path / "withdrawn.txt").write_text("case-02998\ncase-02999\n")
    candidate(database, 0.95, 0.96, 0.95).to_csv(tmp_path / "outputs-3.1.0.0.csv", index=False)
    environment = {k: v for k, v in os.environ.items() if not k.startswith("POSTMARKET_")}
    environment["PATH"] = f"{Path(sys.executable).parent}:{environment.get('PATH', '')}"
    for marker in ("testdb import", "testdb run"):
        done = subprocess.run(  # noqa: S603 - the page's own commands
            ["bash", "-euo", "pipefail", "-c", _page_block(marker)],
            cwd=tmp_path, env=environment, capture_output=True, text=True, timeout=300,
            check=False,
        )  # fmt: skip
        assert "Traceback" not in done.stderr, done.stderr
        assert done.returncode == 0, f"{marker}:\n{done.stdout}\n{done.stderr}"
    verdict = json.loads((tmp_path / "gate.json").read_text())
    assert verdict["passed"] is True
    assert (tmp_path / "gate.csv").read_text().count("\n") > 30
