"""A standard test database from a folder of (de-identified) DICOM files and a truth file.

One case per study (StudyInstanceUID). Its reference standard and its case pseudonym come
from the truth file, keyed by the study's UID; its strata from the headers: the scanner's
manufacturer and model (Manufacturer, ManufacturerModelName), the slice-thickness band
(SliceThickness, banded as the collector bands it) and the hospital (the truth file's
``hospital`` column, else InstitutionName, which de-identification removes). A truth file
column named like a stratum (``scanner_model``, ``slice_thickness_band``...) overrides the
header, for a study whose series disagree. Headers are read without pixel data, and only
those five attributes: no patient name or identifier is read, kept or stored.

A file that is not DICOM or lacks an attribute a stratum needs is skipped, with its path
and reason; a study that cannot become a case (no truth row, no usable file, its files
disagreeing on a stratum the truth file does not settle), and a truth row without a
study, are reported the same way. Reading never stops at the first problem: the caller
gets every problem at once (:class:`DicomCases`).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from evidence.testdb import (
    MAX_CASES,
    STRATA,
    CaseListError,
    DatabaseCase,
    case_from_row,
    read_table,
)
from postmarket.contracts.events import slice_thickness_band

__all__ = [
    "HEADER_STRATA",
    "STUDY_COLUMN",
    "DicomCases",
    "Problem",
    "StudyHeader",
    "cases_from_studies",
    "dicom_files",
    "read_dicom_cases",
    "read_header",
    "read_truth",
]

STUDY_COLUMN = "study_instance_uid"
"""The truth file's column naming each case's study."""
HEADER_STRATA = {
    "scanner_manufacturer": "Manufacturer",
    "scanner_model": "ManufacturerModelName",
    "slice_thickness_band": "SliceThickness",
    "hospital": "InstitutionName",
}
"""Stratum -> the DICOM attribute it is read from, where the truth file does not give it."""


@dataclass(frozen=True)
class Problem:
    """A file skipped, or a case that could not be built, and why."""

    where: str
    """A file's path, ``study <UID>``, or ``truth row <n>``."""
    reason: str

    def __str__(self) -> str:
        return f"{self.where}: {self.reason}"


@dataclass(frozen=True)
class StudyHeader:
    """The attributes one file gives its study's strata (None: absent or empty)."""

    study_uid: str
    strata: Mapping[str, str]


@dataclass(frozen=True)
class DicomCases:
    """What a folder and its truth file gave: the cases, and every problem on the way."""

    cases: tuple[DatabaseCase, ...]
    files: int
    skipped_files: tuple[Problem, ...] = ()
    unbuilt_cases: tuple[Problem, ...] = ()
    studies: int = 0

    @property
    def complete(self) -> bool:
        """Every study and every truth row became a case."""
        return not self.unbuilt_cases


@dataclass
class _Study:
    headers: list[StudyHeader] = field(default_factory=list)


def dicom_files(folder: Path) -> list[Path]:
    """Every file under ``folder``, in a stable order (hidden files and folders left out)."""
    found: list[Path] = []
    for root, folders, names in os.walk(folder):
        folders[:] = sorted(name for name in folders if not name.startswith("."))
        found += [Path(root) / name for name in sorted(names) if not name.startswith(".")]
    return found


def read_header(path: Path, needed: Sequence[str]) -> StudyHeader:
    """The study UID and ``needed`` strata (names of :data:`HEADER_STRATA`) of one file;
    :class:`ValueError` saying why if it is not DICOM or lacks one of them."""
    from pydicom import dcmread
    from pydicom.errors import InvalidDicomError

    attributes = ["StudyInstanceUID", *(HEADER_STRATA[stratum] for stratum in needed)]
    try:
        header = dcmread(path, stop_before_pixels=True, specific_tags=attributes)
    except InvalidDicomError:
        raise ValueError("not a DICOM file (no DICM preamble)") from None
    except (OSError, EOFError, KeyError, TypeError, ValueError) as error:
        raise ValueError(f"cannot be read as DICOM ({type(error).__name__}: {error})") from None
    study = _text(header, "StudyInstanceUID")
    if study is None:
        raise ValueError("no StudyInstanceUID (0020,000D)")
    strata: dict[str, str] = {}
    for stratum in needed:
        attribute = HEADER_STRATA[stratum]
        value = _text(header, attribute)
        if value is None:
            raise ValueError(f"no {attribute}, needed for its {stratum.replace('_', '-')}")
        if stratum == "slice_thickness_band":
            try:
                value = str(slice_thickness_band(float(value)))
            except ValueError:
                raise ValueError(f"SliceThickness {value[:20]!r} is not a number") from None
        strata[stratum] = value[:128]
    return StudyHeader(study, strata)


def _text(header: Any, attribute: str) -> str | None:
    value = header.get(attribute)
    if value is None:
        return None
    shown = str(value).strip()
    return shown or None


