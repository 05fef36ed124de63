"""Retrospective replay (``postmarket replay``) of N historical predictions: events/s end to
end (file read to broker acknowledgement, acks=all) and where the time goes.

Peers measured in the same run on the same machine and broker: the replay without Kafka
(read + convert only) and kafka-python alone sending the same pre-encoded events with the
replay's producer settings (the limit of the producing client). The replay runs on a local
Kafka this script starts in a temporary home and stops at the end.

End to end, as a manufacturer back-fills a fleet's history: one full worker is started first
(idle, its group at the end of the inputs, the versions registered), then the same file is
replayed again, and the clock stops when the worker has committed every replayed record
(joined, applied to its streams, written): replay and worker overlap, as they do in use.
Event authenticity is off for that worker: ``postmarket replay`` signs with one site's key,
and this history spans 20 sites (a batch's signature is one check per record of up to 500
events, well under a microsecond per event).

N is ``PMS_BENCH_REPLAY_EVENTS`` (default 1,000,000, the goal's size: about 8 minutes in
all); the 1M figures are linear extrapolations from it if N is less, which overstates them:
each of the history's 40 streams pays its start-up (its references growing over its first
5,000 predictions, a bootstrap calibration each time the score reference doubles) within
the first 200,000 events, at several times the cost of a prediction after it.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd  # type: ignore[import-untyped]
from bench_pipeline import VERSIONS, registry_entry

from launcher.local_worker import LocalWorker
from launcher.stack import manager
from launcher.stack.processes import free_port
from postmarket import topics
from postmarket.config import Settings
from postmarket.contracts import encode
from streams.replay import ColumnMapping, CountingSink, KafkaSink, ReplaySummary, replay_file

EVENTS = int(os.environ.get("PMS_BENCH_REPLAY_EVENTS", "1000000"))
MILLION = 1_000_000
CATCH_UP_TIMEOUT_S = 1800.0


def historical_predictions(rows: int, seed: int = 5) -> pd.DataFrame:
    """Ten years of predictions at 20 sites, as a hospital network might export them."""
    rng = np.random.default_rng(seed)
    seconds = np.sort(rng.integers(0, 10 * 365 * 86_400, rows))
    times = pd.Timestamp("2015-01-01") + pd.to_timedelta(seconds, unit="s")
    scores = rng.random(rows).round(4)
    return pd.DataFrame(
        {
            "site_id": np.char.add("site-", (rng.integers(0, 20, rows)).astype(str)),
            "device_id": "dr-screen",
            "device_version": np.where(rng.random(rows) < 0.5, "2.1.0.3", "2.2.0.0"),
            "task": "referable_dr",
            "case_pseudonym": np.char.add("c-", np.arange(rows).astype(str)),
            "event_time": times.strftime("%Y-%m-%dT%H:%M:%S"),
            "score": scores,
            "decision": np.where(scores >= 0.5, "positive", "negative"),
            "operating_threshold": 0.5,
            "acquisition.manufacturer": np.where(rng.random(rows) < 0.6, "Topcon", "Canon"),
            "acquisition.modality": "OP",
        }
    )


class CollectingSink(CountingSink):
    """A dry-run sink that keeps the encoded records (signed batches by default), for the
    producer-alone peer."""

    def __init__(self) -> None:
        super().__init__()
        self.records: list[tuple[str, bytes, bytes, int]] = []

    def send(self, topic: str, key: bytes, value: bytes, events: int = 1) -> None:
        super().send(topic, key, value, events)
        self.records.append((topic, key, value, events))


def producer_alone(bootstrap: str, records: list[tuple[str, bytes, bytes, int]]) -> float:
    """Seconds for kafka-python alone to send and have acknowledged pre-encoded records."""
    sink = KafkaSink(bootstrap)
    try:
        started = time.perf_counter()
        for topic, key, value, events in records:
            sink.send(topic, key, value, events)
        failed = sink.finish()
        elapsed = time.perf_counter() - started
    finally:
        sink.close()
    assert failed == 0, f"{failed} records not acknowledged"
    return elapsed


def committed_everything(bootstrap: str, group: str, topic: str) -> bool:
    """Whether ``group`` has committed ``topic`` up to its end on every partition."""
    from kafka import KafkaConsumer, TopicPartition
    from kafka.admin import KafkaAdminClient

    consumer = KafkaConsumer(bootstrap_servers=bootstrap)
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
        ends = consumer.end_offsets(partitions)
        committed = admin.list_group_offsets(group).get(group, {})
        return all(
            tp in committed and committed[tp].offset >= end for tp, end in ends.items() if end
        )
    finally:
        admin.close()
        consumer.close()


def start_at_end(bootstrap: str, group: str, topic: str) -> None:
    """Commit ``topic``'s end for ``group``: its worker reads only what is replayed next."""
    from kafka import KafkaConsumer, TopicPartition
    from kafka.structs import OffsetAndMetadata

    consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
    try:
        partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
        ends = consumer.end_offsets(partitions)
        consumer.commit({tp: OffsetAndMetadata(end, "", -1) for tp, end in ends.items()})
    finally:
        consumer.close()


