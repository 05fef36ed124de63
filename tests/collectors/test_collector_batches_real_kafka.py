"""A collector's backlog reaches a real Apache Kafka as full v2 signed batches: ceil(N/500)
records on ``pms.inputs.v2``, keyed by the site, each signed once and decodable, carrying
every event exactly once."""

from __future__ import annotations

import math
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from kafka import KafkaConsumer

from collectors.delivery import DeliveryLoop
from collectors.outbox import Outbox
from collectors.producer import EventProducer
from launcher.stack import manager
from postmarket import topics
from postmarket.authenticity import SigningKey, SiteKeyring
from postmarket.contracts.events import MAX_BATCH_EVENTS
from tests.collectors.batch_records import batch_events
from tests.factories import make_followup, make_prediction

pytestmark = pytest.mark.integration


def site_records(bootstrap: str, site_id: str, expected: int, timeout: float) -> list[Any]:
    """Every ``pms.inputs.v2`` record keyed by ``site_id``, read from the beginning."""
    consumer = KafkaConsumer(
        topics.INPUTS,
        bootstrap_servers=bootstrap,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        consumer_timeout_ms=2000,
    )
    found: list[Any] = []

    def read() -> None:
        found.extend(record for record in consumer if record.key == site_id.encode())

    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline and len(found) < expected:
            read()
        read()  # one more pass, so an excess would show too
    finally:
        consumer.close()
    return found


def test_a_backlog_arrives_as_full_signed_batches_each_event_once(
    kafka_stack: manager.UpResult, tmp_path: Path
) -> None:
    count, site_id = 1234, f"batch-{uuid.uuid4().hex[:8]}"
    signing = SigningKey.generate()
    bootstrap = kafka_stack.settings.kafka_bootstrap
    with Outbox(tmp_path / "outbox.db") as outbox:
        events = [
            (make_prediction if i % 3 else make_followup)(
                site_id=site_id, case_pseudonym=f"c-{site_id}-{i}"
            )
            for i in range(count)
        ]
        for event in events:
            outbox.put(event)
        loop = DeliveryLoop(
            outbox, lambda: EventProducer(bootstrap), signer=signing, site_id=site_id
        )
        assert loop.drain() == count
        loop.close()
        assert outbox.depth() == 0

    expected_records = math.ceil(count / MAX_BATCH_EVENTS)
    records = site_records(bootstrap, site_id, expected_records, timeout=60)
    assert len(records) == expected_records == 3
    keyring = SiteKeyring([signing.registration(site_id)])
    carried: Counter[str] = Counter()
    for record in records:
        registration = keyring.verify(record.headers, record.topic, record.key, record.value)
        assert registration.site_id == site_id
        carried.update(str(event.event_id) for event in batch_events(record.key, record.value))
    assert carried == Counter(str(event.event_id) for event in events)
    assert [len(batch_events(r.key, r.value)) for r in records] == [500, 500, 234]