def read_truth(
    path: Path, extra_strata: Sequence[str] = ()
) -> tuple[list[str], dict[str, dict[str, Any]]]:
    """The truth file's columns and its rows by study UID (each row keeps its line number
    under ``_row``); :class:`~evidence.testdb.CaseListError` if it cannot be one."""
    frame = read_table(path)
    columns = [str(column) for column in frame.columns]
    missing = [
        c for c in (STUDY_COLUMN, "case_pseudonym", "label", *extra_strata) if c not in columns
    ]
    if missing:
        raise CaseListError(f"{path.name}: no column {', '.join(missing)}")
    if len(frame) > MAX_CASES:
        raise CaseListError(f"{path.name}: {len(frame):,} rows, more than {MAX_CASES:,}")
    rows: dict[str, dict[str, Any]] = {}
    records = frame.astype(object).where(frame.notna(), None).to_dict("records")
    for number, row in enumerate(records, start=2):
        study = str(row.get(STUDY_COLUMN) or "").strip()
        if not study:
            raise CaseListError(f"row {number}, column {STUDY_COLUMN}: the study UID is missing")
        if study in rows:
            raise CaseListError(f"row {number}: study {study} has more than one truth row")
        rows[study] = {**row, "_row": number}
    return columns, rows


def cases_from_studies(
    studies: Mapping[str, Sequence[StudyHeader]],
    truth: Mapping[str, Mapping[str, Any]],
    extra_strata: Sequence[str] = (),
) -> tuple[list[DatabaseCase], list[Problem]]:
    """One case per study with a truth row: the truth row's reference standard and
    pseudonym, its strata columns where given, else the strata its files agree on."""
    cases: list[DatabaseCase] = []
    problems: list[Problem] = []
    for study, headers in sorted(studies.items()):
        row = truth.get(study)
        if row is None:
            problems.append(Problem(f"study {study}", "no row in the truth file"))
            continue
        strata: dict[str, str] = {}
        disagreeing = []
        for stratum in STRATA:
            given = _given(row, stratum)
            if given is not None:
                continue
            values = sorted({h.strata[stratum] for h in headers if stratum in h.strata})
            if len(values) > 1:
                disagreeing.append(f"{stratum} ({', '.join(values)})")
            elif values:
                strata[stratum] = values[0]
        if disagreeing:
            problems.append(
                Problem(
                    f"study {study}",
                    f"its files disagree on {'; '.join(disagreeing)}: give the column in the "
                    "truth file",
                )
            )
            continue
        merged = {key: value for key, value in row.items() if key != "_row"} | strata
        try:
            cases.append(case_from_row(merged, int(row["_row"]), extra_strata))
        except CaseListError as error:
            problems.append(Problem(f"study {study}", f"truth file {error}"))
    for study, row in sorted(truth.items(), key=lambda item: int(item[1]["_row"])):
        if study not in studies:
            problems.append(
                Problem(f"truth row {row['_row']}", f"no readable file of study {study}")
            )
    pseudonyms: dict[str, int] = {}
    for case in cases:
        pseudonyms[case.case_pseudonym] = pseudonyms.get(case.case_pseudonym, 0) + 1
    repeated = sorted(p for p, n in pseudonyms.items() if n > 1)
    if repeated:
        problems.append(
            Problem("truth file", f"case pseudonym {repeated[0]} names more than one study")
        )
        cases = [case for case in cases if case.case_pseudonym not in repeated]
    return cases, problems


def _given(row: Mapping[str, Any], column: str) -> str | None:
    value = row.get(column)
    return None if value is None or not str(value).strip() else str(value).strip()


def read_dicom_cases(
    folder: Path,
    truth_file: Path,
    extra_strata: Sequence[str] = (),
    *,
    on_file: Callable[[Path], None] | None = None,
    files: Sequence[Path] | None = None,
) -> DicomCases:
    """The cases of ``folder`` (every file under it, or ``files``) with ``truth_file``;
    ``on_file`` is called after each file is read (a progress bar)."""
    columns, truth = read_truth(truth_file, extra_strata)
    given_by_truth = {s for s in STRATA if s in columns}
    if "slice_thickness_mm" in columns:
        given_by_truth.add("slice_thickness_band")
    needed = [s for s in HEADER_STRATA if s not in given_by_truth]
    paths = dicom_files(folder) if files is None else list(files)
    studies: dict[str, _Study] = {}
    skipped: list[Problem] = []
    for path in paths:
        try:
            header = read_header(path, needed)
        except ValueError as error:
            skipped.append(Problem(str(path), str(error)))
        else:
            studies.setdefault(header.study_uid, _Study()).headers.append(header)
        if on_file is not None:
            on_file(path)
    cases, unbuilt = cases_from_studies(
        {uid: study.headers for uid, study in studies.items()}, truth, extra_strata
    )
    return DicomCases(tuple(cases), len(paths), tuple(skipped), tuple(unbuilt), len(studies))


def iter_problems(found: DicomCases) -> Iterator[str]:
    """Every problem as one line: skipped files, then cases not built."""
    yield from (f"skipped {problem}" for problem in found.skipped_files)
    yield from (f"not built: {problem}" for problem in found.unbuilt_cases)
