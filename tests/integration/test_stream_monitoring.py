"""Per-stream monitoring on the real broker: claims from the registry topic, alerts out."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from launcher.local_worker import LocalWorker
from postmarket import topics
from postmarket.contracts import Alert, encode
from postmarket.contracts.events import AcquisitionFeatures
from tests.factories import make_followup, make_prediction, make_registry_entry
from tests.integration.own_worker import own_worker
from tests.integration.pipeline_io import (
    SignedProducer,
    read_topic,
    send_raw,
    valid_events,
    wait_for_metric,
    wait_until_caught_up,
)

pytestmark = pytest.mark.integration


@pytest.fixture
def worker(kafka_stack: Any, tmp_path: Path) -> Iterator[LocalWorker]:
    with own_worker(kafka_stack.settings, tmp_path, "monitor") as running:
        yield running


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
    with SignedProducer(bootstrap) as producer:
        producer.deliver(events)

    def mine(records: list[Any]) -> list[Alert]:
        decoded = valid_events(records, Alert)
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


def test_a_version_needing_registration_alerts_on_first_sighting(worker: LocalWorker) -> None:
    bootstrap = worker.settings.kafka_bootstrap
    device = f"dev-{uuid.uuid4().hex[:8]}"
    registered = make_registry_entry(device_id=device, device_version="3.1.0.0")
    send_raw(bootstrap, topics.REGISTRY, [(registered.as_key().encode(), encode(registered))])
    wait_until_caught_up(bootstrap, worker.settings.worker_id, [topics.REGISTRY])
    site = f"site-{uuid.uuid4().hex[:8]}"
    # Under nmpa-syzb a B change (bug fix) runs without registration; a Y change may not.
    bug_fix, enhancement = "3.1.0.7", "3.2.0.0"
    with SignedProducer(bootstrap) as producer:
        producer.deliver(
            [
                make_prediction(
                    device_id=device, device_version=version, site_id=site, case_pseudonym=case
                )
                for version, case in [(bug_fix, f"c-{site}-1"), (enhancement, f"c-{site}-2")]
                + [(enhancement, f"c-{site}-3"), ("3.1.0.0", f"c-{site}-4")]
            ]
        )

    def mine(records: list[Any]) -> list[Alert]:
        decoded = valid_events(records, Alert)
        return [a for a in decoded if a.stream.device_id == device]

    wait_until_caught_up(bootstrap, worker.settings.worker_id, [topics.PREDICTIONS])
    alerts = mine(read_topic(bootstrap, topics.ALERTS, lambda rs: len(mine(rs)) >= 1))
    assert {a.stream.device_version for a in alerts} == {enhancement}
    assert {a.detector for a in alerts} == {"unregistered_change"}
    assert len({a.alert_id for a in alerts}) == 1


def test_a_new_scanner_model_is_reported_before_any_label(worker: LocalWorker) -> None:
    bootstrap = worker.settings.kafka_bootstrap
    version = f"9.{uuid.uuid4().int % 1000}.1.0"
    site = f"site-{uuid.uuid4().hex[:8]}"
    entry = make_registry_entry(device_version=version)
    send_raw(bootstrap, topics.REGISTRY, [(entry.as_key().encode(), encode(entry))])
    rng = np.random.default_rng(12)
    # The stream's first 500 predictions form its reference; 1 in 10 of the next window's
    # studies come from a scanner model the site never used. No follow-up is ever sent.
    window = ["NAEOTOM Alpha" if i % 10 == 0 else "Definition AS" for i in range(250)]
    models = ["Definition AS"] * 500 + window
    events = []
    for i, model in enumerate(models):
        score = float(rng.random())
        events.append(
            make_prediction(
                case_pseudonym=f"c-{site}-{i}",
                site_id=site,
                device_version=version,
                score=score,
                decision="positive" if score >= 0.5 else "negative",
                acquisition=AcquisitionFeatures(manufacturer="SIEMENS", model=model, kvp=120.0),
            )
        )
    with SignedProducer(bootstrap) as producer:
        # The join reads four partitions: the reference is complete before the rest is sent.
        producer.deliver(events[:500])
        wait_for_metric(worker.metrics_url, "postmarket_stream_predictions", 500, site_id=site)
        producer.deliver(events[500:])

    def mine(records: list[Any]) -> list[Alert]:
        decoded = valid_events(records, Alert)
        return [a for a in decoded if a.stream.site_id == site and a.detector == "model_drift"]

    [alert] = mine(read_topic(bootstrap, topics.ALERTS, lambda rs: len(mine(rs)) >= 1))
    assert alert.evidence["adverse_events"] == 25  # the new model's studies in the window
    assert alert.evidence["stream_predictions"] == 750
    assert "never saw" in alert.message
    # The estimate from the first 500 calibrated scores, as a gauge, without any label.
    estimated = wait_for_metric(
        worker.metrics_url,
        "postmarket_stream_estimated_performance_ratio",
        0.01,
        site_id=site,
        metric="sensitivity",
        bound="estimate",
    )
    assert 0.6 < estimated < 0.9  # uniform scores, threshold 0.5: 0.75 expected
