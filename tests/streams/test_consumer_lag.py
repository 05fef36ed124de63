"""Consumer lag of a worker's owned partitions: end offset minus the group's commit."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from postmarket.metrics import CONSUMER_LAG, WorkerMetrics
from postmarket.topic_admin import ensure_topics
from postmarket.topics import TopicSpec
from streams.agents.lag import LagGauge, partition_lag
from streams.group_offsets import read_offsets, read_resume_offsets


def test_lag_is_end_minus_committed() -> None:
    assert partition_lag({("t", 0)}, {("t", 0): 120}, {("t", 0): 100}, {}) == {("t", 0): 20}


def test_a_partition_never_committed_counts_from_its_earliest_offset() -> None:
    lag = partition_lag({("t", 0)}, {("t", 0): 120}, {}, {("t", 0): 30})
    assert lag == {("t", 0): 90}


def test_only_owned_partitions_are_reported() -> None:
    ends = {("t", 0): 10, ("t", 1): 10}
    assert partition_lag({("t", 1)}, ends, {}, {}) == {("t", 1): 10}


def test_a_commit_ahead_of_a_stale_end_offset_is_zero_not_negative() -> None:
    assert partition_lag({("t", 0)}, {("t", 0): 5}, {("t", 0): 7}, {}) == {("t", 0): 0}


def _lag(registry: CollectorRegistry, topic: str, partition: int) -> float | None:
    labels = {"group": "g", "topic": topic, "partition": str(partition)}
    return registry.get_sample_value(CONSUMER_LAG, labels)


def test_gauge_drops_the_series_of_a_partition_given_up_in_a_rebalance() -> None:
    registry = CollectorRegistry()
    gauge = LagGauge(WorkerMetrics.create(registry), "g")
    gauge.show({("t", 0): 5, ("t", 1): 7})
    gauge.show({("t", 1): 2})
    assert _lag(registry, "t", 0) is None
    assert _lag(registry, "t", 1) == 2


@pytest.mark.integration
def test_offsets_read_from_a_real_broker(kafka_stack: Any) -> None:
    from kafka import KafkaConsumer, KafkaProducer, TopicPartition
    from kafka.structs import OffsetAndMetadata

    bootstrap = kafka_stack.settings.kafka_bootstrap
    topic, group = f"lag-{uuid.uuid4().hex[:8]}", f"lag-group-{uuid.uuid4().hex[:8]}"
    ensure_topics(bootstrap, [TopicSpec(topic, 2)])
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all")
    try:
        for i in range(5):
            producer.send(topic, value=f"{i}".encode(), partition=0)
        producer.send(topic, value=b"x", partition=1)
        producer.flush(timeout=30)
    finally:
        producer.close()
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=group)
    try:
        consumer.commit({TopicPartition(topic, 0): OffsetAndMetadata(2, "", -1)})
    finally:
        consumer.close()
    owned = {(topic, 0), (topic, 1)}
    assert partition_lag(owned, *read_offsets(bootstrap, group, owned)) == {
        (topic, 0): 3,
        (topic, 1): 1,
    }
    # Where the group resumes: its commit, else (never committed) the earliest offset.
    assert read_resume_offsets(bootstrap, group, owned) == {(topic, 0): 2, (topic, 1): 0}
