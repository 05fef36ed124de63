"""Metric names and label sets shared by the workers, the collectors and the dashboards.

Every metric takes a ``registry`` so tests use a fresh ``CollectorRegistry`` and read
values with ``get_sample_value``; names carry the ``postmarket_`` prefix, units, and
``_total`` on counters. Per-stream labels go through :class:`StreamLabelGuard`, so a
flood of invented device versions or sites cannot blow up Prometheus' series count.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

PREFIX = "postmarket"
STREAM_LABELS = ("device_id", "device_version", "site_id", "task")
OVERFLOW = "_overflow"

EVENTS_CONSUMED = f"{PREFIX}_events_consumed"
EVENTS_DEADLETTERED = f"{PREFIX}_events_deadlettered"
EVENTS_DUPLICATE = f"{PREFIX}_events_duplicate"
EVENTS_DUPLICATE_AFTER_RETENTION = f"{PREFIX}_events_duplicate_after_retention"
EVENTS_UNAUTHENTIC = f"{PREFIX}_events_unauthentic"
PREDICTIONS = f"{PREFIX}_predictions"
OUTCOMES = f"{PREFIX}_outcomes"
PREDICTIONS_EXPIRED = f"{PREFIX}_predictions_expired"
FOLLOWUPS_UNMATCHED = f"{PREFIX}_followups_unmatched"
CASES_AWAITING_TRUTH = f"{PREFIX}_cases_awaiting_truth"
STREAM_CONFUSION = f"{PREFIX}_stream_confusion_cases"
STREAM_PREDICTIONS = f"{PREFIX}_stream_predictions"
FOLLOWUP_COMPLETENESS = f"{PREFIX}_stream_followup_completeness_ratio"
STRATUM_CONFUSION = f"{PREFIX}_stratum_confusion_cases"
SITE_LAST_EVENT = f"{PREFIX}_site_last_event_received_timestamp_seconds"
VERSION_REGISTRATION = f"{PREFIX}_version_registration_status"
REGISTRATION_STATUSES = ("registered", "pending", "unregistered", "withdrawn")
STREAM_PERFORMANCE = f"{PREFIX}_stream_performance_ratio"
STREAM_ESTIMATED_PERFORMANCE = f"{PREFIX}_stream_estimated_performance_ratio"
STREAM_CLAIM = f"{PREFIX}_stream_claim_ratio"
STREAM_ACCEPTABLE_LEVEL = f"{PREFIX}_stream_acceptable_level_ratio"
STREAM_UNMONITORED = f"{PREFIX}_stream_unmonitored"
STREAM_EXPECTED_FALSE_ALARMS = f"{PREFIX}_stream_expected_false_alarms_per_year"
FLEET_FALSE_ALARM_BUDGET = f"{PREFIX}_fleet_false_alarm_budget_per_year"
POOLED_EXPECTED_FALSE_ALARMS = f"{PREFIX}_pooled_expected_false_alarms_per_year"
POOLED_FALSE_ALARM_BUDGET = f"{PREFIX}_pooled_false_alarm_budget_per_year"
POOLED_CONFUSION = f"{PREFIX}_pooled_confusion"
POOLED_SITES = f"{PREFIX}_pooled_sites"
POOLED_LABELS = ("device_id", "device_version", "task")
"""A pooled per-version stage's group: one task of one version, all its sites."""
READER_AGREEMENT = f"{PREFIX}_stream_reader_agreement_kappa"
DETECTOR_STATISTIC = f"{PREFIX}_detector_statistic"
DETECTOR_THRESHOLD = f"{PREFIX}_detector_threshold"
ALERTS = f"{PREFIX}_alerts"
STREAM_REBASELINES = f"{PREFIX}_stream_rebaselines"
METRIC_STREAMS_OVERFLOW = f"{PREFIX}_metric_streams_overflow"
CONSUMER_LAG = f"{PREFIX}_consumer_lag_records"
OUTCOME_LATENCY = f"{PREFIX}_outcome_latency_seconds"
ALERTS_BY_STATUS = f"{PREFIX}_alerts_by_status"
ALERT_RECURRENCES = f"{PREFIX}_alert_recurrences"
SINK_RECORDS = f"{PREFIX}_evidence_sink_records"
SINK_STORED = f"{PREFIX}_evidence_sink_stored"
SINK_DUPLICATES = f"{PREFIX}_evidence_sink_duplicates"
SINK_INVALID = f"{PREFIX}_evidence_sink_invalid"
"""Exported by the evidence sink (:mod:`evidence.metrics`), not by the workers."""

