"""Each cut of the worker-performance branch, before and after, in this process and the same
run: the replaced path and the new one alternating, best of several rounds (the machine is
shared). Not a benchmark of ``make bench`` (bench/run.py runs ``bench_*.py`` only).

    .venv/bin/python bench/profile_cuts.py
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

import bench_pipeline as bp  # noqa: E402
from pipeline_stages import own_work_us_per_event, signed_batches  # noqa: E402

from postmarket.contracts import Prediction  # noqa: E402
from postmarket.contracts import events as contract_events  # noqa: E402
from postmarket.contracts.batches import decode_batch  # noqa: E402
from postmarket.contracts.events import JoinPosition, StreamKey  # noqa: E402
from streams.acquisition import acquisition_categories  # noqa: E402
from streams.join_backlog import prediction_input  # noqa: E402
from streams.retention import key_partition  # noqa: E402
from streams.routing import RoutedScore, StreamPredictions  # noqa: E402

ROUNDS = 7


def per_call_us(call: Callable[[], Any], calls: int) -> float:
    started = time.perf_counter()
    for _ in range(calls):
        call()
    return 1e6 * (time.perf_counter() - started) / calls


def alternate(before: Callable[[], float], after: Callable[[], float]) -> tuple[float, float]:
    """Best of :data:`ROUNDS` of each, run alternately."""
    befores, afters = [], []
    for _ in range(ROUNDS):
        befores.append(before())
        afters.append(after())
    return min(befores), min(afters)


def old_stream(prediction: Prediction) -> StreamKey:
    return StreamKey(
        device_id=prediction.device_id,
        device_version=prediction.device_version,
        site_id=prediction.site_id,
        task=prediction.task,
    )


def old_prediction_input(prediction: Prediction, at: JoinPosition) -> StreamPredictions:
    routed = RoutedScore.model_construct(
        score=prediction.score,
        joined_at=at,
        decision=prediction.decision,
        categories=acquisition_categories(prediction.acquisition),
    )
    return StreamPredictions.model_construct(stream=old_stream(prediction), predictions=(routed,))


def main() -> None:
    print(f"load average: {os.getloadavg()}")
    events = bp.case_events(2_000, seed=3, prefix="cuts")
    prediction = next(e for e in events if isinstance(e, Prediction))
    at = JoinPosition(topic="pms.inputs.v2", partition=1, offset=7, rank=0, index=3)
    key = prediction.stream.as_key()
    from streams.agents.join import outcome_partition

    rows: list[tuple[str, float, float, str]] = []
    n = 20_000
    b, a = alternate(
        lambda: per_call_us(lambda: old_stream(prediction), n),
        lambda: per_call_us(lambda: prediction.stream, n),
    )
    rows.append(("Prediction.stream", b, a, "µs per call"))
    b, a = alternate(
        lambda: per_call_us(lambda: old_prediction_input(prediction, at), n),
        lambda: per_call_us(lambda: prediction_input(prediction, at), n),
    )
    rows.append(("prediction_input (the join's per-prediction hand-over)", b, a, "µs per call"))
    b, a = alternate(
        lambda: per_call_us(lambda: key_partition(key, 4), n),
        lambda: per_call_us(lambda: outcome_partition(key), n),
    )
    rows.append(("outcome's partition (murmur2 per outcome vs once per stream)", b, a, "µs"))

    from datetime import UTC, datetime

    from streams.channels import registry as registry_table
    from streams.event_time import record_sent_at
    from streams.live_streams import contents

    stamp = 1_796_556_000.123
    now = datetime.now(UTC)
    b, a = alternate(
        lambda: per_call_us(lambda: datetime.fromtimestamp(stamp, UTC), n),
        lambda: per_call_us(lambda: record_sent_at(stamp, now), n),
    )
    rows.append(("a batch event's record send time", b, a, "µs per event"))
    registry_table.data["dr-screen|2.1.0.3"] = {"held": True}
    b, a = alternate(
        lambda: per_call_us(lambda: registry_table.get("dr-screen|2.1.0.3"), n),
        lambda: per_call_us(lambda: contents(registry_table).get("dr-screen|2.1.0.3"), n),
    )
    rows.append(("a table read (Faust's get vs its store's)", b, a, "µs per read"))
    registry_table.data.clear()

    records = signed_batches(events, bp.SIGNING_KEYS)
    values = [value for _topic, _key, value, _headers in records]
    new_known = contract_events._known_schema_version

    def old_known(contract: Any) -> Any:
        return contract.model_fields["schema_version"].default

    def decode_all(known: Callable[[Any], Any]) -> float:
        contract_events._known_schema_version = known  # type: ignore[assignment]
        try:
            started = time.perf_counter()
            for value in values:
                decode_batch(value)
            return 1e6 * (time.perf_counter() - started) / len(events)
        finally:
            contract_events._known_schema_version = new_known

    b, a = alternate(
        lambda: per_call_us(lambda: old_known(Prediction), n),
        lambda: per_call_us(lambda: new_known(Prediction), n),
    )
    rows.append(("the schema version a contract knows", b, a, "µs per event decoded"))
    b, a = alternate(lambda: decode_all(old_known), lambda: decode_all(new_known))
    rows.append(("decode_batch, schema version looked up per class once", b, a, "µs per event"))

    registry = [bp.registry_entry(version) for version in bp.VERSIONS]

    def own(worker_gc: bool) -> dict[str, float]:
        return own_work_us_per_event(
            events, bp.SIGNING_KEYS, registry, bp.T0, batched=True, worker_gc=worker_gc
        )

    stages: dict[bool, list[dict[str, float]]] = {False: [], True: []}
    for _ in range(3):
        for worker_gc in (False, True):
            stages[worker_gc].append(own(worker_gc))
    for worker_gc, runs in stages.items():
        best = {stage: min(run[stage] for run in runs) for stage in runs[0]}
        label = "worker's GC" if worker_gc else "Python's GC defaults"
        print(f"own work, batches, {label}: " + ", ".join(f"{k} {v:.1f}" for k, v in best.items()))
    for name, before, after, unit in rows:
        print(f"{name}: {before:.2f} -> {after:.2f} {unit} ({before / after:.1f}x)")


if __name__ == "__main__":
    main()
