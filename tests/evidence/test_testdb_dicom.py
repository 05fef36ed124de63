"""``postmarket testdb import --dicom FOLDER --truth FILE`` (issue 20, part 1): one case per
study, strata from real DICOM headers (pydicom's own test files, re-keyed into several
studies), the reference standard and pseudonym from the truth file, and every file or case
that could not be used reported by path and reason."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from pydicom import dcmread
from pydicom.data import get_testdata_file
from typer.testing import CliRunner, Result

from evidence.store import EvidenceStore
from evidence.testdb import content_hash
from evidence.testdb_store import load_version
from launcher.cli import app

runner = CliRunner()

STUDY_A, STUDY_B, STUDY_C = (f"1.2.826.0.1.3680043.10.9999.{n}" for n in (1, 2, 3))
CT_MAKER, CT_MODEL = "GE MEDICAL SYSTEMS", "RHAPSODE"
MR_MAKER, MR_MODEL = "TOSHIBA_MEC", "MRT50H1"


def dicom_copy(
    source: str, target: Path, study: str, instance: int, thickness: float | None
) -> Path:
    """A copy of one of pydicom's test files as an instance of ``study``."""
    dataset = dcmread(get_testdata_file(source))
    dataset.StudyInstanceUID = study
    dataset.SOPInstanceUID = f"{study}.{instance}"
    dataset.file_meta.MediaStorageSOPInstanceUID = dataset.SOPInstanceUID
    if thickness is None:
        del dataset.SliceThickness
    else:
        dataset.SliceThickness = thickness
    target.parent.mkdir(parents=True, exist_ok=True)
    dataset.save_as(target)
    return target


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    """Study A: two 5 mm CT instances; B: one 0.625 mm CT; C: one 0.8 mm MR; and a note."""
    root = tmp_path / "dicom"
    dicom_copy("CT_small.dcm", root / "a" / "1.dcm", STUDY_A, 1, 5.0)
    dicom_copy("CT_small.dcm", root / "a" / "2.dcm", STUDY_A, 2, 5.0)
    dicom_copy("CT_small.dcm", root / "b" / "1.dcm", STUDY_B, 1, 0.625)
    dicom_copy("MR_small.dcm", root / "c" / "1.dcm", STUDY_C, 1, 0.8)
    (root / "README.txt").write_text("reading protocol v3\n")
    return root


def truth(tmp_path: Path, hospital: bool = True, **extra: list[str]) -> Path:
    frame = pd.DataFrame(
        {
            "study_instance_uid": [STUDY_A, STUDY_B, STUDY_C],
            "case_pseudonym": ["case-a", "case-b", "case-c"],
            "label": ["positive", "negative", "positive"],
            "first_read": ["positive", "negative", "negative"],
            "second_read": ["positive", "negative", "positive"],
            "adjudication": ["", "", "positive"],
            **({"hospital": ["beijing-1", "beijing-1", "wuhan-4"]} if hospital else {}),
            **extra,
        }
    )
    path = tmp_path / "truth.csv"
    frame.to_csv(path, index=False)
    return path


def import_dicom(url: str, folder: Path, truth_file: Path, *extra: str) -> Result:
    result = runner.invoke(
        app,
        ["testdb", "import", "lung-nodule-ct", "--version", "2026.1", "--task", "nodule",
         "--dicom", str(folder), "--truth", str(truth_file), "--url", url, "--actor", "qa",
         *extra],
    )  # fmt: skip
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    return result


def stored_cases(url: str) -> dict[str, dict[str, object]]:
    with EvidenceStore(url) as store:
        version = load_version(store, "lung-nodule-ct", "2026.1")
    return {
        case.case_pseudonym: {"label": case.label, **case.strata, "reads": case.first_read}
        for case in version.cases
    }


