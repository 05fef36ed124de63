"""The ground truth says what was injected, where and when; the stream agrees with it."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest

from postmarket import topics
from postmarket.contracts import Prediction, RegistryEntry, decode
from simulator.fleet import MalformedRecord, SimulatedCase, SimulatedRecord
from simulator.fleet_records import fleet_records
from simulator.ground_truth import ground_truth
from simulator.scenario import Scenario
from tests.simulator.conftest import DryRun


@pytest.fixture(scope="module")
def demo_records(demo_scenario: Scenario) -> list[SimulatedRecord]:
    return fleet_records(demo_scenario)


@pytest.fixture(scope="module")
def demo_truth(demo_scenario: Scenario, demo_records: list[SimulatedRecord]) -> dict[str, Any]:
    return ground_truth(demo_scenario, demo_records)


def injection(truth: dict[str, Any], name: str) -> dict[str, Any]:
    return next(i for i in truth["injections"] if i["name"] == name)


def test_every_injection_is_recorded_with_its_kind_and_day(
    demo_scenario: Scenario, demo_truth: dict[str, Any]
) -> None:
    recorded = [(i["name"], i["kind"], i["day"]) for i in demo_truth["injections"]]
    assert recorded == [(i.name, i.kind, i.day) for i in demo_scenario.injections]


def test_a_scanner_change_starts_on_its_day_at_its_site_only(demo_truth: dict[str, Any]) -> None:
    change = injection(demo_truth, "new-camera-site-a")
    first = change["affected_streams"][0]
    assert first["stream_key"] == "dr-screen|2.1.0.3|site-a|referable_dr"
    assert first["first_case_day"] == 15
    assert first["first_case_ordinal"] > 1
    assert {s["stream_key"].split("|")[2] for s in change["affected_streams"]} == {"site-a"}
    assert change["expected"]["dr-screen"]["sensitivity"] == pytest.approx(0.55)


def test_the_first_affected_ordinal_counts_cases_of_its_stream(
    demo_records: list[SimulatedRecord], demo_truth: dict[str, Any]
) -> None:
    first = injection(demo_truth, "new-camera-site-a")["affected_streams"][0]
    stream = [
        r
        for r in demo_records
        if isinstance(r, SimulatedCase) and "|".join(r.stream) == first["stream_key"]
    ]
    assert "new-camera-site-a" in stream[first["first_case_ordinal"] - 1].injections
    assert not any(
        "new-camera-site-a" in c.injections for c in stream[: first["first_case_ordinal"] - 1]
    )


def test_a_regressed_version_reaches_every_site_running_its_device(
    demo_scenario: Scenario, demo_truth: dict[str, Any]
) -> None:
    rollout = injection(demo_truth, "dr-regression-2.2.0.0")
    sites = {s["stream_key"].split("|")[2] for s in rollout["affected_streams"]}
    running = {s.id for s in demo_scenario.sites if "dr-screen" in s.daily_cases}
    assert sites == running - {"site-f"}  # site-f fell silent before the rollout
    assert rollout["expected"]["dr-screen"]["sensitivity"] == pytest.approx(0.74)


def test_an_unregistered_version_has_no_registry_entry(demo_truth: dict[str, Any]) -> None:
    rollout = injection(demo_truth, "unregistered-lung-1.5.0.0")
    assert rollout["registered"] is False
    assert rollout["expected_signal"] == "unregistered_version"


def test_a_silent_site_sends_nothing_from_its_day(
    demo_scenario: Scenario, demo_records: list[SimulatedRecord]
) -> None:
    silence = demo_scenario.start + timedelta(days=35)
    from_f = [r for r in demo_records if r.site_id == "site-f"]
    assert from_f and max(r.arrival_time for r in from_f) < silence


def test_a_malformed_burst_is_counted_by_defect(
    demo_records: list[SimulatedRecord], demo_truth: dict[str, Any]
) -> None:
    burst = injection(demo_truth, "malformed-burst-site-b")
    assert burst["count"] == 200 == sum(isinstance(r, MalformedRecord) for r in demo_records)
    assert sum(burst["defects"].values()) == 200


def test_a_backfill_is_retrospective_with_past_event_times(
    demo_scenario: Scenario, demo_records: list[SimulatedRecord], demo_truth: dict[str, Any]
) -> None:
    backfilled = [
        r
        for r in demo_records
        if isinstance(r, SimulatedCase) and "backfill-site-e" in r.injections
    ]
    upload = demo_scenario.start + timedelta(days=10)
    assert backfilled and all(c.study_design == "retrospective" for c in backfilled)
    assert all(c.event_time < demo_scenario.start <= upload <= c.arrival_time for c in backfilled)
    assert injection(demo_truth, "backfill-site-e")["cases"] == len(backfilled)


def test_untouched_streams_are_marked_as_such(demo_truth: dict[str, Any]) -> None:
    untouched = {s["stream_key"] for s in demo_truth["streams"] if not s["injections"]}
    assert "lung-nodule|1.4.2.0|site-b|malignant_nodule" in untouched
    assert "dr-screen|2.1.0.3|site-a|referable_dr" not in untouched
    assert not any(k.split("|")[2] == "site-f" for k in untouched)


def test_the_run_writes_the_ground_truth_file(small_dry_run: DryRun) -> None:
    written = json.loads(small_dry_run.ground_truth_path.read_text())
    assert written["counts"]["predictions"] == small_dry_run.summary.predictions


def test_registry_entries_go_first_and_cover_registered_versions_only(
    small_dry_run: DryRun,
) -> None:
    registry = [r for r in small_dry_run.records if r.topic == topics.REGISTRY]
    assert small_dry_run.records[: len(registry)] == registry
    versions = {decode(RegistryEntry, r.value).device_version for r in registry}
    assert versions == {"2.1.0.3", "1.4.2.0"}
    sent_versions = {
        decode(Prediction, r.value).device_version
        for r in small_dry_run.events
        if r.topic == topics.PREDICTIONS and r.key.startswith(b"c-")
    }
    assert "2.3.0.0" in sent_versions - versions


def test_malformed_records_go_raw_to_the_input_topic(small_dry_run: DryRun) -> None:
    malformed = [r for r in small_dry_run.records if r.key.startswith(b"malformed-")]
    assert len(malformed) == 10
    assert {r.topic for r in malformed} == {topics.PREDICTIONS}
    assert any(not r.value.startswith(b"{") for r in malformed)
