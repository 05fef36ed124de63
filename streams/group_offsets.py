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
    from kafka.admin import OffsetSpec

    from postmarket.topic_admin import admin_client

    partitions = _topic_partitions(owned)
    with admin_client(bootstrap, security=security) as admin:
        committed, earliest = _committed_or_earliest(admin, group, partitions)
        ends = admin.list_partition_offsets({tp: OffsetSpec.LATEST for tp in partitions})
    return {(tp.topic, tp.partition): int(o.offset) for tp, o in ends.items()}, committed, earliest


def read_resume_offsets(
    bootstrap: str, group: str, owned: Set[Partition], security: KafkaSecurity | None = None
) -> dict[Partition, int]:
    """Where ``group`` resumes each of ``owned`` (:func:`resume_offsets`), without the end
    offsets :func:`read_offsets` also asks for (blocking)."""
    from postmarket.topic_admin import admin_client

    with admin_client(bootstrap, security=security) as admin:
        return resume_offsets(*_committed_or_earliest(admin, group, _topic_partitions(owned)))


def _topic_partitions(owned: Set[Partition]) -> list[Any]:
    from kafka import TopicPartition

    return [TopicPartition(topic, partition) for topic, partition in sorted(owned)]


def _committed_or_earliest(
    admin: Any, group: str, partitions: list[Any]
) -> tuple[dict[Partition, int], dict[Partition, int]]:
    """The committed offsets of ``partitions``, and the earliest of those never committed."""
    from kafka.admin import OffsetSpec

    answer: dict[str, Mapping[Any, Any]] = admin.list_group_offsets({group: partitions})
    committed = {
        (tp.topic, tp.partition): int(meta.offset)
        for tp, meta in answer.get(group, {}).items()
        if meta is not None and meta.offset is not None and meta.offset >= 0
    }
    uncommitted = [tp for tp in partitions if (tp.topic, tp.partition) not in committed]
    starts = (
        admin.list_partition_offsets({tp: OffsetSpec.EARLIEST for tp in uncommitted})
        if uncommitted
        else {}
    )
    return committed, {(tp.topic, tp.partition): int(o.offset) for tp, o in starts.items()}


def resume_offsets(
    committed: Mapping[Partition, int], earliest: Mapping[Partition, int]
) -> dict[Partition, int]:
    """Where a consumer of the group resumes each partition: its commit, else (never
    committed) its earliest offset (the workers' ``auto_offset_reset=earliest``).

    >>> sorted(resume_offsets({("t", 0): 7}, {("t", 1): 2}).items())
    [(('t', 0), 7), (('t', 1), 2)]
    """
    return {**earliest, **committed}
