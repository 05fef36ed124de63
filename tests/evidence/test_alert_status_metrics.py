"""The evidence sink's gauge of alerts by lifecycle status, read from the store."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import pytest
from evidence_builders import make_alert, make_stream
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from evidence.metrics import EvidenceMetrics, PeriodicRefresh
from evidence.store import EvidenceStore
from launcher.stack.processes import free_port
from postmarket.metrics import ALERT_RECURRENCES, ALERTS_BY_STATUS
from postmarket.metrics_endpoint import MetricsEndpoint, serve_metrics

ACTOR = "test"


def _sample_labels(status: str, labels: dict[str, str]) -> dict[str, str]:
    """The default stream's labels for the sensitivity CUSUM in ``status``, with ``labels``."""
    stream = make_stream()
    return {
        "device_id": stream.device_id,
        "device_version": stream.device_version,
        "site_id": stream.site_id,
        "task": stream.task,
        "detector": "sensitivity_cusum",
        "status": status,
        **labels,
    }


def _value(registry: CollectorRegistry, status: str, **labels: str) -> float | None:
    names = _sample_labels(status, {"severity": "warning", **labels})
    return registry.get_sample_value(ALERTS_BY_STATUS, names)


def _recurrences(registry: CollectorRegistry, status: str, **labels: str) -> float | None:
    return registry.get_sample_value(ALERT_RECURRENCES, _sample_labels(status, labels))


def test_alerts_are_counted_by_lifecycle_status(store: EvidenceStore) -> None:
    detectors = ["sensitivity_cusum", "specificity_cusum", "ppv_window", "npv_window"]
    alerts = [make_alert(detector=detector) for detector in detectors]
    for alert in alerts:
        store.record_alert(alert, actor=ACTOR)
    store.acknowledge_alert(alerts[0].alert_id, by="qa", note="looking")
    store.acknowledge_alert(alerts[1].alert_id, by="qa", note="looking")
    store.resolve_alert(alerts[1].alert_id, by="qa", resolution="recalibrated")
    registry = CollectorRegistry()
    EvidenceMetrics(registry).refresh(store)
    by_detector = {
        (detector, status): _value(registry, status, detector=detector)
        for detector in detectors
        for status in ("open", "acknowledged", "resolved")
    }
    assert [key for key, alerts in by_detector.items() if alerts] == [
        ("sensitivity_cusum", "acknowledged"),
        ("specificity_cusum", "resolved"),
        ("ppv_window", "open"),
        ("npv_window", "open"),
    ]
    assert set(by_detector.values()) == {0, 1}


def test_a_persistent_problem_is_one_alert_and_its_signals_recurrences(
    store: EvidenceStore,
) -> None:
    first = make_alert()
    for alert in (first, make_alert(severity="critical"), make_alert()):
        store.record_alert(alert, actor=ACTOR)
    registry = CollectorRegistry()
    metrics = EvidenceMetrics(registry)
    metrics.refresh(store)
    assert _value(registry, "open") == 1
    assert _value(registry, "open", severity="critical") is None  # the alert's own severity
    assert _recurrences(registry, "open") == 2
    store.acknowledge_alert(first.alert_id, by="qa", note="looking")
    metrics.refresh(store)
    assert (_recurrences(registry, "open"), _recurrences(registry, "acknowledged")) == (0, 2)
    assert _recurrences(registry, "resolved") == 0


def test_alerts_without_recurrences_export_no_recurrence_series(store: EvidenceStore) -> None:
    store.record_alert(make_alert(), actor=ACTOR)
    registry = CollectorRegistry()
    EvidenceMetrics(registry).refresh(store)
    families = {family.name: family for family in registry.collect()}
    assert families[ALERT_RECURRENCES].samples == []


def test_a_status_without_alerts_is_a_zero_series_not_a_missing_one(store: EvidenceStore) -> None:
    store.record_alert(make_alert(), actor=ACTOR)
    registry = CollectorRegistry()
    EvidenceMetrics(registry).refresh(store)
    assert _value(registry, "resolved") == 0
    assert _value(registry, "acknowledged") == 0


