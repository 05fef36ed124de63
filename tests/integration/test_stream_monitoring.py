"""Per-stream monitoring on the real broker: claims from the registry topic, alerts out."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from collectors.producer import EventProducer
from postmarket import topics
from postmarket.config import Settings
from postmarket.contracts import Alert, decode, encode
from postmarket.local_worker import LocalWorker
from tests.factories import make_followup, make_prediction, make_registry_entry
from tests.integration.pipeline_io import free_port, read_topic, send_raw, wait_for_metric

pytestmark = pytest.mark.integration


@pytest.fixture
def worker(kafka_stack: Any, tmp_path: Path) -> Iterator[LocalWorker]:
    settings: Settings = kafka_stack.settings.model_copy(
        update={
            "worker_id": f"test-monitor-{uuid.uuid4().hex[:8]}",
            "worker_metrics_port": free_port(),
            "home": tmp_path,
        }
    )
    running = LocalWorker(settings, tmp_path / "worker.log")
    running.start()
    yield running
    running.stop()


def test_sensitivity_below_the_registered_claim_raises_alerts(worker: LocalWorker) -> None:
    bootstrap = worker.settings.kafka_bootstrap
    version = f"9.{uuid.uuid4().int % 1000}.0.0"
    site = f"site-{uuid.uuid4().hex[:8]}"
    entry = make_registry_entry(device_version=version)
    send_raw(bootstrap, topics.REGISTRY, [(entry.as_key().encode(), encode(entry))])

    rng = np.random.default_rng(11)
    events = []
    for i, detected in enumerate(rng.random(150) < 0.40):  # claimed 0.872, field 0.40
        case = f"c-{site}-{i}"
        events.append(
            make_prediction(
                case_pseudonym=case,
                site_id=site,
                device_version=version,
                decision="positive" if detected else "negative",
            )
        )
        events.append(make_followup(case_pseudonym=case, site_id=site, label="positive"))
    with EventProducer(bootstrap) as producer:
        producer.deliver(events)

    def mine(records: list[Any]) -> list[Alert]:
        decoded = (decode(Alert, r.value) for r in records)
        return [a for a in decoded if a.stream.site_id == site]

    alerts = mine(read_topic(bootstrap, topics.ALERTS, lambda rs: len(mine(rs)) >= 2))
    by_detector = {a.detector: a for a in alerts}
    assert {"sensitivity_cusum", "sensitivity_claims_test"} <= set(by_detector)
    assert by_detector["sensitivity_claims_test"].severity == "critical"
    assert by_detector["sensitivity_cusum"].stream.device_version == version
    misses = sum(1 for e in events[::2] if e.decision == "negative")  # type: ignore[union-attr]
    confusion = wait_for_metric(
        worker.metrics_url, "postmarket_stream_confusion_cases", misses, site_id=site, cell="fn"
    )
    assert confusion == misses
