"""Catch up the streams of input partitions no record has reached since the assignment.

A partition's first record catches its streams up with its case files
(:mod:`streams.join_catch_up`); a partition whose sites send nothing for a while would
keep what its case files hold and its streams do not (outcomes a worker of the previous
release joined, or a flush cut short between the two) out of its counts until they did.
This timer catches those up from the offset the group committed, once the tables are
recovered.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Set

from streams.app import app, settings
from streams.channels import case_inputs
from streams.group_offsets import Partition, read_resume_offsets
from streams.site_streams import catch_ups

logger = logging.getLogger(__name__)

QUIET_CHECK_S = 5.0
"""How often owned partitions with no record since the assignment are looked for."""


async def _resume_offsets(partitions: Set[Partition]) -> dict[Partition, int]:
    return await asyncio.get_running_loop().run_in_executor(
        None,
        read_resume_offsets,
        settings.kafka_bootstrap,
        settings.worker_id,
        partitions,
        settings.kafka_security(),
    )


@app.timer(interval=QUIET_CHECK_S)
async def catch_up_quiet_partitions() -> None:
    """Between rebalances only: during one, the tables may still be recovering."""
    if app.rebalancing or app.in_recovery:
        return
    topics = set(case_inputs.topics)
    owned = {(tp.topic, tp.partition) for tp in app.assignor.assigned_actives()}
    try:
        caught_up = await catch_ups.quiet({p for p in owned if p[0] in topics}, _resume_offsets)
    except Exception as error:  # the broker may be briefly away: tried again next time
        logger.warning("quiet partitions not caught up: %s", error)
        return
    if caught_up:
        logger.info("caught up %d input partitions no record has reached", caught_up)
