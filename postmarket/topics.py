"""The pipeline's Kafka topics, declared once for the collectors, the workers and the stack.

Topics are created explicitly (the broker runs with ``auto.create.topics.enable=false``)
because Faust refuses a topic whose partition count differs from what the app declares.
Predictions and follow-ups share a partition count so the join by case pseudonym is local.
"""

from __future__ import annotations

from dataclasses import dataclass, field

PREDICTIONS = "pms.predictions.v1"
FOLLOWUPS = "pms.followups.v1"
INPUTS = "pms.inputs.v2"
"""Signed batches of one site's predictions and follow-ups, keyed by site (v2 collectors)."""
OUTCOMES = "pms.outcomes.v1"
ALERTS = "pms.alerts.v1"
DEADLETTER = "pms.deadletter.v1"
REGISTRY = "pms.registry.v1"
SITE_KEYS = "pms.sitekeys.v1"
REBASELINES = "pms.rebaselines.v1"
VERSION_TALLIES = "pms.version-tallies.v1"


@dataclass(frozen=True)
class TopicSpec:
    """One topic as it must exist on the broker."""

    name: str
    partitions: int
    configs: dict[str, str] = field(default_factory=dict)


DECISION_LOG = {"cleanup.policy": "delete", "retention.ms": "-1"}
"""A topic whose every record is a decision someone took: neither compacted nor expired."""


def pipeline_topics(partitions: int) -> list[TopicSpec]:
    """Every topic the pipeline reads or writes, with ``partitions`` for the keyed streams."""
    return [
        TopicSpec(PREDICTIONS, partitions),
        TopicSpec(FOLLOWUPS, partitions),
        TopicSpec(INPUTS, partitions),
        TopicSpec(OUTCOMES, partitions),
        TopicSpec(ALERTS, partitions),
        TopicSpec(DEADLETTER, partitions),
        # The registry is the latest state per device/version: compaction keeps exactly that.
        TopicSpec(REGISTRY, 1, {"cleanup.policy": "compact"}),
        # Each site's public signing keys, latest registration per site|key_id.
        TopicSpec(SITE_KEYS, 1, {"cleanup.policy": "compact"}),
        # Keyed by stream. A log of decisions, kept whole: each applies at its own position
        # (a review after a re-baselining of the same stream, two re-baselinings), so
        # compaction by stream would drop all but a stream's last one from any re-read.
        TopicSpec(REBASELINES, partitions, DECISION_LOG),
        # Each site stream's cumulative counts, keyed by device|version|task for the pooled
        # stage; not compacted: the sites of a version share a key.
        TopicSpec(VERSION_TALLIES, partitions),
    ]
