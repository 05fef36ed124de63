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

from postmarket.metrics import WorkerMetrics
from streams.app import app, metrics, settings
from streams.group_offsets import Partition, read_offsets, resume_offsets

log = logging.getLogger(__name__)

LAG_INTERVAL_S = 15.0


def partition_lag(
    owned: Set[Partition],
    end_offsets: Mapping[Partition, int],
    committed: Mapping[Partition, int],
    earliest: Mapping[Partition, int],
) -> dict[Partition, int]:
    """Records not yet committed in each owned partition whose end offset is known: from
    where the group resumes it (:func:`~streams.group_offsets.resume_offsets`).

    >>> partition_lag({("t", 0), ("t", 1)}, {("t", 0): 10, ("t", 1): 5}, {("t", 0): 7}, {})
    {('t', 0): 3, ('t', 1): 5}
    """
    lag, resume = {}, resume_offsets(committed, earliest)
    for partition in sorted(owned):
        end = end_offsets.get(partition)
        if end is None:
            continue
        lag[partition] = max(end - resume.get(partition, 0), 0)
    return lag


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
