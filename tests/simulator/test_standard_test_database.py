"""The simulated standard test database of the gate demo: stratified like the NMPA
lung-nodule one, its truth read twice and adjudicated, and candidates whose error rates
per label and slice band are the designed ones to within one case."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from evidence.testdb import read_case_list
from postmarket.contracts.events import slice_thickness_band
from simulator.standard_test_database import (
    HOSPITALS,
    candidate_outputs,
    lung_nodule_test_database,
    write_rows,
)


@pytest.fixture(scope="module")
def cases() -> list[dict[str, str]]:
    return lung_nodule_test_database(cases=1000, seed=11)


def band(case: dict[str, str]) -> str | None:
    return slice_thickness_band(float(case["slice_thickness_mm"]))


def test_the_same_seed_gives_the_same_database(cases: list[dict[str, str]]) -> None:
    assert lung_nodule_test_database(cases=1000, seed=11) == cases
    assert lung_nodule_test_database(cases=1000, seed=12) != cases


def test_the_database_is_stratified_like_the_lung_nodule_one(
    cases: list[dict[str, str]],
) -> None:
    assert {case["hospital"] for case in cases} == set(HOSPITALS)
    assert {case["scanner_manufacturer"] for case in cases} == {"GE", "Siemens"}
    assert Counter(band(case) for case in cases).keys() == {"about_5mm", "1_2mm", "sub_mm"}
    for hospital in HOSPITALS:
        makers = {c["scanner_manufacturer"] for c in cases if c["hospital"] == hospital}
        assert makers == {"GE", "Siemens"}


def test_prevalence_is_exactly_the_enrichment(cases: list[dict[str, str]]) -> None:
    assert sum(case["label"] == "positive" for case in cases) == 400


def test_only_disagreeing_reads_are_adjudicated_and_to_the_label(
    cases: list[dict[str, str]],
) -> None:
    for case in cases:
        disagree = case["first_read"] != case["second_read"]
        assert bool(case["adjudication"]) == disagree
        if disagree:
            assert case["adjudication"] == case["label"]
        else:
            assert case["first_read"] == case["label"]
    assert 30 < sum(bool(case["adjudication"]) for case in cases) < 100


@pytest.mark.parametrize("thin", [0.74, 0.5, 0.95])
def test_a_candidate_s_rates_per_band_are_the_designed_ones(
    cases: list[dict[str, str]], thin: float
) -> None:
    outputs = candidate_outputs(cases, 0.97, 0.92, {"sub_mm": thin}, seed=3)
    for label, wanted, rates in (
        ("positive", "positive", {"sub_mm": thin, "1_2mm": 0.97, "about_5mm": 0.97}),
        ("negative", "negative", {"sub_mm": 0.92, "1_2mm": 0.92, "about_5mm": 0.92}),
    ):
        for name, rate in rates.items():
            cell = [o for c, o in zip(cases, outputs, strict=True)
                    if c["label"] == label and band(c) == name]  # fmt: skip
            right = sum(o["decision"] == wanted for o in cell)
            assert abs(right - rate * len(cell)) <= 1, (label, name)


def test_scores_agree_with_decisions_at_the_threshold(cases: list[dict[str, str]]) -> None:
    for output in candidate_outputs(cases, 0.9, 0.9, seed=3):
        above = float(output["score"]) >= float(output["operating_threshold"])
        assert above == (output["decision"] == "positive")


def test_the_case_file_imports_with_its_strata_banded_from_the_thickness(
    cases: list[dict[str, str]], tmp_path: Path
) -> None:
    imported = read_case_list(write_rows(cases, tmp_path / "cases.csv"))
    assert len(imported) == len(cases)
    assert Counter(c.strata["slice_thickness_band"] for c in imported) == Counter(
        band(case) for case in cases
    )
    assert all(c.first_read is not None and c.second_read is not None for c in imported)
