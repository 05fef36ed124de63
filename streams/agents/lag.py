"""Consumer lag of the partitions this worker owns: end offset minus the group's commit.

Why here and not in a separate exporter: each worker reports only its own active
partitions, so ``sum by (group, topic)`` over all workers counts every partition once, and
a partition moves with its series on a rebalance (the old owner removes it). A group-wide
exporter would need a singleton to avoid counting each partition once per replica. A
dead worker's partitions show no lag until the group reassigns them; ``up == 0`` alerts
on that window. The offsets come from the broker (kafka-python admin, in a thread so the
event loop never blocks), not from Faust's internal consumer state.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Set
from typing import Any

from postmarket.kafka_security import KafkaSecurity
from postmarket.metrics import WorkerMetrics
from streams.app import app, metrics, settings

log = logging.getLogger(__name__)

LAG_INTERVAL_S = 15.0

Partition = tuple[str, int]


def partition_lag(
    owned: Set[Partition],
    end_offsets: Mapping[Partition, int],
    committed: Mapping[Partition, int],
    earliest: Mapping[Partition, int],
) -> dict[Partition, int]:
    """Records not yet committed in each owned partition whose end offset is known.

    A partition the group never committed counts from its earliest offset (the workers
    start there: ``auto_offset_reset=earliest``).

    >>> partition_lag({("t", 0), ("t", 1)}, {("t", 0): 10, ("t", 1): 5}, {("t", 0): 7}, {})
    {('t', 0): 3, ('t', 1): 5}
    """
    lag = {}
    for partition in sorted(owned):
        end = end_offsets.get(partition)
        if end is None:
            continue
        start = committed.get(partition, earliest.get(partition, 0))
        lag[partition] = max(end - start, 0)
    return lag


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


class LagGauge:
    """Sets the lag series of owned partitions and removes those of partitions given up."""

    def __init__(self, metrics: WorkerMetrics, group: str) -> None:
        self._gauge = metrics.consumer_lag
        self._group = group
        self._shown: set[Partition] = set()

    def show(self, lag: Mapping[Partition, int]) -> None:
        for topic, partition in self._shown - set(lag):
            self._gauge.remove(self._group, topic, str(partition))
        for (topic, partition), records in lag.items():
            self._gauge.labels(self._group, topic, str(partition)).set(records)
        self._shown = set(lag)


lag_gauge = LagGauge(metrics, settings.worker_id)


@app.timer(interval=LAG_INTERVAL_S)
async def export_consumer_lag() -> None:
    """Refresh the lag of this worker's active partitions (Faust's group id is the app id)."""
    owned = {(tp.topic, tp.partition) for tp in app.assignor.assigned_actives()}
    if not owned:
        lag_gauge.show({})
        return
    try:
        offsets = await asyncio.get_running_loop().run_in_executor(
            None,
            read_offsets,
            settings.kafka_bootstrap,
            settings.worker_id,
            owned,
            settings.kafka_security(),
        )
    except Exception as error:  # the broker may be briefly away; keep the last values
        log.warning("consumer lag not refreshed: %s", error)
        return
    lag_gauge.show(partition_lag(owned, *offsets))