def replay_through_worker(
    stack_settings: Settings, work: Path, csv_file: Path, mapping: ColumnMapping
) -> dict[str, float]:
    """Seconds from the replay's start until one full worker, started before it, committed
    every replayed record; the replay's own seconds beside it."""
    settings = stack_settings.model_copy(
        update={
            "worker_id": f"bench-replay-{uuid.uuid4().hex[:8]}",
            "worker_metrics_port": free_port(),
            "event_authenticity": "off",
        }
    )
    bootstrap = settings.kafka_bootstrap
    start_at_end(bootstrap, settings.worker_id, topics.INPUTS)
    registry = KafkaSink(bootstrap)
    try:
        for version in VERSIONS:
            entry = registry_entry(version)
            registry.send(topics.REGISTRY, entry.as_key().encode(), encode(entry))
        assert registry.finish() == 0, "the registry was not acknowledged"
    finally:
        registry.close()
    worker = LocalWorker(settings, work / "logs" / "bench-replay-worker.log")
    worker.start(timeout_s=180.0)
    try:
        started = time.perf_counter()
        sink = KafkaSink(bootstrap)
        try:
            replayed = replay_file(csv_file, "predictions", mapping, sink)
        finally:
            sink.close()
        replay_s = time.perf_counter() - started
        assert replayed.published == EVENTS and replayed.not_acknowledged == 0
        deadline = started + CATCH_UP_TIMEOUT_S
        while not committed_everything(bootstrap, settings.worker_id, topics.INPUTS):
            if time.perf_counter() > deadline:
                raise RuntimeError(f"the worker did not catch up: {worker.tail()}")
            time.sleep(0.5)
        total_s = time.perf_counter() - started
    finally:
        worker.stop()
    return {"total_s": total_s, "replay_s": replay_s, "events_per_s": EVENTS / total_s}


def timings(summary: ReplaySummary) -> dict[str, float]:
    t = summary.timings
    return {
        "events_per_s": summary.published / t.total,
        "total_s": t.total,
        "reading_s": t.reading,
        "converting_s": t.converting,
        "sending_s": t.sending,
        "awaiting_acks_s": t.awaiting_acks,
    }


