"""bench_pipeline's end of a worker's run: the last outcome's own timestamp, read from a real
broker, past the offsets taken before the run (earlier runs' outcomes do not count)."""

from __future__ import annotations

import sys
import time
from pathlib import Path

from kafka import KafkaProducer

from launcher.stack.manager import UpResult
from postmarket import topics

sys.path.insert(0, str(Path(__file__).parents[2] / "bench"))

from bench_pipeline import end_offsets, last_outcome_at  # noqa: E402 - bench/ is no package


def _send(bootstrap: str, placed: list[tuple[int, int]]) -> None:
    """(partition, CreateTime in ms) records on the outcomes topic, in this order."""
    producer = KafkaProducer(bootstrap_servers=bootstrap)
    try:
        for partition, at_ms in placed:
            producer.send(topics.OUTCOMES, b"x", partition=partition, timestamp_ms=at_ms)
        producer.flush()
    finally:
        producer.close()


def test_the_latest_outcome_past_the_offsets_taken_before_is_the_end(
    kafka_stack: UpResult,
) -> None:
    bootstrap = kafka_stack.settings.kafka_bootstrap
    base = int(time.time() * 1000) - 60_000  # the broker refuses times far from its own
    _send(bootstrap, [(0, base + 9_000)])  # an earlier run's, later than this run's: ignored
    before = end_offsets(bootstrap, topics.OUTCOMES)
    assert last_outcome_at(bootstrap, before) is None  # nothing produced since

    _send(bootstrap, [(0, base + 1_000), (1, base + 3_000), (0, base + 2_000)])

    assert last_outcome_at(bootstrap, before) == (base + 3_000) / 1000
    grown = end_offsets(bootstrap, topics.OUTCOMES)
    assert grown[0] == before[0] + 2 and grown[1] == before[1] + 1
