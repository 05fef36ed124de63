"""Two workers in one group split the partitions and give the same final state as one."""

from __future__ import annotations

import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from launcher.local_worker import LocalWorker
from postmarket import topics
from postmarket.config import Settings
from postmarket.contracts import encode
from tests.factories import make_registry_entry
from tests.integration.pipeline_io import (
    SignedProducer,
    free_port,
    metric_value,
    send_raw,
)
from tests.integration.scenario_cases import CELLS, offline_confusion, two_site_scenario

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_a_second_worker_joining_mid_stream_changes_no_count(
    kafka_stack: Any, tmp_path: Path
) -> None:
    base: Settings = kafka_stack.settings.model_copy(
        update={"worker_id": f"test-pair-{uuid.uuid4().hex[:8]}", "home": tmp_path}
    )
    first_settings = base.model_copy(update={"worker_metrics_port": free_port()})
    second_settings = base.model_copy(update={"worker_metrics_port": free_port()})
    rng = np.random.default_rng(7)
    run, version = uuid.uuid4().hex[:8], f"8.{rng.integers(1000)}.0.0"
    entry = make_registry_entry(device_version=version)
    send_raw(base.kafka_bootstrap, topics.REGISTRY, [(entry.as_key().encode(), encode(entry))])
    events = two_site_scenario(run, version, rng, cases_per_site=120)
    half = len(events) // 2

    first = LocalWorker(first_settings, tmp_path / "worker-1.log")
    second = LocalWorker(second_settings, tmp_path / "worker-2.log")
    first.start()
    try:
        with SignedProducer(base.kafka_bootstrap) as producer:
            producer.deliver(events[:half])
            second.start()  # the group rebalances: partitions and their tables move
            producer.deliver(events[half:])
        # The final state, not the committed offsets: after two rebalances Faust at times
        # stops committing a partition that came back to a worker (robinhood/faust#681)
        # while it goes on processing it; the idempotent state makes that safe.
        expected = offline_confusion(events)

        def pooled() -> dict[tuple[str, str], int]:
            return {
                (site, cell): int(
                    sum(
                        metric_value(
                            worker.metrics_url,
                            "postmarket_stream_confusion_cases",
                            site_id=site,
                            cell=cell,
                        )
                        for worker in (first, second)
                    )
                )
                for site, cell in expected
            }

        deadline, observed = time.monotonic() + 180, pooled()
        while observed != expected and time.monotonic() < deadline:
            time.sleep(1)
            observed = pooled()
        assert observed == expected
        assert set(CELLS.values()) >= {cell for _, cell in expected}
    finally:
        second.stop()
        first.stop()
