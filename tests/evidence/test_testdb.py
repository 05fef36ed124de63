"""Standard test databases: imported once and frozen, content-hashed, audited, compared.

The major/minor line is checked on crafted databases at exactly 9.9 % and 10 %, and the
strata counts against pandas reading the same case file.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from evidence.store import EvidenceStore
from evidence.testdb import (
    CaseListError,
    DatabaseCase,
    content_hash,
    diff,
    read_case_list,
    revised,
)
from evidence.testdb_store import (
    TestDatabaseError,
    import_version,
    load_version,
)
from launcher.cli import app

HEADER = (
    "case_pseudonym,label,first_read,second_read,adjudication,hospital,"
    "scanner_manufacturer,scanner_model,slice_thickness_mm"
)
ROWS = [
    "c1,positive,positive,negative,positive,H1,GE,Revolution,0.625",
    "c2,negative,negative,negative,,H1,Siemens,Force,5",
    "c3,negative,negative,negative,,H2,GE,Revolution,1.25",
    "c4,positive,positive,positive,,H2,Siemens,Force,0.8",
    "c5,negative,,,,H3,GE,Optima,3",
]


def cases(count: int, relabel: int = 0) -> list[DatabaseCase]:
    """``count`` cases, the first ``relabel`` of them positive instead of negative."""
    return [
        DatabaseCase(f"c{i:05d}", "positive" if i < relabel else "negative") for i in range(count)
    ]


@pytest.mark.parametrize(
    ("changed", "expected"), [(0, "none"), (1, "minor"), (99, "minor"), (100, "major")]
)
def test_a_change_of_10_percent_is_major_and_9_9_percent_is_not(
    changed: int, expected: str
) -> None:
    old = cases(1000)
    new = old[: 1000 - changed] + [DatabaseCase(f"n{i}", "negative") for i in range(changed)]
    change = diff(old, new)
    assert (change.added, change.removed, change.relabelled) == (changed, changed, 0)
    # The changed fraction counts additions and removals alike, over the old size.
    assert change.changed_fraction == pytest.approx(2 * changed / 1000)
    assert diff(old, old[:-changed] if changed else old).classification() == expected


def test_relabels_alone_are_a_change_of_their_own() -> None:
    change = diff(cases(1000), cases(1000, relabel=100))
    assert (change.added, change.removed, change.relabelled) == (0, 0, 100)
    assert change.changed_fraction == pytest.approx(0.10)
    assert change.classification() == "major"
    assert change.classification(major_fraction=0.2) == "minor"


def test_the_content_hash_is_the_cases_not_the_file(tmp_path: Path) -> None:
    csv = tmp_path / "v1.csv"
    csv.write_text("\n".join([HEADER, *ROWS]) + "\n")
    shuffled = tmp_path / "shuffled.csv"
    shuffled.write_text("\n".join([HEADER, *reversed(ROWS)]) + "\n")
    parquet = tmp_path / "v1.parquet"
    pd.read_csv(csv, dtype=str, keep_default_na=False).to_parquet(parquet)
    hashes = {content_hash(read_case_list(path)) for path in (csv, shuffled, parquet)}
    assert len(hashes) == 1
    relabelled = tmp_path / "relabelled.csv"
    relabelled.write_text("\n".join([HEADER, *ROWS]).replace("c5,negative", "c5,positive"))
    assert content_hash(read_case_list(relabelled)) not in hashes


@pytest.mark.parametrize(
    ("row", "names"),
    [
        ("c1,maybe,,,,,,,", "row 2, column label"),
        ("c1,positive,yes,,,,,,", "row 2, column first_read"),
        ("not an id,positive,,,,,,,", "row 2, column case_pseudonym"),
        ("c1,positive,,,,,,,thick", "row 2, column slice_thickness_mm"),
    ],
)
def test_a_bad_row_is_refused_naming_its_row_and_column(
    tmp_path: Path, row: str, names: str
) -> None:
    path = tmp_path / "bad.csv"
    path.write_text(f"{HEADER}\n{row}\n")
    with pytest.raises(CaseListError, match=names):
        read_case_list(path)


def test_a_repeated_case_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "twice.csv"
    path.write_text(f"{HEADER}\n{ROWS[0]}\n{ROWS[0]}\n")
    with pytest.raises(CaseListError, match="c1 appears more than once"):
        read_case_list(path)


def test_a_version_is_frozen_and_a_revision_is_measured_and_audited(evidence_url: str) -> None:
    with EvidenceStore(evidence_url) as store:
        first = import_version(store, "lung", "1", "nodule", cases(200), by="ra", source="f")
        assert (first.change, first.version.reference) == (None, "lung@1")
        with pytest.raises(TestDatabaseError, match="lung@1 exists and is frozen"):
            import_version(store, "lung", "1", "nodule", cases(10), by="ra", source="f")
        second = revised(cases(200), [DatabaseCase("c00000", "positive")], ["c00199"])
        imported = import_version(
            store, "lung", "2", "nodule", second, by="ra", source="g", based_on="1"
        )
        assert imported.classification == "minor"  # 2 of 200: 1 %
        assert load_version(store, "lung", "1").content_sha256 == content_hash(cases(200))
        entries = [e for e in store.audit_entries() if e.action == "testdb.import"]
        assert [e.subject for e in entries] == ["lung@1", "lung@2"]
        change = json.loads(entries[1].payload)
        assert (change["relabelled"], change["removed"], change["classification"]) == (
            1,
            1,
            "minor",
        )
        assert store.verify_audit_chain().intact


def test_removing_a_case_that_is_not_there_is_refused() -> None:
    with pytest.raises(CaseListError, match="c9 cannot be removed"):
        revised(cases(3), [], ["c9"])


def test_the_cli_imports_shows_and_compares_like_pandas(tmp_path: Path) -> None:
    runner, url = CliRunner(), f"sqlite:///{tmp_path / 'evidence.db'}"
    csv = tmp_path / "v1.csv"
    csv.write_text("\n".join([HEADER, *ROWS]) + "\n")
    (tmp_path / "more.csv").write_text("case_pseudonym,label\nc3,positive\nc6,negative\n")
    (tmp_path / "remove.txt").write_text("c2\n")

    def run(*arguments: str) -> str:
        result = runner.invoke(app, ["testdb", *arguments, "--url", url])
        assert result.exit_code == 0, result.output
        return result.output

    run("import", "lung", "--version", "1", "--task", "nodule", "--cases", str(csv))
    added = run(
        "add", "lung", "--version", "2", "--based-on", "1",
        "--cases", str(tmp_path / "more.csv"), "--remove", str(tmp_path / "remove.txt"),
    )  # fmt: skip
    assert "1 added, 1 removed, 1 relabelled: 60.0% of 5 cases, major change" in added
    shown = json.loads(run("show", "lung", "--version", "1", "--json"))
    frame = pd.read_csv(csv)
    assert shown["strata"]["hospital"] == frame["hospital"].value_counts().to_dict()
    assert shown["strata"]["scanner_model"] == frame["scanner_model"].value_counts().to_dict()
    assert shown["strata"]["slice_thickness_band"] == {
        "sub_mm": 2, "1_2mm": 1, "about_5mm": 1, "other": 1
    }  # fmt: skip
    assert (shown["positive"], shown["double_read"], shown["adjudicated"]) == (2, 4, 1)
    assert "lung@1 -> lung@2: 1 added, 1 removed, 1 relabelled" in run("diff", "lung", "1", "2")
    assert "lung@2" in run("list")


def test_cli_errors_are_one_line(tmp_path: Path) -> None:
    runner, url = CliRunner(), f"sqlite:///{tmp_path / 'evidence.db'}"
    missing = runner.invoke(app, ["testdb", "show", "lung", "--version", "1", "--url", url])
    assert missing.exit_code == 3  # no store yet: a reader refuses to create one
    result = runner.invoke(
        app,
        ["testdb", "import", "lung", "--version", "1", "--task", "t", "--cases",
         str(tmp_path / "none.csv"), "--url", url],
    )  # fmt: skip
    assert result.exit_code == 1
    assert "Traceback" not in result.output
    assert "none.csv: cannot be read as a case list" in result.output


def test_a_claim_naming_a_database_version_must_name_one_the_store_holds(tmp_path: Path) -> None:
    runner, url = CliRunner(), f"sqlite:///{tmp_path / 'evidence.db'}"
    csv = tmp_path / "v1.csv"
    csv.write_text("\n".join([HEADER, *ROWS]) + "\n")

    def run(*arguments: str) -> tuple[int, str]:
        result = runner.invoke(app, [*arguments, "--url", url])
        assert "Traceback" not in result.output
        return result.exit_code, result.output

    claimed = ("ct-nodule", "1.0.0.0", "nodule", "--metric", "sensitivity")
    claim = ["registry", "add-claim", *claimed, "--value", "0.9", "--ci-lower", "0.85"]
    claim += ["--ci-upper", "0.94"]
    for command in (
        ["registry", "add-device", "ct-nodule", "--task", "nodule"],
        ["registry", "add-version", "ct-nodule", "1.0.0.0", "--reference", "NMPA-1"],
        ["testdb", "import", "lung", "--version", "1", "--task", "nodule", "--cases", str(csv)],
    ):
        assert run(*command)[0] == 0
    code, output = run(*claim, "--test-database", "lung@2")
    assert code == 1
    assert "--test-database lung@2: lung@2 is not in the store (its versions are 1)" in output
    assert run(*claim, "--test-database", "lung@1")[0] == 0
    amend = ["registry", "amend-claim", *claimed, "--why", "the database's version"]
    assert run(*amend, "--test-database", "lung@3")[0] == 1
    # A database kept elsewhere is still named in words.
    assert run(*amend, "--test-database", "NIFDC lung nodule 2018")[0] == 0
