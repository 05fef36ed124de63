"""The follow-up backlog gauge: how many of this worker's predictions await final truth,
counted from the join's case files on a timer."""

from __future__ import annotations

import asyncio
import time

from postmarket import topics
from streams.app import app, metrics, owned_partitions, settings
from streams.channels import case_files
from streams.live_streams import contents
from streams.retention import SCAN_SLICE, ScanPacing, awaiting_truth_among

AWAITING_TRUTH_INTERVAL_S = 10.0
awaiting_gauge = ScanPacing(AWAITING_TRUTH_INTERVAL_S)
"""When the gauge reads every case file again."""


@app.timer(interval=AWAITING_TRUTH_INTERVAL_S)
async def count_cases_awaiting_truth() -> None:
    """Refresh the gauge from this worker's share of the join table (at most every
    :data:`awaiting_gauge` allows: less often while the table is large), a slice at a time,
    the join going on in between."""
    started = time.monotonic()
    if not awaiting_gauge.due(started):
        return
    owned = owned_partitions(topics.INPUTS)
    cases, awaiting, reading = list(contents(case_files).items()), 0, 0.0
    for first in range(0, len(cases), SCAN_SLICE):
        began = time.monotonic()
        part = cases[first : first + SCAN_SLICE]
        awaiting += awaiting_truth_among(part, owned, settings.topic_partitions)
        reading += time.monotonic() - began
        await asyncio.sleep(0)
    metrics.cases_awaiting_truth.set(awaiting)
    awaiting_gauge.scanned(started, started + reading)  # paced by its own reading time
