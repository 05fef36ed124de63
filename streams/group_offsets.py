"""The offsets of a consumer group's partitions, from the broker (blocking: call in a thread).

What Faust's consumer holds is its own view; the broker's is what a restarted or another
worker resumes from.
"""

from __future__ import annotations

from collections.abc import Mapping, Set
from typing import Any

from postmarket.kafka_security import KafkaSecurity

Partition = tuple[str, int]


def read_offsets(
    bootstrap: str, group: str, owned: Set[Partition], security: KafkaSecurity | None = None
) -> tuple[dict[Partition, int], dict[Partition, int], dict[Partition, int]]:
    """End, committed and earliest offsets of ``owned`` for ``group`` (blocking)."""
    from kafka import TopicPartition
    from kafka.admin import OffsetSpec

    from postmarket.topic_admin import admin_client

    partitions = [TopicPartition(topic, partition) for topic, partition in sorted(owned)]
    with admin_client(bootstrap, security=security) as admin:
        answer: dict[str, Mapping[Any, Any]] = admin.list_group_offsets({group: partitions})
        committed = {
            (tp.topic, tp.partition): int(meta.offset)
            for tp, meta in answer.get(group, {}).items()
            if meta is not None and meta.offset is not None and meta.offset >= 0
        }
        ends = admin.list_partition_offsets({tp: OffsetSpec.LATEST for tp in partitions})
        uncommitted = [tp for tp in partitions if (tp.topic, tp.partition) not in committed]
        starts = (
            admin.list_partition_offsets({tp: OffsetSpec.EARLIEST for tp in uncommitted})
            if uncommitted
            else {}
        )
    return (
        {(tp.topic, tp.partition): int(o.offset) for tp, o in ends.items()},
        committed,
        {(tp.topic, tp.partition): int(o.offset) for tp, o in starts.items()},
    )


def resume_offsets(
    committed: Mapping[Partition, int], earliest: Mapping[Partition, int]
) -> dict[Partition, int]:
    """Where a consumer of the group resumes each partition: its commit, else (never
    committed) its earliest offset (the workers' ``auto_offset_reset=earliest``).

    >>> sorted(resume_offsets({("t", 0): 7}, {("t", 1): 2}).items())
    [(('t', 0), 7), (('t', 1), 2)]
    """
    return {**earliest, **committed}