OUTCOME_LATENCY_BUCKETS = (
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
    300.0,
    900.0,
    3600.0,
)
"""Sub-second when the pipeline keeps up; minutes to an hour when it is catching up on lag."""


class HasStreamKey(Protocol):
    @property
    def device_id(self) -> str: ...
    @property
    def device_version(self) -> str: ...
    @property
    def site_id(self) -> str: ...
    @property
    def task(self) -> str: ...


@dataclass
class StreamLabelGuard:
    """Admits up to ``limit`` distinct streams as label sets; later ones share one set."""

    limit: int
    overflowed: Counter
    _admitted: set[tuple[str, str, str, str]] = field(default_factory=set)

    def __call__(self, stream: HasStreamKey) -> tuple[str, str, str, str]:
        labels = (stream.device_id, stream.device_version, stream.site_id, stream.task)
        if labels in self._admitted:
            return labels
        if len(self._admitted) < self.limit:
            self._admitted.add(labels)
            return labels
        self.overflowed.inc()
        return (OVERFLOW, OVERFLOW, OVERFLOW, OVERFLOW)


@dataclass(frozen=True)
class WorkerMetrics:
    """What a stream worker counts; one instance per process (or per test registry)."""

    events_consumed: Counter
    events_deadlettered: Counter
    events_duplicate: Counter
    events_duplicate_after_retention: Counter
    events_unauthentic: Counter
    predictions: Counter
    outcomes: Counter
    predictions_expired: Counter
    followups_unmatched: Counter
    cases_awaiting_truth: Gauge
    stream_confusion: Gauge
    stream_predictions: Gauge
    followup_completeness: Gauge
    stratum_confusion: Gauge
    site_last_event: Gauge
    version_registration: Gauge
    stream_performance: Gauge
    estimated_performance: Gauge
    stream_claim: Gauge
    stream_acceptable_level: Gauge
    stream_unmonitored: Gauge
    stream_expected_false_alarms: Gauge
    fleet_false_alarm_budget: Gauge
    pooled_expected_false_alarms: Gauge
    pooled_false_alarm_budget: Gauge
    pooled_confusion: Gauge
    pooled_sites: Gauge
    reader_agreement: Gauge
    detector_statistic: Gauge
    detector_threshold: Gauge
    alerts: Counter
    stream_rebaselines: Counter
    consumer_lag: Gauge
    outcome_latency: Histogram
    stream_labels: StreamLabelGuard

    def pooled_gauges(self) -> tuple[Gauge, ...]:
        """The gauges of the pooled groups (owned by one worker at a time)."""
        return (self.pooled_expected_false_alarms, self.pooled_confusion, self.pooled_sites)

    def stream_gauges(self) -> tuple[Gauge, ...]:
        """The gauges that describe one stream's state (owned by one worker at a time)."""
        return (
            self.stream_confusion,
            self.stream_predictions,
            self.followup_completeness,
            self.stratum_confusion,
            self.stream_performance,
            self.estimated_performance,
            self.stream_claim,
            self.stream_acceptable_level,
            self.stream_unmonitored,
            self.stream_expected_false_alarms,
            self.reader_agreement,
            self.detector_statistic,
            self.detector_threshold,
        )

    def forget_detectors(self, labels: tuple[str, ...], detectors: tuple[str, ...]) -> None:
        """Drop a stream's statistic and threshold gauges of ``detectors`` (gone from its
        monitor), so they do not keep showing their last values."""
        for detector in detectors:
            self.detector_statistic.remove(*labels, detector)
            self.detector_threshold.remove(*labels, detector)

    @classmethod
    def create(cls, registry: CollectorRegistry, max_streams: int = 5000) -> WorkerMetrics:
        stream = list(STREAM_LABELS)
        return cls(
            events_consumed=Counter(
                EVENTS_CONSUMED,
                "Records read from an input topic, valid or not.",
                ["topic"],
                registry=registry,
            ),
            events_deadlettered=Counter(
                EVENTS_DEADLETTERED,
                "Records sent to the dead-letter topic, by source topic and reason code.",
                ["topic", "reason"],
                registry=registry,
            ),
            events_duplicate=Counter(
                EVENTS_DUPLICATE,
                "Valid records ignored because their event_id was already processed.",
                ["topic"],
                registry=registry,
            ),
            events_duplicate_after_retention=Counter(
                EVENTS_DUPLICATE_AFTER_RETENTION,
                "Of the duplicates, those of a case dropped past retention: a collector "
                "resending months late, or the same history replayed twice.",
                ["topic"],
                registry=registry,
            ),
            events_unauthentic=Counter(
                EVENTS_UNAUTHENTIC,
                "Records refused as not provably from the site they claim, by claimed site "
                "(only sites with registered keys, else 'unknown') and failure.",
                ["site_id", "reason"],
                registry=registry,
            ),
            predictions=Counter(
                PREDICTIONS,
                "New predictions accepted into the join, by stream.",
                stream,
                registry=registry,
            ),
            outcomes=Counter(
                OUTCOMES,
                "Predictions joined with their final ground truth, by stream and correctness.",
                [*stream, "decision", "label"],
                registry=registry,
            ),
            predictions_expired=Counter(
                PREDICTIONS_EXPIRED,
                "Predictions dropped from the join after the retention period without truth.",
                stream,
                registry=registry,
            ),
            followups_unmatched=Counter(
                FOLLOWUPS_UNMATCHED,
                "Follow-ups dropped after the retention period without any prediction.",
                registry=registry,
            ),
            cases_awaiting_truth=Gauge(
                CASES_AWAITING_TRUTH,
                "Predictions held in this worker's join table without final ground truth.",
                registry=registry,
            ),
            stream_confusion=Gauge(
                STREAM_CONFUSION,
                "Outcomes of a stream by confusion-matrix cell (tp, fn, tn, fp), from its state.",
                [*stream, "cell"],
                registry=registry,
            ),
            stream_predictions=Gauge(
                STREAM_PREDICTIONS,
                "Distinct predictions of a stream, from its state (exact across restarts).",
                stream,
                registry=registry,
            ),
            followup_completeness=Gauge(
                FOLLOWUP_COMPLETENESS,
                "Share of a stream's predictions joined with final truth (verification bias).",
                stream,
                registry=registry,
            ),
            stratum_confusion=Gauge(
                STRATUM_CONFUSION,
                "Outcomes of a stream per acquisition stratum (dimension: slice_thickness_band, "
                "manufacturer or model) and confusion cell; sum over site_id to pool sites.",
                [*stream, "dimension", "stratum", "cell"],
                registry=registry,
            ),
            site_last_event=Gauge(
                SITE_LAST_EVENT,
                "Unix time this worker last accepted a valid event from a site (its pulse).",
                ["site_id"],
                registry=registry,
            ),
            version_registration=Gauge(
                VERSION_REGISTRATION,
                "1 for the registration status the registry topic holds for a version, else 0.",
                ["device_id", "device_version", "status"],
                registry=registry,
            ),
            reader_agreement=Gauge(
                READER_AGREEMENT,
                "Cohen's kappa of the two blinded readers on a stream's cases, with its 95% "
                "bounds (bound: estimate, lower, upper); label quality behind the outcomes.",
                [*stream, "bound"],
                registry=registry,
            ),
            stream_performance=Gauge(
                STREAM_PERFORMANCE,
                "Observed sensitivity or specificity of a stream, with its 95% Wilson bounds.",
                [*stream, "metric", "bound"],
                registry=registry,
            ),
            estimated_performance=Gauge(
                STREAM_ESTIMATED_PERFORMANCE,
                "Label-free estimate of a stream's sensitivity, specificity or PPV over its last "
                "full window of predictions, from their calibrated scores, with 95% bounds.",
                [*stream, "metric", "bound"],
                registry=registry,
            ),
            stream_claim=Gauge(
                STREAM_CLAIM,
                "Registered claim of the stream's device version and task.",
                [*stream, "metric"],
                registry=registry,
            ),
            stream_acceptable_level=Gauge(
                STREAM_ACCEPTABLE_LEVEL,
                "The level a stream's labelled charts treat as in control: their false-alarm "
                "rate holds at any true performance at or above it (by default the claim's "
                "lower 95% confidence bound).",
                [*stream, "metric"],
                registry=registry,
            ),
            stream_unmonitored=Gauge(
                STREAM_UNMONITORED,
                "1 for a claimed metric of a stream that no chart can monitor (its "
                "unmonitored_stream alert says why).",
                [*stream, "metric"],
                registry=registry,
            ),
            stream_expected_false_alarms=Gauge(
                STREAM_EXPECTED_FALSE_ALARMS,
                "False alarms a year a stream's tests are designed to raise at most while its "
                "site performs at or above the acceptable levels with the plan's volume: its "
                "tests' parts of the fleet budget.",
                stream,
                registry=registry,
            ),
            fleet_false_alarm_budget=Gauge(
                FLEET_FALSE_ALARM_BUDGET,
                "The surveillance plan's budget: false alarms a year the whole fleet may raise "
                "in control, shared by every test on every stream.",
                registry=registry,
            ),
            pooled_expected_false_alarms=Gauge(
                POOLED_EXPECTED_FALSE_ALARMS,
                "False alarms a year a version's pooled tests (across its sites) are designed to "
                "raise at most while every site performs at or above the acceptable levels: "
                "their parts of the fleet budget.",
                list(POOLED_LABELS),
                registry=registry,
            ),
            pooled_false_alarm_budget=Gauge(
                POOLED_FALSE_ALARM_BUDGET,
                "The part of the fleet budget the plan gives the pooled per-version stage: "
                "false alarms a year its tests may raise in control, across every version.",
                registry=registry,
            ),
            pooled_confusion=Gauge(
                POOLED_CONFUSION,
                "Confusion counts of a version's task summed over its sites' latest tallies.",
                [*POOLED_LABELS, "cell"],
                registry=registry,
            ),
            pooled_sites=Gauge(
                POOLED_SITES,
                "Sites whose counts a version's pooled tests include.",
                list(POOLED_LABELS),
                registry=registry,
            ),
            detector_statistic=Gauge(
                DETECTOR_STATISTIC,
                "A labelled detector's statistic on a stream (compare with its threshold).",
                [*stream, "detector"],
                registry=registry,
            ),
            detector_threshold=Gauge(
                DETECTOR_THRESHOLD,
                "The threshold at which a stream's detector signals.",
                [*stream, "detector"],
                registry=registry,
            ),
            alerts=Counter(
                ALERTS,
                "Alerts raised, by stream, detector and severity.",
                [*stream, "detector", "severity"],
                registry=registry,
            ),
            stream_rebaselines=Counter(
                STREAM_REBASELINES,
                "Re-baselining decisions applied to a stream: its score and acquisition "
                "references restarted from the predictions that follow.",
                stream,
                registry=registry,
            ),
            consumer_lag=Gauge(
                CONSUMER_LAG,
                "Records of an input partition this worker owns that its consumer group has "
                "not committed yet (end offset - committed offset).",
                ["group", "topic", "partition"],
                registry=registry,
            ),
            outcome_latency=Histogram(
                OUTCOME_LATENCY,
                "Seconds from the Kafka timestamp of the record that completed a join (when the "
                "collector sent it) to the outcome being emitted; excludes the wait for truth.",
                buckets=OUTCOME_LATENCY_BUCKETS,
                registry=registry,
            ),
            stream_labels=StreamLabelGuard(
                max_streams,
                Counter(
                    METRIC_STREAMS_OVERFLOW,
                    "Stream label sets refused because the per-process stream limit was reached.",
                    registry=registry,
                ),
            ),
        )


class Children:
    """The labelled children of one metric, each looked up once.

    ``labels()`` costs tens of microseconds, several times per event; only for metrics whose
    children are never removed (counters, and gauges no code clears).
    """

    def __init__(self, metric: Any) -> None:
        self._metric = metric
        self._children: dict[tuple[str, ...], Any] = {}

    def __call__(self, *labels: str) -> Any:
        child = self._children.get(labels)
        if child is None:
            child = self._children[labels] = self._metric.labels(*labels)
        return child