def test_each_study_is_one_case_with_its_strata_from_the_headers(
    sqlite_url: str, folder: Path, tmp_path: Path
) -> None:
    result = import_dicom(sqlite_url, folder, truth(tmp_path))
    assert result.exit_code == 0, result.output
    assert stored_cases(sqlite_url) == {
        "case-a": {"label": "positive", "hospital": "beijing-1", "scanner_manufacturer": CT_MAKER,
                   "scanner_model": CT_MODEL, "slice_thickness_band": "about_5mm",
                   "reads": "positive"},
        "case-b": {"label": "negative", "hospital": "beijing-1", "scanner_manufacturer": CT_MAKER,
                   "scanner_model": CT_MODEL, "slice_thickness_band": "sub_mm",
                   "reads": "negative"},
        "case-c": {"label": "positive", "hospital": "wuhan-4", "scanner_manufacturer": MR_MAKER,
                   "scanner_model": MR_MODEL, "slice_thickness_band": "sub_mm",
                   "reads": "negative"},
    }  # fmt: skip
    assert "lung-nodule-ct@2026.1: 3 cases" in result.output


def test_without_a_hospital_column_the_hospital_is_the_institution_name(
    sqlite_url: str, folder: Path, tmp_path: Path
) -> None:
    result = import_dicom(sqlite_url, folder, truth(tmp_path, hospital=False))
    assert result.exit_code == 0, result.output
    hospitals = {name: case["hospital"] for name, case in stored_cases(sqlite_url).items()}
    assert hospitals == {
        "case-a": "JFK IMAGING CENTER",
        "case-b": "JFK IMAGING CENTER",
        "case-c": "TOSHIBA",
    }


def test_no_patient_name_or_id_reaches_the_store(tmp_path: Path, folder: Path) -> None:
    database = tmp_path / "evidence.db"
    result = import_dicom(f"sqlite:///{database}", folder, truth(tmp_path))
    assert result.exit_code == 0, result.output
    identities = set()
    for path in folder.rglob("*.dcm"):
        header = dcmread(path)
        identities |= {str(header.PatientName), str(header.PatientID)}
    stored = database.read_bytes()
    assert identities and all(identity.encode() not in stored for identity in identities)


def test_a_file_that_is_not_dicom_is_reported_by_path_and_does_not_stop_the_import(
    sqlite_url: str, folder: Path, tmp_path: Path
) -> None:
    result = import_dicom(sqlite_url, folder, truth(tmp_path))
    assert f"skipped {folder / 'README.txt'}: not a DICOM file" in result.output
    assert "5 files read, 1 skipped; 3 studies, 3 cases built, 0 not built" in result.output
    assert result.exit_code == 0


def test_a_file_lacking_slice_thickness_is_skipped_and_its_study_built_from_the_others(
    sqlite_url: str, folder: Path, tmp_path: Path
) -> None:
    lacking = dicom_copy("CT_small.dcm", folder / "a" / "3.dcm", STUDY_A, 3, None)
    result = import_dicom(sqlite_url, folder, truth(tmp_path))
    assert f"skipped {lacking}: no SliceThickness" in result.output
    assert result.exit_code == 0, result.output
    assert stored_cases(sqlite_url)["case-a"]["slice_thickness_band"] == "about_5mm"


