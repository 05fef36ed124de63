"""Re-baselining on the real broker: a decision on pms.rebaselines.v1 restarts a stream's
reference, so an accepted scanner stops raising drift alerts and the next one raises again."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from evidence.rebaseline import rebaseline_decision
from launcher.local_worker import LocalWorker
from postmarket import topics
from postmarket.contracts import Alert, Prediction, encode, utc_now
from postmarket.contracts.events import AcquisitionFeatures
from streams.detector_design import REFERENCE_DRIFT_DETECTORS
from streams.monitor_policy import MonitorPolicy
from tests.factories import make_prediction, make_registry_entry
from tests.integration.own_worker import own_worker
from tests.integration.pipeline_io import (
    SignedProducer,
    metric_value,
    read_topic,
    send_raw,
    valid_events,
    wait_for_metric,
)

pytestmark = pytest.mark.integration

REFERENCE = MonitorPolicy().score_reference_cases
"""The workers' reference size (500, not a setting): the least the test can send."""
WINDOW = MonitorPolicy().score_window


@pytest.fixture
def worker(kafka_stack: Any, tmp_path: Path) -> Iterator[LocalWorker]:
    # Only this test's records: earlier tests' predictions would only slow the worker down.
    inputs = [topics.PREDICTIONS, topics.FOLLOWUPS, topics.INPUTS, topics.REBASELINES]
    with own_worker(kafka_stack.settings, tmp_path, "rebaseline", skip=inputs) as running:
        yield running


def test_a_rebaselined_stream_alerts_on_the_next_scanner_only(worker: LocalWorker) -> None:
    bootstrap, url = worker.settings.kafka_bootstrap, worker.metrics_url
    version = f"9.{uuid.uuid4().int % 1000}.2.0"
    site = f"site-{uuid.uuid4().hex[:8]}"
    entry = make_registry_entry(device_version=version)
    send_raw(bootstrap, topics.REGISTRY, [(entry.as_key().encode(), encode(entry))])
    sent = 0

    def scanner(model: str, n: int) -> list[Prediction]:
        # One score throughout: only the scanner model changes, so only model_drift may fire.
        nonlocal sent
        first, sent = sent, sent + n
        return [
            make_prediction(
                case_pseudonym=f"c-{site}-{i}",
                site_id=site,
                device_version=version,
                score=0.3,
                decision="negative",
                acquisition=AcquisitionFeatures(manufacturer="SIEMENS", model=model, kvp=120.0),
            )
            for i in range(first, sent)
        ]

    def counted() -> None:
        # The join reads four partitions: each phase is applied before the next is sent.
        wait_for_metric(url, "postmarket_stream_predictions", sent, site_id=site)

    def drifts(records: list[Any]) -> list[Alert]:
        alerts = valid_events(records, Alert)
        return [a for a in alerts if a.stream.site_id == site and a.detector.endswith("_drift")]

    def drift_gauges() -> float:
        # Thresholds, not statistics: a one-category reference's chi-square statistic is 0.
        return sum(
            metric_value(url, "postmarket_detector_threshold", site_id=site, detector=detector)
            for detector in REFERENCE_DRIFT_DETECTORS
        )

    with SignedProducer(bootstrap) as producer:
        producer.deliver(scanner("Definition AS", REFERENCE))
        counted()
        producer.deliver(scanner("NAEOTOM Alpha", WINDOW))
        [alert] = drifts(read_topic(bootstrap, topics.ALERTS, lambda rs: len(drifts(rs)) >= 1))
        assert alert.detector == "model_drift" and alert.evidence["stream_predictions"] == sent
        threshold = "postmarket_detector_threshold"
        # A one-category reference: the bootstrap critical value sits at its floor, 1e-6.
        wait_for_metric(url, threshold, 1e-6, site_id=site, detector="model_drift")

        # As `postmarket alerts rebaseline` decides it.
        decision = rebaseline_decision(
            alert, "qa-lead", "NAEOTOM Alpha validated at this site", utc_now()
        )
        key = alert.stream.as_key().encode()
        send_raw(bootstrap, topics.REBASELINES, [(key, encode(decision))])
        wait_for_metric(url, "postmarket_stream_rebaselines_total", 1, site_id=site)
        assert drift_gauges() == 0  # the old reference's tests are no longer shown

        # The accepted scanner forms the new reference, then a full window raises nothing.
        producer.deliver(scanner("NAEOTOM Alpha", REFERENCE))
        counted()
        producer.deliver(scanner("NAEOTOM Alpha", WINDOW))
        counted()
        producer.deliver(scanner("Force", WINDOW))
        alerts = drifts(read_topic(bootstrap, topics.ALERTS, lambda rs: len(drifts(rs)) >= 2))

    assert [(a.detector, a.evidence["stream_predictions"]) for a in alerts] == [
        ("model_drift", REFERENCE + WINDOW),
        ("model_drift", sent),
    ]
    assert metric_value(url, "postmarket_stream_rebaselines_total", site_id=site) == 1
