"""A simulated site's malformed batches through its collector, a real broker and a real
worker, scored as the demo scores them: every bad event dead-lettered at its place, every
good event of the batches counted (its prediction accepted, its case's outcome out)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from launcher.local_worker import LocalWorker
from postmarket import topics
from postmarket.config import Settings
from postmarket.contracts import DeadLetter, Outcome, Prediction
from postmarket.topic_reader import valid_batched_events
from simulator.collector_path import kafka_connector
from simulator.fleet import MalformedBatchRecord
from simulator.fleet_records import fleet_records
from simulator.ground_truth import ground_truth
from simulator.run import run_simulation
from simulator.scenario import MalformedBatch, Scenario
from simulator.scoring import PipelineOutput, fleet_facts, score_run
from tests.integration.pipeline_io import free_port, read_all, read_topic, valid_events

pytestmark = pytest.mark.integration


@pytest.fixture
def worker(kafka_stack: Any, tmp_path: Path) -> Iterator[LocalWorker]:
    settings: Settings = kafka_stack.settings.model_copy(
        update={
            "worker_id": f"test-malformed-batch-{uuid.uuid4().hex[:8]}",
            "worker_metrics_port": free_port(),
            "home": tmp_path,
        }
    )
    running = LocalWorker(settings, tmp_path / "worker.log")
    running.start()
    yield running
    running.stop()


def scenario_of_its_own(small: Scenario) -> Scenario:
    """The small fleet for one day, its sites renamed so that no earlier run's records on
    the shared topics match, and two malformed batches at one site as its only change."""
    suffix = uuid.uuid4().hex[:6]
    document = small.model_dump()
    for site in document["sites"]:
        site["id"] = f"{site['id']}-{suffix}"
    batch = MalformedBatch(
        kind="malformed_batch", name="bad-batches", day=0, site=document["sites"][1]["id"], count=2
    )
    document |= {"days": 1, "injections": [batch.model_dump()]}
    return Scenario.model_validate(document)


def test_the_demo_scores_a_malformed_batch_detected_on_a_real_worker(
    worker: LocalWorker, small_scenario: Scenario, tmp_path: Path
) -> None:
    scenario = scenario_of_its_own(small_scenario)
    bootstrap = worker.settings.kafka_bootstrap
    records = fleet_records(scenario)
    batches = [r for r in records if isinstance(r, MalformedBatchRecord)]
    run_simulation(scenario, kafka_connector(bootstrap), tmp_path / "ground-truth.json")

    refused = {bad.value for batch in batches for bad in batch.bad if bad.expected_reason}
    sites = {site.id for site in scenario.sites}

    def mine(found: list[Any]) -> list[DeadLetter]:
        return [d for d in valid_events(found, DeadLetter) if d.original in refused]

    letters = mine(read_topic(bootstrap, topics.DEADLETTER, lambda r: len(mine(r)) >= 8))
    good_cases = {(c.site_id, c.event_time) for batch in batches for c in batch.cases}

    def joined(found: list[Any]) -> list[Outcome]:
        return [
            o
            for o in valid_events(found, Outcome)
            if (o.stream.site_id, o.prediction_time) in good_cases
        ]

    outcomes = joined(read_topic(bootstrap, topics.OUTCOMES, lambda r: len(joined(r)) >= 8))
    predictions = [
        p
        for p in valid_batched_events(read_all(bootstrap, topics.INPUTS), Prediction)
        if p.site_id in sites
    ]
    every_letter = valid_events(read_all(bootstrap, topics.DEADLETTER), DeadLetter)
    output = PipelineOutput([], every_letter, predictions, outcomes)
    (change,) = score_run(ground_truth(scenario, records), fleet_facts(records), output).changes
    assert change.detected and change.within_bound, change.detail
    assert len(letters) == 8
    # Without the outcomes of the batches' cases, the same run does not score as detected.
    one_case_fewer = [o for o in outcomes if o.prediction_time != outcomes[0].prediction_time]
    missing = PipelineOutput([], every_letter, predictions, one_case_fewer)
    (unjoined,) = score_run(ground_truth(scenario, records), fleet_facts(records), missing).changes
    assert not unjoined.detected
