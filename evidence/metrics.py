"""What the evidence sink exports: alerts in the store by lifecycle status, and its progress.

The store, not the workers, knows whether an alert was acknowledged or resolved, so the
process that writes alerts into it (``postmarket evidence sink``) counts them on a timer
and serves the counts on its /metrics. A scrape reads the last snapshot and never touches
the database, so scrape frequency does not load the store. Each stream, detector and
severity seen gets a series for every status (0 where none), so "resolved" is a line at
zero rather than a missing series. Pure of SQLAlchemy: the store is passed in.

An alert is one persistent problem: its stream and detector's later signals while it is
unresolved are recurrences, counted apart (by stream, detector and the status of the alert
they recur), so a flood of signals shows as one alert with a rising recurrence count.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from evidence.lifecycle import AlertStatus
from postmarket.metrics import (
    ALERT_RECURRENCES,
    ALERTS_BY_STATUS,
    SINK_DUPLICATES,
    SINK_INVALID,
    SINK_RECORDS,
    SINK_STORED,
    STREAM_LABELS,
)

if TYPE_CHECKING:
    from evidence.sink import SinkCounts
    from evidence.store import AlertRecurrenceCount, AlertStatusCount, EvidenceStore

log = logging.getLogger(__name__)

ALERT_LABELS = (*STREAM_LABELS, "detector", "severity", "status")
RECURRENCE_LABELS = (*STREAM_LABELS, "detector", "status")
DEFAULT_REFRESH_S = 15.0

LabelValues = tuple[str, ...]


def alert_status_series(counts: Iterable[AlertStatusCount]) -> dict[LabelValues, int]:
    """Label values -> alerts, with every status present for each stream/detector/severity."""
    series: dict[LabelValues, int] = {}
    for count in counts:
        s = count.stream
        group = (s.device_id, s.device_version, s.site_id, s.task, count.detector, count.severity)
        for status in AlertStatus:
            series.setdefault((*group, status.value), 0)
        series[(*group, count.status.value)] += count.alerts
    return series


def recurrence_series(counts: Iterable[AlertRecurrenceCount]) -> dict[LabelValues, int]:
    """Label values -> recurrences, with every status present for each stream/detector."""
    series: dict[LabelValues, int] = {}
    for count in counts:
        s = count.stream
        group = (s.device_id, s.device_version, s.site_id, s.task, count.detector)
        for status in AlertStatus:
            series.setdefault((*group, status.value), 0)
        series[(*group, count.status.value)] += count.recurrences
    return series


class StoredAlerts(Collector):
    """Gauge families built from the last snapshot of the store's alert and recurrence counts."""

    def __init__(self) -> None:
        self._alerts: dict[LabelValues, int] = {}
        self._recurrences: dict[LabelValues, int] = {}

    def update(
        self, alerts: Iterable[AlertStatusCount], recurrences: Iterable[AlertRecurrenceCount]
    ) -> None:
        # Each replaced whole: a scrape sees one snapshot.
        self._alerts = alert_status_series(alerts)
        self._recurrences = recurrence_series(recurrences)

    def _families(self) -> tuple[GaugeMetricFamily, GaugeMetricFamily]:
        statuses = ", ".join(AlertStatus)
        return (
            GaugeMetricFamily(
                ALERTS_BY_STATUS,
                "Alerts in the evidence store (one per persistent problem) by stream, detector, "
                f"severity and lifecycle status ({statuses}).",
                labels=ALERT_LABELS,
            ),
            GaugeMetricFamily(
                ALERT_RECURRENCES,
                "Signals the evidence store kept as recurrences of an unresolved alert of the "
                "same stream and detector, by stream, detector and the lifecycle status of the "
                f"alert they recur ({statuses}).",
                labels=RECURRENCE_LABELS,
            ),
        )

    def describe(self) -> Iterator[GaugeMetricFamily]:
        yield from self._families()

    def collect(self) -> Iterator[GaugeMetricFamily]:
        alerts, recurrences = self._families()
        for labels, value in sorted(self._alerts.items()):
            alerts.add_metric(list(labels), value)
        for labels, value in sorted(self._recurrences.items()):
            recurrences.add_metric(list(labels), value)
        yield from (alerts, recurrences)


class SinkProgress(Collector):
    """Counters read from the running sink's :class:`SinkCounts` at scrape time."""

    def __init__(self, counts: SinkCounts) -> None:
        self.counts = counts

    def describe(self) -> Iterator[CounterMetricFamily]:
        yield from self._families(describe_only=True)

    def collect(self) -> Iterator[CounterMetricFamily]:
        yield from self._families(describe_only=False)

    def _families(self, *, describe_only: bool) -> Iterator[CounterMetricFamily]:
        counts = self.counts
        records = CounterMetricFamily(SINK_RECORDS, "Records the evidence sink consumed.")
        stored = CounterMetricFamily(
            SINK_STORED,
            "What the evidence sink stored new, by kind (outcome, prediction, alert: new or a "
            "recurrence; snapshot and fleet_alert from its periodic review).",
            labels=["kind"],
        )
        duplicates = CounterMetricFamily(
            SINK_DUPLICATES, "Events the store already held (redeliveries, re-emissions)."
        )
        invalid = CounterMetricFamily(
            SINK_INVALID, "Records the sink skipped as invalid, by topic.", labels=["topic"]
        )
        if not describe_only:
            records.add_metric([], counts.records)
            for kind, value in (
                ("outcome", counts.outcomes_new),
                ("prediction", counts.predictions_new),
                ("alert", counts.alerts_new),
                ("snapshot", counts.snapshots),
                ("fleet_alert", counts.fleet_alerts),
            ):
                stored.add_metric([kind], value)
            duplicates.add_metric([], counts.duplicates)
            for topic, value in sorted(dict(counts.invalid_by_topic).items()):
                invalid.add_metric([topic], value)
        yield from (records, stored, duplicates, invalid)


class EvidenceMetrics:
    """The sink's metrics in ``registry``; :meth:`refresh` reads the store once."""

    def __init__(self, registry: CollectorRegistry, counts: SinkCounts | None = None) -> None:
        self.stored_alerts = StoredAlerts()
        registry.register(self.stored_alerts)
        if counts is not None:
            registry.register(SinkProgress(counts))

    def refresh(self, store: EvidenceStore) -> None:
        self.stored_alerts.update(store.alert_status_counts(), store.alert_recurrence_counts())


class PeriodicRefresh:
    """Calls ``metrics.refresh(store)`` now and every ``interval_s`` until :meth:`stop`."""

    def __init__(
        self, metrics: EvidenceMetrics, store: EvidenceStore, interval_s: float = DEFAULT_REFRESH_S
    ) -> None:
        self.metrics = metrics
        self.store = store
        self.interval_s = interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="alert-metrics", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=self.interval_s + 5)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.metrics.refresh(self.store)
            except Exception:  # a database hiccup must not end the exporter
                log.exception("alert metrics not refreshed")
            self._stop.wait(self.interval_s)
