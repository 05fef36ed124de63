"""Throughput and memory of every detector class, relative to a trivial peer in the same run.

Run: ``python bench/bench_detectors.py [--cases N] [--json PATH]``. Prints a markdown
table: updates per second, the ratio to a plain Python running mean timed in the same
process (so numbers from different machines compare), bytes per instance in the process
and bytes of its JSON state. Not a test: nothing here fails.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from detectors import (
    BernoulliCUSUM,
    BetaBinomialConfidenceSequence,
    Detector,
    NormalCUSUM,
    RiskAdjustedCUSUM,
    WindowedCalibrationTest,
    WindowedChiSquareDrift,
    WindowedKSDrift,
    WindowedPerformanceEstimate,
    state_size_bytes,
)


class RunningMean:
    """The trivial peer: the cheapest per-case update a detector could have."""

    __slots__ = ("n", "mean")

    def __init__(self) -> None:
        self.n = 0
        self.mean = 0.0

    def update(self, x: float, risk: float | None = None) -> float:
        self.n += 1
        self.mean += (x - self.mean) / self.n
        return self.mean


def _best_rate(
    update: Callable[[float, float | None], object],
    xs: list[float],
    risks: list[float | None],
    repeats: int,
) -> float:
    best = 0.0
    for _ in range(repeats):
        start = time.perf_counter()
        for x, risk in zip(xs, risks, strict=True):
            update(x, risk)
        best = max(best, len(xs) / (time.perf_counter() - start))
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--cases", type=int, default=200_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()

    rng = np.random.default_rng(0)
    binary = [float(v) for v in (rng.random(args.cases) < 0.128).astype(int)]
    scores = rng.normal(0.3, 0.1, args.cases).tolist()
    risks = rng.uniform(0.02, 0.3, args.cases).tolist()
    no_risk: list[float | None] = [None] * args.cases
    scanners = [float(c) for c in rng.choice(5, size=args.cases, p=[0.3, 0.3, 0.2, 0.1, 0.1])]
    calibrated = rng.beta(0.7, 2.0, args.cases)
    decisions: list[float | None] = [float(d) for d in calibrated >= 0.35]
    labels = [float(y) for y in rng.random(args.cases) < calibrated]

    detectors: list[tuple[Detector, list[float], list[float | None]]] = [
        (BernoulliCUSUM.for_sensitivity(0.872, 0.80, arl0=5000), binary, no_risk),
        (BetaBinomialConfidenceSequence.for_sensitivity(0.872), binary, no_risk),
        (NormalCUSUM(target=0.3, sigma=0.1, k=0.5, h=5.0), scores, no_risk),
        (RiskAdjustedCUSUM(odds_ratio=2.0, h=4.5), binary, list(risks)),
        (
            WindowedKSDrift.from_reference(
                rng.normal(0.3, 0.1, 5000), [0.05 * i for i in range(1, 11)], 500, 20_000
            ),
            scores,
            no_risk,
        ),
        (
            WindowedChiSquareDrift(
                ["Canon", "GE", "Philips", "Siemens", "United Imaging"],
                [1500, 1500, 1000, 500, 500],
                500,
                20_000,
            ),
            scanners,
            no_risk,
        ),
        (
            WindowedPerformanceEstimate("sensitivity", 0.65, 500, 5000),
            calibrated.tolist(),
            decisions,
        ),
        (WindowedCalibrationTest(500, 5000), labels, calibrated.tolist()),
    ]

    peer = RunningMean()
    peer_rate = _best_rate(peer.update, scores, no_risk, args.repeats)
    rows = []
    for detector, xs, rs in detectors:
        rate = _best_rate(detector.update, xs, rs, args.repeats)
        in_process, json_bytes = state_size_bytes(detector)
        rows.append(
            {
                "detector": type(detector).__name__,
                "updates_per_second": rate,
                "relative_to_running_mean": rate / peer_rate,
                "bytes_in_process": in_process,
                "bytes_json_state": json_bytes,
            }
        )

    print(
        f"Python {platform.python_version()} on {platform.machine()}, {args.cases:,} cases, "
        f"best of {args.repeats}; peer: plain Python running mean at {peer_rate:,.0f} updates/s\n"
    )
    print("| detector | updates/s | x running mean | bytes in process | bytes JSON state |")
    print("|---|---:|---:|---:|---:|")
    for row in rows:
        print(
            f"| {row['detector']} | {row['updates_per_second']:,.0f} | "
            f"{row['relative_to_running_mean']:.2f} | {row['bytes_in_process']} | "
            f"{row['bytes_json_state']} |"
        )
    if args.json is not None:
        payload = {"peer_updates_per_second": peer_rate, "cases": args.cases, "rows": rows}
        args.json.write_text(json.dumps(payload, indent=2) + "\n")


if __name__ == "__main__":
    main()
