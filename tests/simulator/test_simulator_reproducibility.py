"""Same scenario and seed, same bytes: the simulator is a pure function of its inputs."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

from simulator.fleet import SimulatedRecord
from simulator.fleet_records import fleet_records
from simulator.scenario import Scenario
from tests.simulator.conftest import DryRun, dry_run


def test_same_seed_gives_a_byte_identical_event_stream(
    small_scenario: Scenario, small_dry_run: DryRun, tmp_path: Path
) -> None:
    again = dry_run(small_scenario, tmp_path)
    assert again.records_path.read_bytes() == small_dry_run.records_path.read_bytes()


def test_same_seed_gives_an_identical_ground_truth(
    small_scenario: Scenario, small_dry_run: DryRun, tmp_path: Path
) -> None:
    again = dry_run(small_scenario, tmp_path)
    assert again.ground_truth_path.read_bytes() == small_dry_run.ground_truth_path.read_bytes()


def test_event_ids_are_unique_and_derived_not_random(small_dry_run: DryRun) -> None:
    ids = [
        json.loads(r.value)["event_id"]
        for r in small_dry_run.events
        if r.topic in ("pms.predictions.v1", "pms.followups.v1") and r.key.startswith(b"c-")
    ]
    assert (
        len(ids)
        == len(set(ids))
        == small_dry_run.summary.predictions + (small_dry_run.summary.followups)
    )
    assert all(uuid.UUID(i).version == 4 for i in ids)


def test_another_seed_gives_another_fleet(small_scenario: Scenario) -> None:
    reseeded = small_scenario.model_copy(update={"seed": small_scenario.seed + 1})
    scores = [getattr(r, "score", None) for r in fleet_records(small_scenario)]
    other = [getattr(r, "score", None) for r in fleet_records(reseeded)]
    assert scores != other


def test_a_change_at_one_site_leaves_the_other_sites_draws_alone(
    small_scenario: Scenario,
) -> None:
    north_unchanged = small_scenario.model_copy(
        update={
            "injections": tuple(
                i for i in small_scenario.injections if getattr(i, "site", "") != "sim-north"
            )
        }
    )

    def south(scenario: Scenario) -> list[SimulatedRecord]:
        return [r for r in fleet_records(scenario) if r.site_id == "sim-south"]

    assert south(north_unchanged) == south(small_scenario)


def test_records_arrive_in_simulated_time_order(small_scenario: Scenario) -> None:
    arrivals = [r.arrival_time for r in fleet_records(small_scenario)]
    assert arrivals == sorted(arrivals)