def run(results_dir: Path) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix="pms-bench-replay-", dir="/tmp"))
    work.chmod(0o755)
    history = historical_predictions(EVENTS)
    csv_file, parquet_file = work / "history.csv", work / "history.parquet"
    history.to_csv(csv_file, index=False)
    history.to_parquet(parquet_file)
    result: dict[str, Any] = {"events": EVENTS, "csv_bytes": csv_file.stat().st_size}
    mapping = ColumnMapping()
    try:
        collected = CollectingSink()
        dry = replay_file(csv_file, "predictions", mapping, collected)
        result["csv_without_kafka"] = timings(dry)
        result["parquet_without_kafka"] = timings(
            replay_file(parquet_file, "predictions", mapping, CountingSink())
        )
        stack = manager.up(Settings(home=work))
        bootstrap = stack.settings.kafka_bootstrap
        sink = KafkaSink(bootstrap)
        try:
            replayed = replay_file(csv_file, "predictions", mapping, sink)
        finally:
            sink.close()
        assert replayed.published == EVENTS and replayed.not_acknowledged == 0
        result["csv_to_kafka"] = timings(replayed)
        result["kafka_python_alone_events_per_s"] = EVENTS / producer_alone(
            bootstrap, collected.records
        )
        record_bytes = sum(len(value) for _topic, _key, value, _events in collected.records)
        result["event_bytes_mean"] = record_bytes / EVENTS
        result["records"] = len(collected.records)
        result["through_worker"] = replay_through_worker(stack.settings, work, csv_file, mapping)
    finally:
        manager.down(Settings(home=work))
        shutil.rmtree(work, ignore_errors=True)
    replay_rate = result["csv_to_kafka"]["events_per_s"]
    result["ratio_replay_to_kafka_python_alone"] = (
        replay_rate / result["kafka_python_alone_events_per_s"]
    )
    result["million_replay_s_extrapolated"] = MILLION / replay_rate
    result["million_through_worker_s_extrapolated"] = (
        MILLION / result["through_worker"]["events_per_s"]
    )
    results_dir.mkdir(parents=True, exist_ok=True)
    (results_dir / "replay.json").write_text(json.dumps(result, indent=2) + "\n")
    return result


def render(result: dict[str, Any]) -> None:
    print(f"| replay of {result['events']:,} predictions | events/s | total s |")
    print("|---|---|---|")
    for label, key in (
        ("CSV -> Kafka, acks=all (end to end)", "csv_to_kafka"),
        ("CSV, read + convert only (no Kafka)", "csv_without_kafka"),
        ("Parquet, read + convert only (no Kafka)", "parquet_without_kafka"),
    ):
        row = result[key]
        print(f"| {label} | {row['events_per_s']:,.0f} | {row['total_s']:.1f} |")
    print(
        f"| kafka-python alone, same producer settings | "
        f"{result['kafka_python_alone_events_per_s']:,.0f} | |"
    )
    kafka = result["csv_to_kafka"]
    print("\n| where the time goes (CSV -> Kafka) | s | share |\n|---|---|---|")
    for label, key in (
        ("pandas reading the file", "reading_s"),
        ("rows -> validated events -> JSON (contracts)", "converting_s"),
        ("handing records to kafka-python", "sending_s"),
        ("waiting for the last acknowledgements", "awaiting_acks_s"),
    ):
        print(f"| {label} | {kafka[key]:.1f} | {kafka[key] / kafka['total_s']:.0%} |")
    basis = "measured" if result["events"] >= MILLION else f"extrapolated from {result['events']:,}"
    print("\n| figure | value |\n|---|---|")
    print(f"| replay / kafka-python alone | {result['ratio_replay_to_kafka_python_alone']:.2f} |")
    print(
        f"| 1M events replayed ({basis}) | {result['million_replay_s_extrapolated'] / 60:.1f} min |"
    )
    through = result["through_worker"]
    print(
        f"| replay and one full worker, end to end ({result['events']:,} events) "
        f"| {through['total_s']:.1f} s (replay alone {through['replay_s']:.1f} s) |"
    )
    print(
        f"| 1M events through replay and one worker ({basis}) "
        f"| {result['million_through_worker_s_extrapolated'] / 60:.1f} min |"
    )


def main(results_dir: Path) -> dict[str, Any]:
    result = run(results_dir)
    render(result)
    return result


if __name__ == "__main__":
    main(Path(__file__).parent / "results")
