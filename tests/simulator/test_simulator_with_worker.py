"""The simulated fleet fed to a real worker: malformed records dead-lettered, cases joined."""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from launcher.local_worker import LocalWorker
from postmarket import topics
from postmarket.config import Settings
from postmarket.contracts import DeadLetter, FollowUp, Outcome, decode
from simulator.collector_path import kafka_connector
from simulator.fleet import MalformedRecord
from simulator.fleet_records import fleet_records
from simulator.malformed import EXPECTED_REASON
from simulator.run import run_simulation
from simulator.scenario import Scenario
from streams.truth import final_truth
from tests.integration.pipeline_io import free_port, read_topic, valid_events
from tests.simulator.conftest import dry_run

pytestmark = pytest.mark.integration


@pytest.fixture
def worker(kafka_stack: Any, tmp_path: Path) -> Iterator[LocalWorker]:
    settings: Settings = kafka_stack.settings.model_copy(
        update={
            "worker_id": f"test-simulator-{uuid.uuid4().hex[:8]}",
            "worker_metrics_port": free_port(),
            "home": tmp_path,
        }
    )
    running = LocalWorker(settings, tmp_path / "worker.log")
    running.start()
    yield running
    running.stop()


def test_a_worker_dead_letters_the_burst_and_joins_every_settled_case(
    worker: LocalWorker, small_scenario: Scenario, tmp_path: Path
) -> None:
    scenario = small_scenario.model_copy(update={"seed": 1000 + uuid.uuid4().int % 10**6})
    expected = dry_run(scenario, tmp_path / "dry")
    bootstrap = worker.settings.kafka_bootstrap
    run_simulation(scenario, kafka_connector(bootstrap), tmp_path / "ground-truth.json")

    malformed = {
        r.value: EXPECTED_REASON[r.defect]
        for r in fleet_records(scenario)
        if isinstance(r, MalformedRecord)
    }

    def burst(records: list[Any]) -> dict[bytes, str]:
        letters = valid_events(records, DeadLetter)
        return {d.original: d.reason_code for d in letters if d.original in malformed}

    dead = burst(read_topic(bootstrap, topics.DEADLETTER, lambda rs: len(burst(rs)) >= 10))
    assert dead == malformed

    reads: dict[str, list[FollowUp]] = defaultdict(list)
    for record in expected.records:
        if record.topic == topics.FOLLOWUPS:
            followup = decode(FollowUp, record.value)
            reads[followup.case_pseudonym].append(followup)
    settled = {case for case, followups in reads.items() if final_truth(followups) is not None}

    def joined(records: list[Any]) -> set[str]:
        cases = {o.case_pseudonym for o in valid_events(records, Outcome)}
        return cases & set(reads)

    outcomes = joined(read_topic(bootstrap, topics.OUTCOMES, lambda rs: joined(rs) >= settled))
    assert outcomes == settled