def test_a_study_without_a_truth_row_refuses_the_whole_import_as_a_bad_csv_row_does(
    sqlite_url: str, folder: Path, tmp_path: Path
) -> None:
    dicom_copy("CT_small.dcm", folder / "d" / "1.dcm", "1.2.826.0.1.3680043.10.9999.4", 1, 1.0)
    result = import_dicom(sqlite_url, folder, truth(tmp_path))
    assert "not built: study 1.2.826.0.1.3680043.10.9999.4: no row in the truth file" in (
        result.output
    )
    errors = [line for line in result.output.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and "1 not built: nothing stored" in errors[0]
    assert result.exit_code == 1
    listed = runner.invoke(app, ["testdb", "list", "--url", sqlite_url])
    assert "lung-nodule-ct" not in listed.output


def test_a_truth_row_whose_study_has_no_file_is_a_case_not_built(
    sqlite_url: str, folder: Path, tmp_path: Path
) -> None:
    shutil.rmtree(folder / "c")
    result = import_dicom(sqlite_url, folder, truth(tmp_path))
    assert f"not built: truth row 4: no readable file of study {STUDY_C}" in result.output
    assert result.exit_code == 1


def test_a_study_whose_files_disagree_on_the_band_needs_the_truth_file_to_say(
    sqlite_url: str, folder: Path, tmp_path: Path
) -> None:
    dicom_copy("CT_small.dcm", folder / "a" / "3.dcm", STUDY_A, 3, 1.25)
    refused = import_dicom(sqlite_url, folder, truth(tmp_path))
    assert f"study {STUDY_A}: its files disagree on slice_thickness_band (1_2mm, about_5mm)" in (
        refused.output
    )
    assert refused.exit_code == 1
    settled = truth(tmp_path, slice_thickness_band=["1_2mm", "sub_mm", "sub_mm"])
    assert import_dicom(sqlite_url, folder, settled).exit_code == 0
    assert stored_cases(sqlite_url)["case-a"]["slice_thickness_band"] == "1_2mm"


def test_the_same_cases_from_dicom_or_a_case_file_are_the_same_database(
    sqlite_url: str, folder: Path, tmp_path: Path
) -> None:
    assert import_dicom(sqlite_url, folder, truth(tmp_path)).exit_code == 0
    with EvidenceStore(sqlite_url) as store:
        from_dicom = load_version(store, "lung-nodule-ct", "2026.1")
    case_file = tmp_path / "cases.csv"
    pd.DataFrame(
        [{"case_pseudonym": name, "label": case["label"], **{
            k: v for k, v in case.items() if k not in ("label", "reads")}}
         for name, case in stored_cases(sqlite_url).items()]
    ).to_csv(case_file, index=False)  # fmt: skip
    frame = pd.read_csv(tmp_path / "truth.csv", dtype=str, keep_default_na=False)
    merged = pd.read_csv(case_file, dtype=str).merge(
        frame[["case_pseudonym", "first_read", "second_read", "adjudication"]],
        on="case_pseudonym",
    )
    merged.to_csv(case_file, index=False)
    result = runner.invoke(
        app,
        ["testdb", "import", "lung-nodule-ct", "--version", "2026.2", "--task", "nodule",
         "--cases", str(case_file), "--url", sqlite_url],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    with EvidenceStore(sqlite_url) as store:
        from_csv = load_version(store, "lung-nodule-ct", "2026.2")
    assert from_csv.content_sha256 == from_dicom.content_sha256 == content_hash(from_dicom.cases)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--dicom", "{folder}"], "--dicom needs --truth FILE"),
        (["--dicom", "{truth}", "--truth", "{truth}"], "not a folder"),
        (["--cases", "{truth}", "--dicom", "{folder}", "--truth", "{truth}"], "give --cases"),
        (["--dicom", "{folder}", "--truth", "{folder}/README.txt"], "--truth README.txt: a case"),
    ],
)
def test_a_dicom_import_that_cannot_start_says_why_in_one_line(
    sqlite_url: str, folder: Path, tmp_path: Path, options: list[str], message: str
) -> None:
    places = {"folder": str(folder), "truth": str(truth(tmp_path))}
    result = runner.invoke(
        app,
        ["testdb", "import", "db", "--version", "1", "--task", "t", "--url", sqlite_url,
         *(option.format(**places) for option in options)],
    )  # fmt: skip
    assert "Traceback" not in result.output
    assert result.exit_code == 1
    errors = [line for line in result.output.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and message in errors[0], result.output


def test_the_manufacturer_page_s_dicom_import_runs_as_pasted(folder: Path, tmp_path: Path) -> None:
    """The page's ``--dicom`` block, in a fresh directory with the default store, a
    ``dicom/`` folder and ``truth.csv``."""
    page = (Path(__file__).resolve().parents[2] / "docs" / "manufacturer.md").read_text()
    blocks = re.findall(r"^```(?:console|shell)\n(.*?)^```", page, re.MULTILINE | re.DOTALL)
    (block,) = [block for block in blocks if "--dicom" in block]
    directory = tmp_path / "paste"
    shutil.copytree(folder, directory / "dicom")
    truth(tmp_path).rename(directory / "truth.csv")
    environment = {k: v for k, v in os.environ.items() if not k.startswith("POSTMARKET_")}
    environment["PATH"] = f"{Path(sys.executable).parent}:{environment.get('PATH', '')}"
    done = subprocess.run(  # noqa: S603 - the page's own command
        ["bash", "-euo", "pipefail", "-c", block],
        cwd=directory, env=environment, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert "Traceback" not in done.stderr, done.stderr
    assert done.returncode == 0, f"{done.stdout}\n{done.stderr}"
    assert "lung-nodule-ct@2026.3: 3 cases" in done.stdout
