"""Delivery without loss against a real Apache Kafka: a collector killed with SIGKILL
mid-batch, and a broker stopped and restarted mid-send, still get exactly the N distinct
events through in v2 batches (resends are allowed; the workers drop duplicates by
event_id)."""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterable, Iterator
from pathlib import Path

import pytest
from kafka import KafkaConsumer
from prometheus_client import CollectorRegistry

from collectors.delivery import DeliveryLoop
from collectors.metrics import CollectorMetrics
from collectors.outbox import Outbox
from collectors.producer import Delivery, EncodedEvent, EventProducer
from launcher.stack import kafka, manager
from launcher.stack.processes import ProcessRecord, free_port, stop_group
from postmarket import topic_admin, topics
from postmarket.topics import pipeline_topics
from tests.collectors.batch_records import batch_events
from tests.conftest import make_stack_home
from tests.factories import make_prediction

pytestmark = [pytest.mark.integration, pytest.mark.slow]

REPO = Path(__file__).parents[2]

SENDER = """
import sys, time
from collectors.delivery import DeliveryLoop
from collectors.outbox import Outbox
from collectors.producer import Delivery, EncodedEvent, EventProducer

outbox_path, bootstrap, pause = sys.argv[1], sys.argv[2], float(sys.argv[3])

class SlowProducer(EventProducer):
    # Acknowledged by Kafka, not yet marked sent: the window a SIGKILL should hit.
    def deliver_encoded(self, records):
        deliveries = super().deliver_encoded(records)
        time.sleep(pause)
        return deliveries

with Outbox(__import__("pathlib").Path(outbox_path)) as outbox:
    loop = DeliveryLoop(outbox, lambda: SlowProducer(bootstrap), batch_size=50)
    loop.drain()
    loop.close()
    print("drained", outbox.depth(), flush=True)
"""


def fill_outbox(path: Path, count: int, site_id: str) -> set[str]:
    with Outbox(path) as outbox:
        events = [
            make_prediction(site_id=site_id, case_pseudonym=f"c-{site_id}-{i}")
            for i in range(count)
        ]
        for event in events:
            outbox.put(event)
    return {str(event.event_id) for event in events}


def distinct_event_ids(bootstrap: str, site_id: str, expected: int, timeout: float) -> set[str]:
    """Every event_id of ``site_id`` in the v2 batches on ``pms.inputs.v2`` (from the
    beginning; a resent batch adds no new id)."""
    consumer = KafkaConsumer(
        topics.INPUTS,
        bootstrap_servers=bootstrap,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        consumer_timeout_ms=2000,
    )
    seen: set[str] = set()

    def read() -> None:
        for record in consumer:
            if record.key == site_id.encode():
                seen.update(str(e.event_id) for e in batch_events(record.key, record.value))

    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline and len(seen) < expected:
            read()
        # One more pass so that an excess (a wrong event_id) would show up too.
        read()
    finally:
        consumer.close()
    return seen


def _run_sender(outbox: Path, bootstrap: str, pause: float) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", SENDER, str(outbox), bootstrap, str(pause)],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _depth(path: Path) -> int:
    with Outbox(path) as outbox:
        return outbox.depth()


def test_sigkill_mid_batch_then_restart_delivers_exactly_n_distinct(
    kafka_stack: manager.UpResult, tmp_path: Path
) -> None:
    count, site_id = 1500, f"kill-{uuid.uuid4().hex[:8]}"
    bootstrap = kafka_stack.settings.kafka_bootstrap
    outbox = tmp_path / "outbox.db"
    expected = fill_outbox(outbox, count, site_id)

    sender = _run_sender(outbox, bootstrap, pause=0.1)
    deadline = time.monotonic() + 60
    while _depth(outbox) > count // 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    sender.send_signal(signal.SIGKILL)
    sender.communicate(timeout=10)
    assert sender.returncode == -signal.SIGKILL
    left = _depth(outbox)
    assert 0 < left < count

    restarted = _run_sender(outbox, bootstrap, pause=0.0)
    out, err = restarted.communicate(timeout=120)
    assert restarted.returncode == 0, err
    assert _depth(outbox) == 0

    assert distinct_event_ids(bootstrap, site_id, count, timeout=60) == expected


@pytest.fixture
def private_broker(kafka_stack: manager.UpResult) -> Iterator[tuple[kafka.KafkaPaths, Path]]:
    """A second, private single-node Kafka in its own home (it gets stopped and restarted)."""
    pom = kafka.pom_path()
    version = kafka.kafka_version_from_pom(pom.read_text())
    shared_home = kafka_stack.settings.home
    jar_dir = kafka.resolve_jars(shared_home, pom, version, shared_home / "logs" / "maven.log")
    home = make_stack_home("pms-outage-")
    yield kafka.KafkaPaths(home), jar_dir
    shutil.rmtree(home, ignore_errors=True)


def _start_broker(paths: kafka.KafkaPaths, ports: kafka.KafkaPorts, jar_dir: Path) -> ProcessRecord:
    record = kafka.start(paths, ports, jar_dir)
    kafka.wait_until_ready(record, paths)
    return record


def test_broker_outage_mid_send_delivers_exactly_n_distinct(
    private_broker: tuple[kafka.KafkaPaths, Path], tmp_path: Path
) -> None:
    paths, jar_dir = private_broker
    broker = free_port()
    ports = kafka.KafkaPorts(broker=broker, controller=free_port(exclude=[broker]))
    kafka.write_config(paths, ports)
    kafka.format_storage(paths, jar_dir)
    record = _start_broker(paths, ports, jar_dir)
    try:
        topic_admin.ensure_topics(ports.bootstrap, pipeline_topics(4))
        count, site_id = 1200, f"outage-{uuid.uuid4().hex[:8]}"
        outbox_path = tmp_path / "outbox.db"
        expected = fill_outbox(outbox_path, count, site_id)
        registry = CollectorRegistry()
        metrics = CollectorMetrics.create(registry)

        class SlowProducer(EventProducer):
            def deliver_encoded(self, records: Iterable[EncodedEvent]) -> list[Delivery]:
                time.sleep(0.05)
                return super().deliver_encoded(records)

        with Outbox(outbox_path, metrics=metrics) as outbox:
            loop = DeliveryLoop(
                outbox, lambda: SlowProducer(ports.bootstrap), metrics, batch_size=20, max_backoff=2
            )
            sender = threading.Thread(target=loop.drain, daemon=True)
            sender.start()
            while outbox.depth() > count * 3 // 4:
                time.sleep(0.02)

            stop_group(record.pid, signal.SIGTERM, timeout=45)
            during_outage = outbox.depth()
            time.sleep(5)
            assert outbox.depth() > 0 and during_outage > 0  # nothing dropped while down

            record = _start_broker(paths, ports, jar_dir)
            sender.join(timeout=240)
            assert not sender.is_alive()
            assert outbox.depth() == 0
            loop.close()

        assert distinct_event_ids(ports.bootstrap, site_id, count, timeout=60) == expected
        sent_at = registry.get_sample_value(
            "postmarket_collector_last_successful_send_timestamp_seconds"
        )
        assert sent_at is not None and sent_at > 0
    finally:
        stop_group(record.pid, signal.SIGTERM, timeout=45)