def test_severity_and_site_are_separate_series(store: EvidenceStore) -> None:
    store.record_alert(make_alert(severity="critical"), actor=ACTOR)
    store.record_alert(make_alert(stream=make_stream(site_id="site-b")), actor=ACTOR)
    registry = CollectorRegistry()
    EvidenceMetrics(registry).refresh(store)
    assert _value(registry, "open", severity="critical") == 1
    assert _value(registry, "open", site_id="site-b") == 1
    assert _value(registry, "open") is None  # site-a, warning: none


def test_an_empty_store_exports_the_family_without_series(store: EvidenceStore) -> None:
    registry = CollectorRegistry()
    EvidenceMetrics(registry).refresh(store)
    families = {family.name: family for family in registry.collect()}
    assert families[ALERTS_BY_STATUS].samples == []


def test_periodic_refresh_picks_up_a_transition_and_serves_it(sqlite_url: str) -> None:
    with EvidenceStore(sqlite_url) as store:
        alert = make_alert()
        store.record_alert(alert, actor=ACTOR)
        registry = CollectorRegistry()
        refresh = PeriodicRefresh(EvidenceMetrics(registry), store, interval_s=0.05)
        server = serve_metrics(registry, MetricsEndpoint())
        refresh.start()
        try:
            store.acknowledge_alert(alert.alert_id, by="qa", note="looking")
            deadline = time.monotonic() + 5
            while _value(registry, "acknowledged") != 1 and time.monotonic() < deadline:
                time.sleep(0.05)
            with urllib.request.urlopen(server.url, timeout=5) as response:  # noqa: S310
                body = response.read().decode()
        finally:
            refresh.stop()
            server.close()
    served = {
        sample.labels["status"]: sample.value
        for family in text_string_to_metric_families(body)
        for sample in family.samples
        if sample.name == ALERTS_BY_STATUS
    }
    assert served == {"open": 0, "acknowledged": 1, "resolved": 0}


@pytest.mark.integration
def test_the_sink_command_serves_alerts_by_status_on_loopback(
    kafka_stack: Any, sqlite_url: str, tmp_path: Path
) -> None:
    with EvidenceStore(sqlite_url) as store:
        store.record_alert(make_alert(), actor=ACTOR)
    port = free_port()
    command = [sys.executable, "-m", "postmarket", "evidence", "sink", "--url", sqlite_url]
    command += ["--bootstrap", kafka_stack.settings.kafka_bootstrap]
    command += ["--group", f"sink-{uuid.uuid4().hex[:8]}", "--metrics-port", str(port)]
    env = {**os.environ, "POSTMARKET_HOME": str(tmp_path)}  # no stack.json: no registration
    with (tmp_path / "sink.log").open("wb") as log:
        sink = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env)  # noqa: S603
    try:
        deadline, body = time.monotonic() + 60, ""
        while 'status="open"' not in body and time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(  # noqa: S310 - loopback
                    f"http://127.0.0.1:{port}/metrics", timeout=2
                ) as response:
                    body = response.read().decode()
            except OSError:
                time.sleep(0.5)
    finally:
        sink.send_signal(signal.SIGTERM)
        sink.wait(timeout=60)
    assert 'status="open"' in body, (tmp_path / "sink.log").read_text()
    assert "postmarket_evidence_sink_records_total" in body  # the sink's own progress
    assert sink.returncode == 0


def test_sink_progress_is_read_from_the_running_counts() -> None:
    from prometheus_client import CollectorRegistry

    from evidence.metrics import EvidenceMetrics
    from evidence.sink import SinkCounts

    counts = SinkCounts()
    registry = CollectorRegistry()
    EvidenceMetrics(registry, counts)
    counts.records, counts.outcomes_new, counts.duplicates = 12, 7, 3
    counts.invalid_by_topic["pms.outcomes.v1"] = 2
    assert registry.get_sample_value("postmarket_evidence_sink_records_total") == 12
    stored = "postmarket_evidence_sink_stored_total"
    assert registry.get_sample_value(stored, {"kind": "outcome"}) == 7
    assert registry.get_sample_value(stored, {"kind": "snapshot"}) == 0
    assert registry.get_sample_value("postmarket_evidence_sink_duplicates_total") == 3
    invalid = "postmarket_evidence_sink_invalid_total"
    assert registry.get_sample_value(invalid, {"topic": "pms.outcomes.v1"}) == 2
    counts.records += 1  # a later scrape sees the sink's progress
    assert registry.get_sample_value("postmarket_evidence_sink_records_total") == 13
