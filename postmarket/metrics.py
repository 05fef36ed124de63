"""Metric names and label sets shared by the workers, the collectors and the dashboards.

Every metric takes a ``registry`` so tests use a fresh ``CollectorRegistry`` and read
values with ``get_sample_value``; names carry the ``postmarket_`` prefix, units, and
``_total`` on counters.
"""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge

PREFIX = "postmarket"
STREAM_LABELS = ("device_id", "device_version", "site_id", "task")

EVENTS_CONSUMED = f"{PREFIX}_events_consumed"
EVENTS_DEADLETTERED = f"{PREFIX}_events_deadlettered"
EVENTS_DUPLICATE = f"{PREFIX}_events_duplicate"
OUTCOMES = f"{PREFIX}_outcomes"
CASES_AWAITING_TRUTH = f"{PREFIX}_cases_awaiting_truth"


@dataclass(frozen=True)
class WorkerMetrics:
    """What a stream worker counts; one instance per process (or per test registry)."""

    events_consumed: Counter
    events_deadlettered: Counter
    events_duplicate: Counter
    outcomes: Counter
    cases_awaiting_truth: Gauge

    @classmethod
    def create(cls, registry: CollectorRegistry) -> WorkerMetrics:
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
            outcomes=Counter(
                OUTCOMES,
                "Predictions joined with their final ground truth, by stream and correctness.",
                [*STREAM_LABELS, "decision", "label"],
                registry=registry,
            ),
            cases_awaiting_truth=Gauge(
                CASES_AWAITING_TRUTH,
                "Predictions held in this worker's join table without final ground truth.",
                registry=registry,
            ),
        )
