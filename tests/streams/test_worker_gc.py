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
from streams.gc_tuning import GC_YOUNG_THRESHOLD, tuned_garbage_collection
before = gc.get_threshold()
with tuned_garbage_collection():
    assert gc.get_threshold() == (GC_YOUNG_THRESHOLD, *before[1:])
    assert gc.get_freeze_count() > 1_000
assert gc.get_threshold() == before and gc.get_freeze_count() == 0
"""
"""The benchmark's in-process stages run under the worker's settings, then restore them."""


@pytest.mark.parametrize("check", [WORKER, BENCH_STAGES], ids=["worker", "bench-stages"])
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
