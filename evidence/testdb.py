"""Standard test databases: the fixed, versioned case lists a device's claims are measured on.

A regulator's standard test database (the NMPA's fundus and lung-nodule databases) is a
case list with a reference standard per case, read in two blinded rounds and adjudicated
where they disagree, stratified by hospital, scanner and slice thickness. Here a database
version is imported once from a case file and then frozen: its content hash names exactly
what a claim was measured on, and a later version is compared with it by :func:`diff`, whose
changed fraction the change-control policy judges (a change of 10 % or more of a database
is a major change).

>>> P, N = "positive", "negative"
>>> old = [DatabaseCase("c1", P), DatabaseCase("c2", N), DatabaseCase("c3", N)]
>>> new = [DatabaseCase("c1", N), DatabaseCase("c2", N), DatabaseCase("c4", P)]
>>> change = diff(old, new)
>>> (change.added, change.removed, change.relabelled, round(change.changed_fraction, 3))
(1, 1, 1, 1.0)
>>> change.classification(major_fraction=0.10)
'major'
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from postmarket.contracts.events import IDENTIFIER_PATTERN, slice_thickness_band

Label = Literal["positive", "negative"]
LABELS: tuple[Label, ...] = ("positive", "negative")
MAJOR_CHANGE_FRACTION = 0.10
"""A new version changing this fraction of its predecessor's cases or more is a major
change (the NMPA's 10-20 % of a database), unless the policy says otherwise."""
STRATA = ("hospital", "scanner_manufacturer", "scanner_model", "slice_thickness_band")
"""The strata every database records (generalizability and compatibility testing)."""
READ_COLUMNS = ("first_read", "second_read", "adjudication")
MAX_CASES = 1_000_000
IDENTIFIER = re.compile(IDENTIFIER_PATTERN)


class CaseListError(ValueError):
    """A case file that cannot be a test database, with the row and column that say why."""


@dataclass(frozen=True)
class DatabaseCase:
    """One case of a test database: its reference standard and its strata."""

    case_pseudonym: str
    label: Label
    truth_source: str = "adjudicated_read"
    first_read: Label | None = None
    second_read: Label | None = None
    adjudication: Label | None = None
    strata: Mapping[str, str] = field(default_factory=dict)
    """hospital, scanner_manufacturer, scanner_model, slice_thickness_band, and any other
    configured stratum; absent when unknown."""

    def canonical(self) -> dict[str, Any]:
        """The case as the content hash reads it (sorted keys, no absent values)."""
        return {
            "case_pseudonym": self.case_pseudonym,
            "label": self.label,
            "truth_source": self.truth_source,
            "reads": [self.first_read, self.second_read, self.adjudication],
            "strata": dict(sorted(self.strata.items())),
        }


@dataclass(frozen=True)
class DatabaseDiff:
    """What changed from one version of a database to the next, counted in cases."""

    old_cases: int
    added: int
    removed: int
    relabelled: int
    """Cases in both whose reference label changed."""

    @property
    def changed_fraction(self) -> float:
        """Added, removed and relabelled cases over the old version's size."""
        if self.old_cases == 0:
            return math.inf if self.added else 0.0
        return (self.added + self.removed + self.relabelled) / self.old_cases

    def classification(self, major_fraction: float = MAJOR_CHANGE_FRACTION) -> str:
        """``major`` at ``major_fraction`` of the old version or more, else ``minor`` (or
        ``none``): compared in whole cases, so 10 of 100 is major at 10 % exactly."""
        changed = self.added + self.removed + self.relabelled
        if changed == 0:
            return "none"
        # Integer arithmetic: 0.1 * 100 must not come out as 10.000000000000002.
        return (
            "major"
            if changed * 1_000_000 >= round(major_fraction * 1_000_000) * max(self.old_cases, 1)
            else "minor"
        )


def diff(old: Sequence[DatabaseCase], new: Sequence[DatabaseCase]) -> DatabaseDiff:
    """The added, removed and relabelled cases from ``old`` to ``new``."""
    before = {case.case_pseudonym: case.label for case in old}
    after = {case.case_pseudonym: case.label for case in new}
    kept = before.keys() & after.keys()
    return DatabaseDiff(
        old_cases=len(before),
        added=len(after.keys() - before.keys()),
        removed=len(before.keys() - after.keys()),
        relabelled=sum(1 for case in kept if before[case] != after[case]),
    )


def revised(
    previous: Sequence[DatabaseCase], changes: Sequence[DatabaseCase], removed: Iterable[str]
) -> list[DatabaseCase]:
    """``previous`` with ``changes`` added or replacing the case of the same pseudonym
    (a relabel), and the ``removed`` pseudonyms left out; refused if one is not there."""
    cases = {case.case_pseudonym: case for case in previous}
    for pseudonym in removed:
        if cases.pop(pseudonym, None) is None:
            raise CaseListError(f"case {pseudonym} cannot be removed: it is not in the database")
    cases |= {case.case_pseudonym: case for case in changes}
    return sorted(cases.values(), key=lambda case: case.case_pseudonym)


def content_hash(cases: Iterable[DatabaseCase]) -> str:
    """SHA-256 of the cases in canonical form and order: the same list, the same hash,
    whatever the file's row order or format."""
    canonical = sorted((case.canonical() for case in cases), key=lambda c: c["case_pseudonym"])
    text = json.dumps(canonical, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def stratum_counts(cases: Iterable[DatabaseCase], stratum: str) -> dict[str, int]:
    """Cases per value of one stratum (``unknown`` where a case does not record it)."""
    counts: dict[str, int] = {}
    for case in cases:
        value = case.strata.get(stratum, "unknown")
        counts[value] = counts.get(value, 0) + 1
    return dict(sorted(counts.items()))


def read_case_list(path: Path, extra_strata: Sequence[str] = ()) -> list[DatabaseCase]:
    """The cases of a CSV (``.csv``, ``.csv.gz``) or Parquet file.

    Columns: ``case_pseudonym`` and ``label`` (positive/negative) are required; optional
    are ``truth_source``, the reads ``first_read``, ``second_read``, ``adjudication``, the
    strata ``hospital``, ``scanner_manufacturer``, ``scanner_model``, and either
    ``slice_thickness_band`` or ``slice_thickness_mm`` (banded as the collector bands it),
    plus the columns named in ``extra_strata``.
    """
    frame = read_table(path)
    missing = [c for c in ("case_pseudonym", "label", *extra_strata) if c not in frame.columns]
    if missing:
        raise CaseListError(f"{path.name}: no column {', '.join(missing)}")
    if len(frame) > MAX_CASES:
        raise CaseListError(f"{path.name}: {len(frame):,} rows, more than {MAX_CASES:,}")
    rows = frame.astype(object).where(frame.notna(), None).to_dict("records")
    cases = [case_from_row(row, number, extra_strata) for number, row in enumerate(rows, start=2)]
    _refuse_repeated_cases(cases)
    return cases


def read_table(path: Path) -> Any:
    """A CSV (``.csv``, ``.csv.gz``, every cell text) or Parquet file as a pandas frame;
    :class:`CaseListError` if it is neither or cannot be read."""
    import pandas as pd  # type: ignore[import-untyped]  # only when a case file is read

    name = path.name.lower()
    try:
        if name.endswith((".parquet", ".pq")):
            return pd.read_parquet(path)
        if name.endswith((".csv", ".csv.gz")):
            return pd.read_csv(path, dtype=str, keep_default_na=False)
    except (OSError, ValueError) as error:
        raise CaseListError(f"{path}: cannot be read as a case list ({error})") from None
    raise CaseListError(f"{path.name}: a case list is a .csv, .csv.gz or .parquet file")


def case_from_row(
    row: Mapping[str, Any], number: int, extra_strata: Sequence[str] = ()
) -> DatabaseCase:
    """One row as a case (``number``: its line in a CSV file, header being line 1);
    :class:`CaseListError` naming the row and column if it cannot be one."""

    def text(column: str) -> str | None:
        value = row.get(column)
        return None if value is None or str(value).strip() == "" else str(value).strip()

    def refused(column: str, why: str) -> CaseListError:
        return CaseListError(f"row {number}, column {column}: {why}")

    def read(column: str) -> Label | None:
        value = text(column)
        if value is None:
            return None
        if value not in LABELS:
            raise refused(column, f"{value[:40]!r} is not positive or negative")
        return "positive" if value == "positive" else "negative"

    pseudonym = text("case_pseudonym") or ""
    if not IDENTIFIER.fullmatch(pseudonym) or len(pseudonym) > 128:
        raise refused("case_pseudonym", f"{pseudonym[:40]!r} is not an identifier")
    label = read("label")
    if label is None:
        raise refused("label", "the reference standard is missing")
    strata = {s: v for s in (*STRATA, *extra_strata) if (v := text(s)) is not None}
    if "slice_thickness_band" not in strata and (mm := text("slice_thickness_mm")) is not None:
        try:
            band = slice_thickness_band(float(mm))
        except ValueError:
            raise refused("slice_thickness_mm", f"{mm[:40]!r} is not a number") from None
        if band is not None:
            strata["slice_thickness_band"] = band
    return DatabaseCase(
        case_pseudonym=pseudonym,
        label=label,
        truth_source=text("truth_source") or "adjudicated_read",
        first_read=read("first_read"),
        second_read=read("second_read"),
        adjudication=read("adjudication"),
        strata=strata,
    )


def _refuse_repeated_cases(cases: Sequence[DatabaseCase]) -> None:
    seen: set[str] = set()
    for case in cases:
        if case.case_pseudonym in seen:
            raise CaseListError(f"case {case.case_pseudonym} appears more than once")
        seen.add(case.case_pseudonym)
