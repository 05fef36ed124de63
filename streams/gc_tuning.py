"""The worker's garbage-collection settings, in a module of their own so that the pipeline
benchmark's in-process stages (bench/pipeline_stages.py) run under the same ones without
importing the Faust app.

Measured, and not adopted (bench/profile_worker.py, its GC statistics, December 2026):
freezing what the worker keeps every 0.1 s, with a full collection every 10 minutes so
cyclic garbage is still reclaimed. A young collection costs what it traverses, and nearly
all of it is state the worker keeps (case files, events, table states: 50,000-85,000
survivors and 4 references each, 13-70 ms a collection; a middle-generation one over
~400,000 survivors once paused 272 ms). But with this threshold they are rare: 0.3-1.5
per 10,000 events on 40,000-60,000 signed events, 0.02-0.2 s in a 10-15 s run, and 10
alternating runs showed no difference in events/s or CPU per event beyond the noise.
The schedule would instead make the longest pause certain: a full collection over 20,000
live case files takes 0.5 s (30,000: 0.6-0.9 s), against the 200 ms p99 latency goal.
Cyclic garbage here is ~50 objects per 2,500 events.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager

GC_YOUNG_THRESHOLD = 50_000
"""Allocations between collections of the youngest generation (Python's default: 700). A
worker allocates a few dozen short-lived objects per event, and almost none in cycles
(reference counting frees them); collecting every 700 allocations spent about half of the
decoding stage's time in the collector (bench/pipeline_stages.py, measured with and without
in the same run). Cyclic garbage, rare here, waits a little longer: a few MB at most."""


def tune_garbage_collection() -> None:
    """Collect the young generation less often, and leave what start-up built (modules, the
    app, its agents and metrics: alive until exit) out of every later full collection."""
    _young, middle, old = gc.get_threshold()
    gc.set_threshold(GC_YOUNG_THRESHOLD, middle, old)
    gc.freeze()


@contextmanager
def tuned_garbage_collection() -> Iterator[None]:
    """:func:`tune_garbage_collection` for a while (a benchmark's stage), then the
    thresholds as they were and nothing frozen."""
    before = gc.get_threshold()
    tune_garbage_collection()
    try:
        yield
    finally:
        gc.set_threshold(*before)
        gc.unfreeze()
