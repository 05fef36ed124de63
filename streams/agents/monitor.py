"""The stream agent: per (device, version, site, task), count predictions and outcomes,
run the detectors against the registered claims and the stream's own score reference,
and raise alerts."""

from __future__ import annotations

import logging
import math
from typing import Any

from postmarket import topics
from postmarket.contracts import (
    ContractViolation,
    Outcome,
    Problem,
    RegistryEntry,
    StreamPrediction,
    decode,
    encode,
    utc_now,
)
from postmarket.contracts.events import StreamKey
from streams.acquisition import acquisition_categories
from streams.agents.join import send_dead_letter
from streams.alerting import alert_for
from streams.app import app, consumed, duplicates, metrics, owned_partitions, settings
from streams.casefile import RecordPosition
from streams.channels import (
    alerts,
    registry,
    stream_inputs,
    stream_monitors,
    stream_prediction_monitors,
)
from streams.performance import (
    CELLS,
    ClaimedMetric,
    MonitorPolicy,
    Signal,
    StreamMonitor,
    claimed_performance,
)
from streams.retention import key_partition
from streams.routing import RoutedScore, StreamPredictions

POLICY = MonitorPolicy(arl0_cases=settings.detector_arl0_cases)
logger = logging.getLogger(__name__)


@app.agent(stream_inputs)
async def monitor_streams(stream: Any) -> None:
    """Apply each outcome and re-keyed prediction once to its stream's monitor."""
    async for event in stream.events():
        message = event.message
        position = RecordPosition(message.topic, message.partition, message.offset)
        consumed(message.topic).inc()
        try:
            item = _decode(message.topic, event.value or b"")
        except ContractViolation as violation:
            await send_dead_letter(position, event.value, violation)
            continue
        try:
            await _apply(item, message.topic)
        except Exception as error:
            # As in the join: a bug must not lose the record nor stop the agent.
            logger.exception("stream update failed on %s", position)
            problem = Problem("<worker>", f"{type(error).__name__} while monitoring")
            internal = ContractViolation("record", "internal_error", [problem])
            await send_dead_letter(position, event.value, internal)


StreamInput = Outcome | StreamPredictions | StreamPrediction
"""An outcome, or new predictions the join routed (one by one before streams.routing)."""


def _decode(topic: str, raw: bytes) -> StreamInput:
    if topic == topics.OUTCOMES:
        return decode(Outcome, raw)
    try:
        return decode(StreamPredictions, raw)
    except ContractViolation as violation:
        try:  # routed by a worker of the previous release, still on the topic
            return decode(StreamPrediction, raw)
        except ContractViolation:
            raise violation from None


changed: dict[str, StreamMonitor] = {}
"""Streams updated since their gauges were last set, with their latest monitor."""


live_monitors: dict[str, StreamMonitor] = {}
"""The monitors of the streams this worker owns, as objects: rebuilding each from its table
state on every event cost a third of the stream agent's time. The table stays the truth;
the cache is dropped on every rebalance and whenever applying an event fails."""


@app.on_partitions_revoked.connect
async def _forget_revoked(sender: Any, /, *args: Any, signal: Any, **kwargs: Any) -> None:
    live_monitors.clear()
    changed.clear()
    # Streams that moved to another worker must not keep their last values here, or a
    # sum across workers would count them twice; the refresh timer re-publishes the rest.
    for gauge in metrics.stream_gauges():
        gauge.clear()


@app.on_partitions_assigned.connect
async def _forget_assigned(sender: Any, /, *args: Any, signal: Any, **kwargs: Any) -> None:
    live_monitors.clear()


async def _apply(item: StreamInput, topic: str) -> None:
    stream_key = item.prediction.stream if isinstance(item, StreamPrediction) else item.stream
    key = stream_key.as_key()
    try:
        await _apply_to(key, stream_key, item, topic)
    except BaseException:
        live_monitors.pop(key, None)  # it may hold a change the table never got
        raise


async def _apply_to(key: str, stream_key: StreamKey, item: StreamInput, topic: str) -> None:
    monitor = _monitor(key, stream_key)
    applied = 0
    if isinstance(item, Outcome):
        if not monitor.already_applied("outcome", item.joined_at):
            applied += 1
            # Raised as each fires, from the monitor as it is then: the alert id stays the
            # same however the join batched the predictions before a crash and after it.
            await _raise(stream_key, monitor.observe(item), monitor)
    else:
        for entry in _routed_scores(item):
            if monitor.already_applied("prediction", entry.joined_at):
                duplicates(topic).inc()
                continue
            applied += 1
            signals = monitor.observe_score(
                entry.score, entry.joined_at, entry.decision, entry.categories
            )
            await _raise(stream_key, signals, monitor)
    if not applied:
        if isinstance(item, Outcome):
            duplicates(topic).inc()
        return
    if isinstance(item, Outcome):
        stream_monitors[key] = monitor.state_of("outcome")
    else:
        stream_prediction_monitors[key] = monitor.state_of("prediction")
    # Gauges are set in batches (publish_changed_streams): setting ~20 labelled gauges per
    # event cost a quarter of the stream agent's time in a profile.
    changed[key] = monitor


