"""The worker's garbage-collection settings, in a module of their own so that the pipeline
benchmark's in-process stages (bench/pipeline_stages.py) run under the same ones without
importing the Faust app."""

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
