"""The worker's garbage-collection regime, in a module of its own so that the pipeline
benchmark's in-process stages (bench/pipeline_stages.py) run under the same thresholds
without importing the Faust app.

Nearly everything a worker allocates and keeps is state (case files, their events, table
states: about 40 tracked objects a case), and almost none of it is in reference cycles. The
cyclic collector nonetheless walked it again and again: a young collection over the state
kept since the last one (50-170 ms each, growing with the state), a middle one every tenth
(0.4-0.8 s), a full one whenever the old generation grew by a quarter. So the worker
freezes what lives after each record an agent handled (``gc.freeze``: it moves the
generations to the permanent one, O(1), 0.1 us): a collection then walks only what the
record being handled allocated. Measured with bench/profile_worker.py (120,000 signed
events, three alternating pairs of runs, December 2026): 7,311, 5,940 and 5,225 events/s
against 5,765, 5,118 and 4,215 (+16-27 %), CPU 131-185 us an event against 171-225, 0.45-0.54
s in the collector against 3.5-4.2 s, longest pause 46-58 ms against 553-744 ms.

The price: cyclic garbage frozen with the state is not reclaimed until
:func:`full_collection`, every :data:`FULL_COLLECTION_INTERVAL_S`. Measured: about 320
objects (40 KB: cells, functions, tuples) per 50,000 events, a few MB per interval at full
speed. A full collection walks the whole state: about 1 s for 1.3 million objects (30,000
case files), as the full collections Python schedules itself did (0.7-1.3 s at the end of
each run above), only rarer.
"""

from __future__ import annotations

import gc
import time
from collections.abc import Iterator
from contextlib import contextmanager

GC_YOUNG_THRESHOLD = 50_000
"""Allocations between collections of the youngest generation (Python's default: 700). A
worker allocates a few dozen short-lived objects per event, and almost none in cycles
(reference counting frees them); collecting every 700 allocations spent about half of the
decoding stage's time in the collector (bench/pipeline_stages.py, measured with and without
in the same run). Cyclic garbage, rare here, waits a little longer: a few MB at most."""
FULL_COLLECTION_INTERVAL_S = 600.0
"""Seconds between full collections of everything, frozen objects included: a 1 s pause
every 10 minutes is 0.2 % of the time, past the 99th percentile of any latency."""


_freezing = False
"""Whether the process runs a worker's regime: only then do agents freeze what lives (a test
process running agents keeps Python's own). Set by :func:`tune_garbage_collection`."""


def tune_garbage_collection() -> None:
    """Collect the young generation less often, leave what start-up built (modules, the
    app, its agents and metrics: alive until exit) out of every later collection, and have
    the agents freeze what lives after each record (:func:`freeze_survivors`)."""
    global _freezing
    _young, middle, old = gc.get_threshold()
    gc.set_threshold(GC_YOUNG_THRESHOLD, middle, old)
    gc.freeze()
    _freezing = True


def freeze_survivors() -> None:
    """Leave what lives now out of later collections (under the worker's regime), after a
    record was handled: what it allocated and kept is state."""
    if _freezing:
        gc.freeze()


def full_collection() -> tuple[int, float]:
    """Collect everything, frozen objects included, then freeze what lives again: the
    cyclic garbage frozen since the last one. Returns the objects found and the seconds."""
    started = time.perf_counter()
    gc.unfreeze()
    try:
        found = gc.collect()
    finally:
        if _freezing:
            gc.freeze()
    return found, time.perf_counter() - started


@contextmanager
def tuned_garbage_collection() -> Iterator[None]:
    """The worker's thresholds, and its start-up frozen, for a while (a benchmark's stage),
    then the thresholds as they were and nothing frozen."""
    global _freezing
    before = gc.get_threshold()
    freezing = _freezing
    tune_garbage_collection()
    _freezing = freezing
    try:
        yield
    finally:
        gc.set_threshold(*before)
        gc.unfreeze()
