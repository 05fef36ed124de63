"""A stream's gauges, set from its monitor's state (exact, unlike per-process counters)."""

from __future__ import annotations

import math

from postmarket.contracts.events import StreamKey
from postmarket.metrics import WorkerMetrics
from streams.stream_monitor import CELLS, StreamMonitor


def publish_stream_metrics(
    metrics: WorkerMetrics, stream: StreamKey, monitor: StreamMonitor
) -> None:
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
    for metric, level in monitor.levels.items():
        metrics.stream_acceptable_level.labels(*labels, metric).set(level.acceptable)
    for metric in monitor.unmonitored:
        metrics.stream_unmonitored.labels(*labels, metric).set(1)
    expected = monitor.expected_false_alarms_per_year()
    if expected is not None:
        metrics.stream_expected_false_alarms.labels(*labels).set(expected)
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
