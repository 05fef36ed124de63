"""Sample names the dashboards and alert rules query, taken from the metric definitions.

Worker names come from :mod:`postmarket.metrics`, the evidence sink's from
:mod:`evidence.metrics`; collector names are read from
:class:`collectors.metrics.CollectorMetrics` itself (built in a throwaway registry), so a
renamed metric changes the dashboards on the next ``postmarket dashboards build`` instead
of silently leaving panels empty. Counters are queried by their ``_total`` sample.

``PROPOSED`` lists metrics that panels and rules already use but no process emits yet;
each moves into the kernel when its emitter is written.
"""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import CollectorRegistry
from prometheus_client.metrics import MetricWrapperBase

from collectors.metrics import CollectorMetrics
from evidence.metrics import EvidenceMetrics
from postmarket import metrics as worker
from postmarket import unregistered_change

STREAM_LABELS = worker.STREAM_LABELS


def sample_name(metric: MetricWrapperBase) -> str:
    """The name a query uses: the family name, plus ``_total`` for a counter."""
    family = next(iter(metric.describe()))
    return f"{family.name}_total" if family.type == "counter" else family.name


# --- worker (postmarket.metrics) --------------------------------------------------------------
EVENTS_CONSUMED = f"{worker.EVENTS_CONSUMED}_total"
EVENTS_DEADLETTERED = f"{worker.EVENTS_DEADLETTERED}_total"
EVENTS_DUPLICATE = f"{worker.EVENTS_DUPLICATE}_total"
EVENTS_UNAUTHENTIC = f"{worker.EVENTS_UNAUTHENTIC}_total"
PREDICTIONS = f"{worker.PREDICTIONS}_total"
OUTCOMES = f"{worker.OUTCOMES}_total"
CASES_AWAITING_TRUTH = worker.CASES_AWAITING_TRUTH
STREAM_CONFUSION = worker.STREAM_CONFUSION
STREAM_PERFORMANCE = worker.STREAM_PERFORMANCE
STREAM_ESTIMATED_PERFORMANCE = worker.STREAM_ESTIMATED_PERFORMANCE
STREAM_CLAIM = worker.STREAM_CLAIM
STREAM_EXPECTED_FALSE_ALARMS = worker.STREAM_EXPECTED_FALSE_ALARMS
STREAM_ACCEPTABLE_LEVEL = worker.STREAM_ACCEPTABLE_LEVEL
FLEET_FALSE_ALARM_BUDGET = worker.FLEET_FALSE_ALARM_BUDGET
DETECTOR_STATISTIC = worker.DETECTOR_STATISTIC
DETECTOR_THRESHOLD = worker.DETECTOR_THRESHOLD
ALERTS = f"{worker.ALERTS}_total"
STREAM_REBASELINES = f"{worker.STREAM_REBASELINES}_total"
METRIC_STREAMS_OVERFLOW = f"{worker.METRIC_STREAMS_OVERFLOW}_total"
CONSUMER_LAG = worker.CONSUMER_LAG
OUTCOME_LATENCY_BUCKET = f"{worker.OUTCOME_LATENCY}_bucket"

# --- evidence sink (evidence.metrics) ----------------------------------------------
ALERTS_BY_STATUS = worker.ALERTS_BY_STATUS
ALERT_RECURRENCES = worker.ALERT_RECURRENCES

# --- collector (collectors.metrics) -----------------------------------------------------------
_collector = CollectorMetrics.create(CollectorRegistry())
COLLECTOR_OUTBOX_DEPTH = sample_name(_collector.outbox_depth)
COLLECTOR_OUTBOX_BYTES = sample_name(_collector.outbox_bytes)
COLLECTOR_OUTBOX_LIMIT_BYTES = sample_name(_collector.outbox_limit_bytes)
COLLECTOR_OUTBOX_NEAR_LIMIT = sample_name(_collector.outbox_near_limit)
COLLECTOR_EVENTS_SENT = sample_name(_collector.events_sent)
COLLECTOR_SEND_FAILURES = sample_name(_collector.send_failures)
COLLECTOR_LAST_SUCCESSFUL_SEND = sample_name(_collector.last_successful_send)
COLLECTOR_FILES_REJECTED = sample_name(_collector.files_rejected)
COLLECTOR_BURNED_IN_ANNOTATION = sample_name(_collector.burned_in_annotation)
COLLECTOR_INPUTS_ACCEPTED = sample_name(_collector.inputs_accepted)
COLLECTOR_EVENTS_QUEUED = sample_name(_collector.events_queued)
COLLECTOR_CASES_WAITING = sample_name(_collector.cases_waiting)
COLLECTOR_WAITING_EXPIRED = sample_name(_collector.waiting_expired)
COLLECTOR_ASSOCIATIONS_REJECTED = sample_name(_collector.associations_rejected)
COLLECTOR_MLLP_MESSAGES = sample_name(_collector.mllp_messages)
COLLECTOR_MLLP_CONNECTIONS_REFUSED = sample_name(_collector.mllp_connections_refused)
COLLECTOR_MLLP_CONNECTIONS_CLOSED = sample_name(_collector.mllp_connections_closed)
COLLECTOR_STOW_REQUESTS_REFUSED = sample_name(_collector.stow_requests_refused)

UNREGISTERED_CHANGE_DETECTOR = unregistered_change.DETECTOR
"""The ``detector`` label of the alert a version running without its registration raises."""


@dataclass(frozen=True)
class ProposedMetric:
    """A metric the dashboards need and the pipeline does not emit yet."""

    name: str
    type: str
    labels: tuple[str, ...]
    meaning: str


PROPOSED: tuple[ProposedMetric, ...] = ()


def emitted_names() -> frozenset[str]:
    """Every sample name a worker, collector or evidence sink exposes today."""
    registry = CollectorRegistry()
    worker.WorkerMetrics.create(registry)
    CollectorMetrics.create(registry)
    EvidenceMetrics(registry)
    return frozenset(
        sample.name
        for family in registry.collect()
        for sample in family.samples
        if not sample.name.endswith("_created")
    ) | frozenset(
        f"{family.name}_total" if family.type == "counter" else family.name
        for family in registry.collect()
    )


def proposed_names() -> frozenset[str]:
    return frozenset(metric.name for metric in PROPOSED)
