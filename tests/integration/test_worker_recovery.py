"""A worker killed with SIGKILL mid-stream resumes from Kafka: nothing lost, nothing doubled."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest

from collectors.producer import EventProducer
from postmarket import topics
from postmarket.config import Settings
from postmarket.contracts import Outcome, decode
from postmarket.local_worker import LocalWorker
from tests.factories import make_followup, make_prediction
from tests.integration.pipeline_io import free_port, read_topic, wait_for_metric

pytestmark = [pytest.mark.integration, pytest.mark.slow]

CASES = 40


def test_kill_9_then_restart_and_collector_resend_gives_one_outcome_per_prediction(
    kafka_stack: Any, tmp_path: Path
) -> None:
    settings: Settings = kafka_stack.settings.model_copy(
        update={
            "worker_id": f"test-recovery-{uuid.uuid4().hex[:8]}",
            "worker_metrics_port": free_port(),
            "home": tmp_path,
            # The killed worker's partitions move only after its session times out.
            "worker_session_timeout_s": 8.0,
        }
    )
    run = uuid.uuid4().hex[:8]
    predictions = [make_prediction(case_pseudonym=f"c-{run}-{i}") for i in range(CASES)]
    followups = [make_followup(case_pseudonym=p.case_pseudonym) for p in predictions]

    first = LocalWorker(settings, tmp_path / "worker-1.log")
    first.start()
    with EventProducer(settings.kafka_bootstrap) as producer:
        producer.deliver(predictions + followups[: CASES // 2])
    wait_for_metric(first.metrics_url, "postmarket_events_consumed_total", CASES)
    first.kill()

    second = LocalWorker(settings, tmp_path / "worker-2.log")
    second.start()
    try:
        with EventProducer(settings.kafka_bootstrap) as producer:
            # The collector did not see acknowledgements for everything: it resends it all.
            producer.deliver(predictions + followups)
        wanted = {p.event_id for p in predictions}

        def joined(records: list[Any]) -> dict[uuid.UUID, set[uuid.UUID]]:
            ids: dict[uuid.UUID, set[uuid.UUID]] = {}
            for record in records:
                outcome = decode(Outcome, record.value)
                if outcome.prediction_event_id in wanted:
                    ids.setdefault(outcome.prediction_event_id, set()).add(outcome.event_id)
            return ids

        records = read_topic(
            settings.kafka_bootstrap, topics.OUTCOMES, lambda rs: len(joined(rs)) == CASES
        )
    finally:
        second.stop()

    outcome_ids = joined(records)
    assert set(outcome_ids) == wanted
    assert all(len(ids) == 1 for ids in outcome_ids.values())
