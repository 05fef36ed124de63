"""Produce-to-outcome latency of a fresh worker at fixed offered rates, for worker variants
alternating in one run (bench_pipeline's :func:`produce_to_outcome_latency`: v1 records, a
warm-up first). Not part of ``make bench``.

    .venv/bin/python bench/profile_latency.py --rate 500 --rate 2000 \
        --variant base:PYTHONPATH=/tmp/base --variant new:PYTHONPATH=/tmp/new
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import uuid
from pathlib import Path
from typing import Any

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

import bench_pipeline as bp  # noqa: E402

from launcher.local_worker import LocalWorker  # noqa: E402
from launcher.stack import manager  # noqa: E402
from launcher.stack.processes import free_port  # noqa: E402
from postmarket.config import Settings  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rate", type=float, action="append", default=[])
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--variant", action="append", default=[], help="NAME:KEY=VALUE,...")
    args = parser.parse_args()
    variants = [
        (name, dict(pair.split("=", 1) for pair in pairs.split(",") if pair))
        for name, _, pairs in (v.partition(":") for v in args.variant)
    ] or [("current", {})]
    home = Path(tempfile.mkdtemp(prefix="pms-latency-", dir="/tmp"))
    home.chmod(0o755)
    try:
        stack = manager.up(Settings(home=home))
        bootstrap, partitions = stack.settings.kafka_bootstrap, stack.settings.topic_partitions
        for _ in range(args.runs):
            for name, env in variants:
                settings = stack.settings.model_copy(
                    update={
                        "worker_id": f"latency-{uuid.uuid4().hex[:8]}",
                        "worker_metrics_port": free_port(),
                    }
                )
                bp.start_at_end(bootstrap, settings.worker_id)
                log = home / "logs" / f"{settings.worker_id}.log"
                with LocalWorker(settings, log, env):
                    bp.prefill(bootstrap, [])  # the registry and site keys for its claims
                    for rate in args.rate:
                        row: dict[str, Any] = {"variant": name, "rate": rate}
                        row.update(bp.produce_to_outcome_latency(bootstrap, partitions, rate))
                        row["load"] = os.getloadavg()[0]
                        print(json.dumps(row), flush=True)
    finally:
        manager.down(Settings(home=home))
        shutil.rmtree(home, ignore_errors=True)


if __name__ == "__main__":
    main()
