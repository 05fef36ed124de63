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
ARGUMENTS = {"bench_detectors": ["--json", str(HERE / "results" / "detectors.json")]}
"""Command-line arguments of the benchmarks that write their JSON only when asked."""


def main() -> int:
    sys.path.insert(0, str(HERE.parent))
    sys.path.insert(0, str(HERE))
    failed = []
    for script in sorted(HERE.glob("bench_*.py")):
        print(f"\n## {script.stem}\n", flush=True)
        saved = sys.argv
        sys.argv = [str(script), *ARGUMENTS.get(script.stem, [])]
        try:
            runpy.run_path(str(script), run_name="__main__")
        except Exception:  # one broken benchmark must not hide the others' figures
            traceback.print_exc()
            failed.append(script.stem)
        finally:
            sys.argv = saved
    from results_md import write_results_md

    print(f"\nwrote {write_results_md()}")
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
