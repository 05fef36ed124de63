"""The worker's join in process, with no Kafka: CPU microseconds per event of the real
``_join_elements``, the streams it applies to and its flushes, for A/B comparisons.

Each measurement runs in a child process of its own: the bench's signed batches (predictions
of ``--cases`` cases then their follow-ups, eight streams), decoded beforehand, are joined
one batch record at a time, after a warm-up of ``--warm-up`` other cases (the streams past
their start-up, their case files in the tables); a flush every four records. The worker's
garbage-collection regime, what lives frozen after each record as its agents do (without the
freeze, the collector walking the growing state doubled the cost and cProfile blamed it on
whatever allocated). Records the join produces are dropped by a producer stand-in, so the
figure is the join's and the streams' own work, not aiokafka's.

CPU time, not wall time: these machines are shared, and a run's wall time moved by a tenth
between runs where its CPU time moved by a few percent. Variants alternate, as in
:mod:`profile_worker`:

    .venv/bin/python bench/profile_join.py [--cases N] [--warm-up N] [--runs N] [--profile N]
        [--sort tottime|cumulative]
        [--variant NAME:PYTHONPATH=DIR]
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import json
import os
import pstats
import subprocess
import sys
import time
from collections import Counter
from datetime import timedelta
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent


class DroppingProducer:
    """Stands in for the app's producer (Faust's and aiokafka's under it): every record is
    counted by topic and dropped, each send already delivered."""

    def __init__(self) -> None:
        self.sent: Counter[str] = Counter()

    def _ensure_producer(self) -> DroppingProducer:
        return self

    async def maybe_start(self) -> None:
        return None

    async def send(self, topic: str, *args: Any, **kwargs: Any) -> asyncio.Future[None]:
        self.sent[topic] += 1
        return _delivered()

    def create_batch(self) -> DroppingBatch:
        return DroppingBatch()

    async def send_batch(
        self, batch: DroppingBatch, topic: str, **kwargs: Any
    ) -> asyncio.Future[None]:
        self.sent[topic] += batch.records
        return _delivered()


class DroppingBatch:
    def __init__(self) -> None:
        self.records = 0

    def append(self, **record: Any) -> object:
        self.records += 1
        return self


def _delivered() -> asyncio.Future[None]:
    sent: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    sent.set_result(None)
    return sent


def measure(
    cases: int, warm_up: int, profile_top: int = 0, sort: str = "tottime"
) -> dict[str, float]:
    """Join ``cases`` cases after ``warm_up`` others in this process (it keeps the worker's
    module state: run it in a process of its own); CPU microseconds per measured event, the
    events and the outcomes the join sent for them."""
    sys.path.insert(0, str(HERE))
    import bench_pipeline as bp
    from pipeline_stages import signed_batches

    from postmarket import topics
    from postmarket.contracts.batches import decode_batch
    from streams import app as worker
    from streams import authentication, gc_tuning, site_streams
    from streams.agents import join
    from streams.casefile import RecordPosition
    from streams.channels import registry
    from streams.retention import key_partition

    producer = worker.app._producer = DroppingProducer()  # type: ignore[assignment]
    authentication.AUTHENTICITY_REQUIRED = False  # the signature is not the join's work
    every = set(range(worker.settings.topic_partitions))
    site_streams.owned_partitions = lambda topic: every  # type: ignore[attr-defined]
    join.owned_partitions = lambda topic: every  # type: ignore[attr-defined]
    for version in bp.VERSIONS:
        entry = bp.registry_entry(version)
        registry.data[entry.as_key()] = entry.model_dump(mode="json")
    start = bp.T0 - timedelta(days=21, minutes=warm_up)
    warm = signed_batches(
        bp.case_events(warm_up, seed=2, prefix="warm", start=start), bp.SIGNING_KEYS
    )
    measured = signed_batches(bp.case_events(cases, seed=1, prefix="tp"), bp.SIGNING_KEYS)

    def placed(records: list[Any], first: int) -> list[tuple[Any, Any]]:
        batches = [decode_batch(value) for _topic, _key, value, _headers in records]
        partitions = worker.settings.topic_partitions
        return [
            (
                RecordPosition(topics.INPUTS, key_partition(b.site_id, partitions), first + n),
                b.elements,
            )
            for n, b in enumerate(batches)
        ]

    async def join_all(records: list[tuple[Any, Any]]) -> None:
        for number, (at, elements) in enumerate(records):
            await join._join_elements(at, elements, time.time())
            gc_tuning.freeze_survivors()
            if number % 4 == 3:
                join.outcome_queue.send_soon()
                await join.flush_joined()
        await join.flush_joined()

    async def run() -> dict[str, float]:
        site_streams.applying = asyncio.Lock()
        await join_all(placed(warm, 0))
        records = placed(measured, len(warm))
        events = sum(len(elements) for _at, elements in records)
        producer.sent.clear()
        profile = cProfile.Profile() if profile_top else None
        started = time.process_time()
        if profile is not None:
            profile.enable()
        await join_all(records)
        if profile is not None:
            profile.disable()
            pstats.Stats(profile).sort_stats(sort).print_stats(profile_top)
        spent = time.process_time() - started
        await join.outcome_queue.hand_over()  # what its task would have sent by now
        outcomes = producer.sent[topics.OUTCOMES]
        return {"cpu_us_per_event": 1e6 * spent / events, "events": events, "outcomes": outcomes}

    gc_tuning.tune_garbage_collection()
    return asyncio.run(run())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", type=int, default=20_000, help="cases measured (2 events each)")
    parser.add_argument("--warm-up", type=int, default=20_000, help="cases joined before")
    parser.add_argument("--runs", type=int, default=3, help="runs of each variant, alternating")
    parser.add_argument("--profile", type=int, default=0, help="print cProfile's top N (slower)")
    parser.add_argument(
        "--sort", default="tottime", help="the profile's order: tottime (own time) or cumulative"
    )
    parser.add_argument(
        "--variant",
        action="append",
        default=[],
        help="NAME:PYTHONPATH=DIR: another checkout's code, run alternating with the others",
    )
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure(args.cases, args.warm_up, args.profile, args.sort)))
        return
    from profile_worker import variants_of  # the same --variant options

    variants = variants_of(args.variant)
    results: dict[str, list[float]] = {name: [] for name, _env in variants}
    for _ in range(args.runs):
        for name, env in variants:
            command = [sys.executable, str(Path(__file__).resolve()), "--child"]
            command += ["--cases", str(args.cases), "--warm-up", str(args.warm_up)]
            command += ["--profile", str(args.profile), "--sort", args.sort]
            child = subprocess.run(  # noqa: S603 - this script, this interpreter
                command, env={**os.environ, **env}, capture_output=True, text=True, check=False
            )
            if child.returncode != 0:
                sys.exit(f"{name}: the measurement failed:\n{child.stderr[-2000:]}")
            *profile, last = child.stdout.strip().splitlines()
            if profile:
                print("\n".join(profile))
            results[name].append(json.loads(last)["cpu_us_per_event"])
            print(f"{name}: {results[name][-1]:.1f} us CPU an event", flush=True)
    for name, runs in results.items():
        shown = " / ".join(f"{us:.1f}" for us in runs)
        print(f"{name}: best {min(runs):.1f} us CPU an event (runs {shown})")


if __name__ == "__main__":
    main()
