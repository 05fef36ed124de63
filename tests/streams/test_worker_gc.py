"""The worker's garbage-collection settings, checked in a fresh interpreter (they are
process-wide: this test process keeps its own)."""

from __future__ import annotations

import subprocess
import sys

CHECK = """
import gc
from streams.worker import GC_YOUNG_THRESHOLD, tune_garbage_collection
before = gc.get_threshold()
tune_garbage_collection()
after = gc.get_threshold()
assert after == (GC_YOUNG_THRESHOLD, *before[1:]), (before, after)
assert gc.get_freeze_count() > 10_000, gc.get_freeze_count()
print("ok")
"""


def test_the_worker_collects_young_objects_less_often_and_freezes_its_start_up() -> None:
    done = subprocess.run(
        [sys.executable, "-c", CHECK], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"
