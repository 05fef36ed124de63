"""The Faust application of the central workers: one per process, configured from Settings.

Tables use the in-memory store and are changelogged to Kafka, so a restarted or
rebalanced worker rebuilds a partition's state from its changelog.
"""

from __future__ import annotations

from typing import Any

import faust
from prometheus_client import CollectorRegistry

from postmarket.config import Settings
from postmarket.metrics import Children, WorkerMetrics
from postmarket.topics import TopicSpec
from streams.transport import Transport

PRODUCER_MAX_BATCH_BYTES = 256 * 1024
"""Bytes of one partition's batch in the producer (Faust's default: 16 KiB). The producer
has one request in flight per broker; once a partition's batch is full, the next record for
it waits until that request is answered. A flush writes a changelog record (about 1 KB) per
case changed, so 16 KiB batches filled mid-flush and the join waited on the broker: a
sixth of its time idle in a profile, and more, smaller produce requests. 256 KiB stays well
under the broker's and topics' default record-batch limit (``message.max.bytes``, 1 MiB)."""
CONSUMER_MAX_FETCH_BYTES = 8 * 1024 * 1024
"""Bytes one fetch may bring of one partition (Faust's default: 1 MiB). A signed batch of
500 events is about 300 KB, so 1 MiB was three records, a third of a second of the join's
work, before the next fetch came back from the consumer's thread: the worker sat idle
between fetches (on a replay's batches 40 % of its time; with 8 MiB it keeps a core busy,
and took 7,200-8,900 predictions/s instead of 5,100-5,200, bench/profile_worker.py and a
replay-shaped run, alternating). The price is up to 8 MiB of fetched records buffered per
partition the worker reads."""


class SurveillanceApp(faust.App):
    """Faust's app on :class:`streams.transport.Transport`: offsets are committed only past
    records an agent handled."""

    def _new_transport(self) -> Any:
        return Transport(self.conf.broker_consumer, self)


def create_app(settings: Settings) -> faust.App:
    """A Faust app bound to the configured broker; nothing connects until it starts."""
    return SurveillanceApp(
        settings.worker_id,
        broker=f"kafka://{settings.kafka_bootstrap}",
        # Faust's default is "<id>-data" in the current directory.
        datadir=settings.worker_data_path,
        # None on a plaintext broker; SCRAM over TLS with the worker principal otherwise.
        broker_credentials=settings.kafka_security().faust_credentials(),
        store="memory://",
        topic_partitions=settings.topic_partitions,
        topic_replication_factor=1,
        producer_acks=-1,
        producer_max_batch_size=PRODUCER_MAX_BATCH_BYTES,
        consumer_max_fetch_size=CONSUMER_MAX_FETCH_BYTES,
        # Faust's default of no producer linger measured fastest here: a 10 ms linger or
        # 500-record polls left the worker waiting on Kafka (bench A/B, on v1 records).
        consumer_auto_offset_reset="earliest",
        # A crashed worker's partitions move after this long; heartbeats go 10x as often.
        broker_session_timeout=settings.worker_session_timeout_s,
        broker_heartbeat_interval=settings.worker_session_timeout_s / 10,
        web_enabled=False,
        # The dead-letter topic is the record of bad input; an agent never dies on one.
        agent_supervisor="mode.OneForOneSupervisor",
    )


def internal_topics(app: faust.App) -> list[TopicSpec]:
    """The topics Faust itself uses: each table's compacted changelog, and the leader topic.

    Created before the worker starts: when Faust creates them while joining its group,
    the first assignment can miss a topic not yet in the metadata and never recover.
    """
    changelogs = [
        TopicSpec(
            table.changelog_topic.get_topic_name(),
            table.changelog_topic.partitions or app.conf.topic_partitions,
            {"cleanup.policy": "compact"},
        )
        for table in app.tables.values()
    ]
    internal = [
        TopicSpec(f"{app.conf.id}-{name}", app.conf.topic_partitions)
        for name in ("inputs-by-site",)
    ]
    return [*changelogs, *internal, TopicSpec(f"{app.conf.id}-__assignor-__leader", 1)]


def owned_partitions(topic: str) -> set[int]:
    """The partitions of ``topic`` this worker actively owns right now."""
    return {tp.partition for tp in app.assignor.assigned_actives() if tp.topic == topic}


settings = Settings()
app = create_app(settings)
registry = CollectorRegistry()
metrics = WorkerMetrics.create(registry)
consumed = Children(metrics.events_consumed)
duplicates = Children(metrics.events_duplicate)
