"""Workers killed with SIGKILL at random points mid-stream and restarted, several times,
and once stopped gracefully (SIGTERM, as a rolling upgrade does): the final per-stream state
equals an offline recomputation from the input topics."""

from __future__ import annotations

import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from launcher.local_worker import LocalWorker
from postmarket import topics
from postmarket.config import Settings
from postmarket.contracts import Outcome, RegistryEntry, encode
from streams.charted_claims import claimed_lower_bounds, claimed_performance
from streams.monitor_policy import planned_policy
from streams.stream_monitor import StreamMonitor
from tests.factories import make_registry_entry
from tests.integration.pipeline_io import (
    SignedProducer,
    free_port,
    metric_value,
    read_all,
    send_raw,
    valid_events,
    wait_until_caught_up,
)
from tests.integration.scenario_cases import CELLS, offline_confusion, two_site_scenario

pytestmark = [pytest.mark.integration, pytest.mark.slow]

CASES_PER_SITE = 150
CHUNKS = 6
KILL_AFTER_CHUNKS = {1, 3, 4}
STOP_AFTER_CHUNKS = {2}
STOP_GRACE_S = 30.0


def _topic_confusion(outcome_records: list[Any], sites: list[str]) -> dict[tuple[str, str], int]:
    """Confusion counts of the distinct outcomes on the outcomes topic."""
    distinct = {}
    for outcome in valid_events(outcome_records, Outcome):
        if outcome.stream.site_id in sites:
            distinct[outcome.event_id] = outcome
    cells = pd.Series(
        [(o.stream.site_id, CELLS[(o.decision, o.label)]) for o in distinct.values()]
    ).value_counts()
    return {(str(site), str(cell)): int(n) for (site, cell), n in cells.items()}


def _offline_sensitivity_statistic(
    outcome_records: list[Any], site: str, settings: Settings, entry: RegistryEntry
) -> float:
    """The sensitivity CUSUM, designed as the worker designs it from the registry entry and
    the configured plan, fed each distinct outcome once, in the outcomes topic's order."""
    task = "referable_dr"
    cusum = StreamMonitor.for_claims(
        claimed_performance(entry, task),
        planned_policy(settings),
        entry.reference_prevalence,
        claimed_lower_bounds(entry, task),
    ).detectors["sensitivity_cusum"]
    seen: set[uuid.UUID] = set()
    statistic = 0.0
    for outcome in valid_events(outcome_records, Outcome):
        if outcome.stream.site_id != site or outcome.event_id in seen:
            continue
        seen.add(outcome.event_id)
        if outcome.label == "positive":
            statistic = cusum.update(1.0 if outcome.decision == "negative" else 0.0).statistic
    return statistic


def _eventually(read: Any, expected: Any, timeout_s: float = 45.0) -> Any:
    deadline, value = time.monotonic() + timeout_s, None
    while time.monotonic() < deadline:
        value = read()
        if value == expected:
            return value
        time.sleep(0.5)
    return value


def test_random_kills_lose_nothing_and_count_nothing_twice(
    kafka_stack: Any, tmp_path: Path
) -> None:
    settings: Settings = kafka_stack.settings.model_copy(
        update={
            "worker_id": f"test-recovery-{uuid.uuid4().hex[:8]}",
            "worker_metrics_port": free_port(),
            "home": tmp_path,
            # A killed worker's partitions move only after its session times out.
            "worker_session_timeout_s": 8.0,
        }
    )
    rng = np.random.default_rng(2026)
    run = uuid.uuid4().hex[:8]
    version = f"7.{rng.integers(1000)}.0.1"
    entry = make_registry_entry(device_version=version)
    send_raw(settings.kafka_bootstrap, topics.REGISTRY, [(entry.as_key().encode(), encode(entry))])
    events = two_site_scenario(run, version, rng, CASES_PER_SITE)
    chunks = np.array_split(np.arange(len(events)), CHUNKS)

    generation = 0
    worker = LocalWorker(settings, tmp_path / f"worker-{generation}.log")
    worker.start()
    wait_until_caught_up(settings.kafka_bootstrap, settings.worker_id, [topics.REGISTRY])
    try:
        with SignedProducer(settings.kafka_bootstrap) as producer:
            for number, chunk in enumerate(chunks):
                producer.deliver([events[i] for i in chunk])
                if number in KILL_AFTER_CHUNKS | STOP_AFTER_CHUNKS:
                    time.sleep(float(rng.uniform(0.0, 1.5)))  # somewhere mid-processing
                    if number in STOP_AFTER_CHUNKS:
                        # Faust's stop waits until every record read is acked: records the
                        # agents hold for their next flush must still be flushed.
                        assert worker.stop(timeout_s=STOP_GRACE_S), worker.tail()
                    else:
                        worker.kill()
                    generation += 1
                    worker = LocalWorker(settings, tmp_path / f"worker-{generation}.log")
                    worker.start()
        wait_until_caught_up(
            settings.kafka_bootstrap,
            settings.worker_id,
            [topics.PREDICTIONS, topics.FOLLOWUPS, topics.OUTCOMES],
            timeout_s=120,
        )
        expected = offline_confusion(events)
        sites = sorted({site for site, _ in expected})
        outcome_records = read_all(settings.kafka_bootstrap, topics.OUTCOMES)
        # First the join: every case's outcome reached the outcomes topic (none lost there).
        assert _topic_confusion(outcome_records, sites) == expected

        def observed() -> dict[tuple[str, str], int]:
            return {
                (site, cell): int(
                    metric_value(
                        worker.metrics_url,
                        "postmarket_stream_confusion_cases",
                        site_id=site,
                        cell=cell,
                    )
                )
                for site in sites
                for cell in CELLS.values()
                if (site, cell) in expected
            }

        # Then the stream monitor: each distinct outcome applied exactly once.
        assert _eventually(observed, expected) == expected

        for site in sites:
            offline = _offline_sensitivity_statistic(outcome_records, site, settings, entry)

            def statistic(site: str = site) -> float:
                return metric_value(
                    worker.metrics_url,
                    "postmarket_detector_statistic",
                    site_id=site,
                    detector="sensitivity_cusum",
                )

            assert _eventually(statistic, offline) == pytest.approx(offline)
    finally:
        worker.stop()
