"""``make bench``: every benchmark in this folder, then bench/RESULTS.md from their JSON.

Each benchmark reports ratios to a peer measured in the same run and writes its JSON to
bench/results/; one that fails is reported and the others still run.
"""

from __future__ import annotations

import runpy
import sys
import traceback
from pathlib import Path

HERE = Path(__file__).parent
RUNS: dict[str, list[list[str]]] = {
    "bench_detectors": [["--json", str(HERE / "results" / "detectors.json")]],
    "bench_glr_delay": [[], ["--budget-scale-only"]],
    "bench_fleet_false_alarms": [[], ["--boundary"]],
}
"""The runs of the benchmarks run more than once or with arguments (one JSON per run): the
GLR delays at ARL0 5,000 and at the pipeline's budget scale, and the fleet heterogeneous
and pinned at the claims' lower bounds."""


def main() -> int:
    sys.path.insert(0, str(HERE.parent))
    sys.path.insert(0, str(HERE))
    failed = []
    for script in sorted(HERE.glob("bench_*.py")):
        for arguments in RUNS.get(script.stem, [[]]):
            name = " ".join([script.stem, *arguments])
            print(f"\n## {name}\n", flush=True)
            saved = sys.argv
            sys.argv = [str(script), *arguments]
            try:
                runpy.run_path(str(script), run_name="__main__")
            except Exception:  # one broken benchmark must not hide the others' figures
                traceback.print_exc()
                failed.append(name)
            finally:
                sys.argv = saved
    from results_md import write_results_md

    print(f"\nwrote {write_results_md()}")
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
