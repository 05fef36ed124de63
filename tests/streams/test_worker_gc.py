"""The worker's garbage-collection settings, checked in a fresh interpreter (they are
process-wide: this test process keeps its own)."""

from __future__ import annotations

import subprocess
import sys

import pytest

WORKER = """
import gc
from streams.gc_tuning import GC_YOUNG_THRESHOLD
import streams.worker
before = gc.get_threshold()
streams.worker.tune_garbage_collection()
after = gc.get_threshold()
assert after == (GC_YOUNG_THRESHOLD, *before[1:]), (before, after)
assert gc.get_freeze_count() > 10_000, gc.get_freeze_count()
"""
"""The worker collects young objects less often and freezes its start-up."""
BENCH_STAGES = """
import gc
from streams.gc_tuning import GC_YOUNG_THRESHOLD, freeze_survivors, tuned_garbage_collection
before = gc.get_threshold()
with tuned_garbage_collection():
    assert gc.get_threshold() == (GC_YOUNG_THRESHOLD, *before[1:])
    frozen = gc.get_freeze_count()
    assert frozen > 1_000
    kept = [[] for _ in range(1_000)]
    freeze_survivors()  # the stages run no agents: what they keep stays collectable
    assert gc.get_freeze_count() == frozen, (gc.get_freeze_count(), frozen)
assert gc.get_threshold() == before and gc.get_freeze_count() == 0
"""
"""The benchmark's in-process stages run under the worker's settings, then restore them."""
AGENTS_FREEZE = """
import asyncio, gc, weakref
from types import SimpleNamespace
from streams.gc_tuning import full_collection, tune_garbage_collection
from streams.held_acks import HeldAcks, handle_holding_acks

class Node:
    pass

kept = []
cycles = []

class Records:
    enable_acks = True
    channel = SimpleNamespace()

    async def events(self):
        for number in range(3):
            yield number

async def handle(record):
    kept.extend([record] for _ in range(1000))  # state the record leaves
    node = Node()
    node.me = node  # cyclic garbage, once dropped
    cycles.append(weakref.ref(node))

async def flush():
    return None

def run():
    asyncio.run(handle_holding_acks(Records(), handle, HeldAcks(), flush, 100))

run()  # Python's own regime: agents freeze nothing, a collection finds the cycles
gc.collect()
assert gc.get_freeze_count() == 0 and all(ref() is None for ref in cycles), cycles
tune_garbage_collection()
frozen, cycles[:] = gc.get_freeze_count(), []
run()
assert gc.get_freeze_count() >= frozen + 3000, (frozen, gc.get_freeze_count())
gc.collect()
assert all(ref() is not None for ref in cycles)  # frozen with the state
found, seconds = full_collection()
assert all(ref() is None for ref in cycles) and found >= 3, found
assert gc.get_freeze_count() >= frozen + 3000  # what lives is frozen again
"""
"""Under the worker's regime an agent freezes what lives after each record, and a full
collection still reclaims the cyclic garbage frozen with it."""


@pytest.mark.parametrize(
    "check", [WORKER, BENCH_STAGES, AGENTS_FREEZE], ids=["worker", "bench-stages", "agents-freeze"]
)
def test_the_gc_settings_in_a_fresh_interpreter(check: str) -> None:
    done = subprocess.run(
        [sys.executable, "-c", check + "print('ok')"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"
