"""bench/profile_join.py: the real join in a child process, every measured case joined (its
outcome sent), variants alternating and the best run of each reported."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).parents[2] / "bench" / "profile_join.py"


def _run(*args: str) -> str:
    done = subprocess.run(
        [sys.executable, str(SCRIPT), *args], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def test_a_measurement_joins_every_case_it_times() -> None:
    measured = json.loads(_run("--child", "--cases", "200", "--warm-up", "100"))
    assert (measured["events"], measured["outcomes"]) == (400, 200)
    assert measured["cpu_us_per_event"] > 0


def test_each_variant_runs_alternating_and_its_best_run_is_reported() -> None:
    out = _run(
        "--cases", "100", "--warm-up", "50", "--runs", "2", "--variant", "a:", "--variant", "b:"
    )
    runs = [line.split(":")[0] for line in out.splitlines() if "us CPU an event" in line]
    assert runs == ["a", "b", "a", "b", "a", "b"]  # four runs, then each variant's best
    assert out.splitlines()[-2].startswith("a: best ") and "(runs " in out.splitlines()[-2]