def _routed_scores(item: StreamPredictions | StreamPrediction) -> tuple[RoutedScore, ...]:
    if isinstance(item, StreamPredictions):
        return item.predictions
    prediction = item.prediction
    routed = RoutedScore(
        score=prediction.score,
        joined_at=item.joined_at,
        decision=prediction.decision,
        categories=acquisition_categories(prediction.acquisition),
    )
    return (routed,)


async def _raise(stream: StreamKey, signals: list[Signal], monitor: StreamMonitor) -> None:
    for signal in signals:
        alert = alert_for(stream, signal, monitor, utc_now())
        await alerts.send(key=stream.as_key().encode(), value=encode(alert))
        labels = metrics.stream_labels(stream)
        metrics.alerts.labels(*labels, alert.detector, alert.severity).inc()


_parsed_claims: dict[tuple[str, str], tuple[object, dict[ClaimedMetric, float]]] = {}


def _claims(stream: StreamKey) -> dict[ClaimedMetric, float]:
    """The registered claims of a stream's version and task, parsed once per value the
    global registry table holds (not once per event)."""
    version_key = f"{stream.device_id}|{stream.device_version}"
    raw = registry.get(version_key)
    cached = _parsed_claims.get((version_key, stream.task))
    if cached is not None and cached[0] is raw:
        return cached[1]
    entry = RegistryEntry.model_validate(raw, strict=False) if raw else None
    claims = claimed_performance(entry, stream.task)
    _parsed_claims[(version_key, stream.task)] = (raw, claims)
    return claims


def _monitor(key: str, stream: StreamKey) -> StreamMonitor:
    claims = _claims(stream)
    monitor = live_monitors.get(key)
    if monitor is None:
        labelled, label_free = stream_monitors.get(key), stream_prediction_monitors.get(key)
        if labelled is None and label_free is None:
            monitor = StreamMonitor.for_claims(claims, POLICY)
        else:
            monitor = StreamMonitor.from_states(labelled, label_free)
        live_monitors[key] = monitor
    monitor.adopt_claims(claims)
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
    metrics.stream_predictions.labels(*labels).set(monitor.predictions)
    for key, counts in monitor.strata.items():
        dimension, stratum = key.split("=", 1)
        for cell, count in zip(CELLS, counts, strict=True):
            metrics.stratum_confusion.labels(*labels, dimension, stratum, cell).set(count)
    completeness = monitor.followup_completeness
    if completeness is not None:
        metrics.followup_completeness.labels(*labels).set(completeness)
    for metric in ("sensitivity", "specificity"):
        estimate = monitor.estimate(metric)
        if estimate is not None:
            for bound, value in zip(("estimate", "lower", "upper"), estimate, strict=True):
                metrics.stream_performance.labels(*labels, metric, bound).set(value)
    for metric, claimed in monitor.claims.items():
        metrics.stream_claim.labels(*labels, metric).set(claimed)
    estimated = monitor.estimated_performance()
    if estimated is not None:
        for metric in ("sensitivity", "specificity", "ppv"):
            estimate = getattr(estimated, metric)
            bounds = {
                "estimate": estimate.estimate,
                "lower": estimate.lower,
                "upper": estimate.upper,
            }
            for bound, value in bounds.items():
                if math.isfinite(value):
                    metrics.estimated_performance.labels(*labels, metric, bound).set(value)
    agreement = monitor.reader_agreement()
    if agreement is not None:
        bounds = {"estimate": agreement.kappa, "lower": agreement.lower, "upper": agreement.upper}
        for bound, value in bounds.items():
            metrics.reader_agreement.labels(*labels, bound).set(value)
    for detector, (statistic, threshold) in monitor.statistics.items():
        metrics.detector_statistic.labels(*labels, detector).set(statistic)
        metrics.detector_threshold.labels(*labels, detector).set(threshold)


@app.timer(interval=2.0)
async def publish_changed_streams() -> None:
    """Set the gauges of the streams that changed in the last interval."""
    while changed:
        key, monitor = changed.popitem()
        publish_stream_metrics(StreamKey.from_key(key), monitor)


@app.timer(interval=10.0)
async def refresh_stream_metrics() -> None:
    """After a restart or rebalance, show the streams this worker now owns."""
    # An in-memory table keeps the keys of partitions this worker no longer owns.
    owned = owned_partitions(topics.OUTCOMES)
    keys = {*stream_monitors.keys(), *stream_prediction_monitors.keys()}
    for key in keys:
        if key_partition(key, settings.topic_partitions) not in owned:
            continue
        labelled, label_free = stream_monitors.get(key), stream_prediction_monitors.get(key)
        if labelled is None and label_free is None:
            continue
        monitor = live_monitors.get(key) or StreamMonitor.from_states(labelled, label_free)
        publish_stream_metrics(StreamKey.from_key(key), monitor)
