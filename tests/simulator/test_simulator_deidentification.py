"""The simulated hospital data went through the collectors: no PHI left, cases still linked."""

from __future__ import annotations

import json

import pytest
from pydicom import config
from pydicom.datadict import dictionary_VR
from pydicom.valuerep import validate_value

from collectors.deidentify import Deidentifier
from collectors.events import dicom_case
from postmarket import topics
from postmarket.contracts import FollowUp, Prediction, decode
from simulator.collector_path import pseudonym_key
from simulator.fleet import SimulatedCase
from simulator.fleet_records import fleet_records
from simulator.headers import header_attributes, phi_values, study_header
from simulator.scenario import Scenario
from tests.simulator.conftest import DryRun


@pytest.fixture(scope="module")
def small_cases(small_scenario: Scenario) -> list[SimulatedCase]:
    return [r for r in fleet_records(small_scenario) if isinstance(r, SimulatedCase)]


def sent_bytes(dry_run: DryRun) -> bytes:
    return b"\n".join(r.key + b"\t" + r.value for r in dry_run.records)


def test_the_synthesized_headers_carry_phi(
    small_cases: list[SimulatedCase], small_scenario: Scenario
) -> None:
    case = small_cases[0]
    site = small_scenario.site(case.site_id)
    header = study_header(case, site.institution, site.city)
    text = str(header)
    assert header.PatientName and header.PatientID and header.AccessionNumber
    assert all(value in text for value in phi_values(case, site.institution)[:4])
    assert header.InstitutionName == site.institution


def leaked_phi(sent: bytes, cases: list[SimulatedCase], scenario: Scenario) -> set[str]:
    """PHI values of the cases' headers found in ``sent`` (case-sensitive: pseudonyms are
    lower-case base32, PHI is upper-case)."""
    return {
        value
        for case in cases
        for value in phi_values(case, scenario.site(case.site_id).institution)
        if value.encode() in sent
    }


def test_no_phi_from_any_header_reaches_the_topics(
    small_cases: list[SimulatedCase], small_scenario: Scenario, small_dry_run: DryRun
) -> None:
    assert leaked_phi(sent_bytes(small_dry_run), small_cases, small_scenario) == set()


def test_the_leak_check_finds_phi_in_headers_that_skipped_de_identification(
    small_cases: list[SimulatedCase], small_scenario: Scenario
) -> None:
    case = small_cases[0]
    site = small_scenario.site(case.site_id)
    raw = json.dumps(study_header(case, site.institution, site.city).to_json_dict()).encode()
    assert leaked_phi(raw, [case], small_scenario) == set(phi_values(case, site.institution))


def test_reader_identities_are_pseudonymised(small_dry_run: DryRun) -> None:
    assert b"reader-" not in sent_bytes(small_dry_run)
    reads = [
        decode(FollowUp, r.value)
        for r in small_dry_run.events
        if r.topic == topics.FOLLOWUPS and b'"reader"' in r.value
    ]
    assert reads and all(f.reader_pseudonym and f.reader_pseudonym.startswith("r-") for f in reads)


def test_acquisition_features_survive_de_identification(
    small_cases: list[SimulatedCase], small_scenario: Scenario
) -> None:
    case = next(c for c in small_cases if c.scanner.modality == "CT")
    site = small_scenario.site(case.site_id)
    header = study_header(case, site.institution, site.city)
    deidentified = dicom_case("sim", header, Deidentifier(pseudonym_key(0, site.id)))
    assert deidentified.acquisition.manufacturer == case.scanner.manufacturer
    assert deidentified.acquisition.model == case.scanner.model
    assert deidentified.acquisition.slice_thickness_mm == case.slice_thickness_mm
    assert deidentified.acquisition.station_pseudonym is not None


def test_every_followup_is_keyed_by_a_predicted_case(small_dry_run: DryRun) -> None:
    predicted = {
        decode(Prediction, r.value).case_pseudonym
        for r in small_dry_run.events
        if r.topic == topics.PREDICTIONS and r.key.startswith(b"c-")
    }
    followups = [
        decode(FollowUp, r.value) for r in small_dry_run.events if r.topic == topics.FOLLOWUPS
    ]
    assert followups and {f.case_pseudonym for f in followups} <= predicted


def test_each_site_pseudonymises_with_its_own_key(small_dry_run: DryRun) -> None:
    predictions = [
        decode(Prediction, r.value)
        for r in small_dry_run.events
        if r.topic == topics.PREDICTIONS and r.key.startswith(b"c-")
    ]
    stations = {
        p.site_id: p.acquisition.station_pseudonym
        for p in predictions
        if p.acquisition.station_pseudonym
    }
    assert len(set(stations.values())) == len(stations) == 2


def test_every_synthesized_value_is_valid_for_its_vr(
    small_cases: list[SimulatedCase], small_scenario: Scenario
) -> None:
    """Headers are built without pydicom's per-value checks; this is where they are checked."""
    for case in small_cases[:50]:
        site = small_scenario.site(case.site_id)
        for keyword, value in header_attributes(case, site.institution, site.city):
            vr = dictionary_VR(keyword)
            for item in value if isinstance(value, list) else [value]:
                if item is not None:
                    validate_value(vr, item, config.RAISE)
