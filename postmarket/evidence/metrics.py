"""What the evidence sink exports: alerts in the store by lifecycle status, and its progress.

The store, not the workers, knows whether an alert was acknowledged or resolved, so the
process that writes alerts into it (``postmarket evidence sink``) counts them on a timer
and serves the counts on its /metrics. A scrape reads the last snapshot and never touches
the database, so scrape frequency does not load the store. Each stream, detector and
severity seen gets a series for every status (0 where none), so "resolved" is a line at
zero rather than a missing series. Pure of SQLAlchemy: the store is passed in.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from postmarket.evidence.lifecycle import AlertStatus
from postmarket.metrics import (
    ALERTS_BY_STATUS,
    SINK_DUPLICATES,
    SINK_INVALID,
    SINK_RECORDS,
    SINK_STORED,
    STREAM_LABELS,
)

if TYPE_CHECKING:
    from postmarket.evidence.sink import SinkCounts
    from postmarket.evidence.store import AlertStatusCount, EvidenceStore

log = logging.getLogger(__name__)

ALERT_LABELS = (*STREAM_LABELS, "detector", "severity", "status")
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


class AlertsByStatus(Collector):
    """A gauge family built from the last snapshot of the store's alert counts."""

    def __init__(self) -> None:
        self._series: dict[LabelValues, int] = {}

    def update(self, counts: Iterable[AlertStatusCount]) -> None:
        self._series = alert_status_series(counts)  # replaced whole: scrapes see one snapshot

    def _family(self) -> GaugeMetricFamily:
        return GaugeMetricFamily(
            ALERTS_BY_STATUS,
            "Alerts in the evidence store by stream, detector, severity and lifecycle status "
            f"({', '.join(AlertStatus)}).",
            labels=ALERT_LABELS,
        )

    def describe(self) -> Iterator[GaugeMetricFamily]:
        yield self._family()

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = self._family()
        for labels, alerts in sorted(self._series.items()):
            family.add_metric(list(labels), alerts)
        yield family


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
            "What the evidence sink stored new, by kind (outcome, prediction, alert; snapshot "
            "and fleet_alert from its periodic review).",
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
        self.alerts_by_status = AlertsByStatus()
        registry.register(self.alerts_by_status)
        if counts is not None:
            registry.register(SinkProgress(counts))

    def refresh(self, store: EvidenceStore) -> None:
        self.alerts_by_status.update(store.alert_status_counts())


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
