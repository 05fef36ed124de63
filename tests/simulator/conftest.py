"""Shared simulator fixtures: the bundled scenarios and a dry run of the small one."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from collectors.batching import InputContract
from collectors.producer import EncodedEvent
from simulator.collector_path import RecordFile, read_record_file, sent_events
from simulator.run import SimulationSummary, run_simulation
from simulator.scenario import Scenario, load_scenario

SCENARIOS = Path(__file__).resolve().parents[2] / "scenarios"


@dataclass(frozen=True)
class DryRun:
    """A scenario run into a record file instead of Kafka."""

    summary: SimulationSummary
    records_path: Path
    records: list[EncodedEvent]
    """As they would have gone to Kafka (v2 batches by default)."""
    ground_truth_path: Path

    @property
    def events(self) -> list[EncodedEvent]:
        """Every event as its v1 record would be, batches opened (see ``sent_events``)."""
        return sent_events(self.records)


def dry_run(scenario: Scenario, directory: Path, input_contract: InputContract = "v2") -> DryRun:
    records_path = directory / "records.jsonl"
    truth_path = directory / "ground-truth.json"
    with RecordFile(records_path) as record_file:
        summary = run_simulation(
            scenario, lambda: record_file, truth_path, input_contract=input_contract
        )
    return DryRun(summary, records_path, read_record_file(records_path), truth_path)


@pytest.fixture(scope="session")
def small_scenario() -> Scenario:
    return load_scenario(SCENARIOS / "small.toml")


@pytest.fixture(scope="session")
def demo_scenario() -> Scenario:
    return load_scenario(SCENARIOS / "demo.toml")


@pytest.fixture(scope="session")
def small_dry_run(small_scenario: Scenario, tmp_path_factory: Any) -> DryRun:
    return dry_run(small_scenario, tmp_path_factory.mktemp("small-dry-run"))
