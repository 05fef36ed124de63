"""The small scenario through the real collectors into the real broker: all of it arrives."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from collectors.producer import EncodedEvent
from postmarket import topics
from simulator.collector_path import kafka_connector, sent_events
from simulator.run import run_simulation
from simulator.scenario import Scenario
from tests.integration.pipeline_io import read_topic
from tests.simulator.conftest import DryRun

pytestmark = pytest.mark.integration


def identity(topic: str, key: bytes, value: bytes) -> tuple[str, bytes, bytes]:
    return (topic, key, value)


def arrived_of(
    bootstrap: str, topic: str, wanted: set[tuple[str, bytes, bytes]], count: int
) -> set[tuple[str, bytes, bytes]]:
    """The wanted records found on ``topic``, waiting until ``count`` of them are there."""

    def mine(records: list[Any]) -> set[tuple[str, bytes, bytes]]:
        return {identity(topic, r.key, r.value) for r in records} & wanted

    return mine(read_topic(bootstrap, topic, lambda records: len(mine(records)) >= count))


def test_a_small_fleet_arrives_on_the_topics_exactly_as_simulated(
    kafka_stack: Any, small_scenario: Scenario, small_dry_run: DryRun, tmp_path: Path
) -> None:
    bootstrap = kafka_stack.settings.kafka_bootstrap
    summary = run_simulation(
        small_scenario, kafka_connector(bootstrap), tmp_path / "ground-truth.json"
    )
    assert summary.sent == summary.records

    expected = Counter(r.topic for r in small_dry_run.records)
    wanted = {identity(r.topic, r.key, r.value) for r in small_dry_run.records}
    arrived = {
        topic: arrived_of(bootstrap, topic, wanted, expected[topic])
        for topic in (topics.REGISTRY, topics.INPUTS, topics.PREDICTIONS)
    }
    assert expected[topics.FOLLOWUPS] == 0  # follow-ups travel in the batches
    batched = sent_events(
        [EncodedEvent(topics.INPUTS, key, value) for _, key, value in arrived[topics.INPUTS]]
    )
    predictions = [json.loads(e.value) for e in batched if e.topic == topics.PREDICTIONS]
    followups = [e for e in batched if e.topic == topics.FOLLOWUPS]
    assert len(arrived[topics.INPUTS]) == expected[topics.INPUTS]
    assert len(predictions) == summary.predictions
    assert len(followups) == summary.followups
    assert len(arrived[topics.PREDICTIONS]) == summary.malformed  # raw, as injected
    assert len(arrived[topics.REGISTRY]) == summary.registry_entries
    assert {p["site_id"] for p in predictions} == {"sim-north", "sim-south"}
