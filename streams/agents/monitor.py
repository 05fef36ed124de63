"""The stream agent: per (device, version, site, task), count outcomes, run the labelled
detectors against the registered claims, and raise alerts."""

from __future__ import annotations

from typing import Any

from postmarket.contracts import ContractViolation, Outcome, RegistryEntry, decode, encode, utc_now
from postmarket.contracts.events import StreamKey
from streams.agents.join import send_dead_letter
from streams.alerting import alert_for
from streams.app import app, metrics, settings
from streams.casefile import RecordPosition
from streams.channels import alerts, outcomes, registry, stream_monitors
from streams.performance import MonitorPolicy, StreamMonitor, claimed_performance

POLICY = MonitorPolicy(arl0_cases=settings.detector_arl0_cases)


@app.agent(outcomes)
async def monitor_streams(stream: Any) -> None:
    """Apply each outcome once to its stream's monitor; emit the alerts it raises."""
    async for event in stream.events():
        message = event.message
        position = RecordPosition(message.topic, message.partition, message.offset)
        metrics.events_consumed.labels(message.topic).inc()
        try:
            outcome = decode(Outcome, event.value or b"")
        except ContractViolation as violation:
            await send_dead_letter(position, event.value, violation)
            continue
        key = outcome.stream.as_key()
        monitor = _monitor(key, outcome.stream)
        if monitor.already_applied(outcome):
            metrics.events_duplicate.labels(message.topic).inc()
            continue
        signals = monitor.observe(outcome)
        stream_monitors[key] = monitor.to_state()
        publish_stream_metrics(outcome.stream, monitor)
        for signal in signals:
            alert = alert_for(outcome.stream, signal, monitor, utc_now())
            await alerts.send(key=key.encode(), value=encode(alert))
            labels = metrics.stream_labels(outcome.stream)
            metrics.alerts.labels(*labels, alert.detector, alert.severity).inc()


def _monitor(key: str, stream: StreamKey) -> StreamMonitor:
    entry_state = registry.get(f"{stream.device_id}|{stream.device_version}")
    entry = RegistryEntry.model_validate(entry_state, strict=False) if entry_state else None
    claims = claimed_performance(entry, stream.task)
    state = stream_monitors.get(key)
    if state is None:
        return StreamMonitor.for_claims(claims, POLICY)
    monitor = StreamMonitor.from_state(state)
    monitor.adopt_claims(claims, POLICY)
    return monitor


def publish_stream_metrics(stream: StreamKey, monitor: StreamMonitor) -> None:
    """Set the stream's gauges from its monitor state (exact, unlike per-process counters)."""
    labels = metrics.stream_labels(stream)
    cells = {
        "tp": monitor.true_positives,
        "fn": monitor.false_negatives,
        "tn": monitor.true_negatives,
        "fp": monitor.false_positives,
    }
    for cell, count in cells.items():
        metrics.stream_confusion.labels(*labels, cell).set(count)
    for metric in ("sensitivity", "specificity"):
        estimate = monitor.estimate(metric)
        if estimate is not None:
            for bound, value in zip(("estimate", "lower", "upper"), estimate, strict=True):
                metrics.stream_performance.labels(*labels, metric, bound).set(value)
    for metric, claimed in monitor.claims.items():
        metrics.stream_claim.labels(*labels, metric).set(claimed)
    for detector, (statistic, threshold) in monitor.statistics.items():
        metrics.detector_statistic.labels(*labels, detector).set(statistic)
        metrics.detector_threshold.labels(*labels, detector).set(threshold)


@app.timer(interval=15.0)
async def refresh_stream_metrics() -> None:
    """After a restart or rebalance, show the streams this worker now owns."""
    for key, state in list(stream_monitors.items()):
        if state is not None:
            stream = StreamKey.from_key(key)
            publish_stream_metrics(stream, StreamMonitor.from_state(state))
