"""A real Faust worker on the real Apache Kafka, fed by the collector's kafka-python producer."""

from __future__ import annotations

import itertools
import json
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from launcher.local_worker import LocalWorker
from postmarket import topics
from postmarket.config import Settings
from postmarket.contracts import DeadLetter, Outcome, encode
from streams.retention import case_partition
from tests.factories import T0, make_followup, make_prediction
from tests.integration.pipeline_io import (
    SignedProducer,
    free_port,
    metric_value,
    outcomes_of,
    read_all,
    read_topic,
    send_raw,
    skip_backlog,
    unique_site,
    valid_events,
    wait_for_metric,
    wait_until_caught_up,
)

pytestmark = pytest.mark.integration
CASE_TOPICS = [topics.PREDICTIONS, topics.FOLLOWUPS, topics.INPUTS]


@pytest.fixture
def worker_settings(kafka_stack: Any, tmp_path: Path) -> Settings:
    """Settings for a worker of its own (own consumer group and tables) on the shared broker."""
    base: Settings = kafka_stack.settings
    return base.model_copy(
        update={
            "worker_id": f"test-worker-{uuid.uuid4().hex[:8]}",
            "worker_metrics_port": free_port(),
            "home": tmp_path,
        }
    )


@pytest.fixture
def worker(worker_settings: Settings, tmp_path: Path) -> Iterator[LocalWorker]:
    running = LocalWorker(worker_settings, tmp_path / "worker.log")
    running.start()
    yield running
    running.stop()


def test_prediction_and_followup_join_into_one_outcome(worker: LocalWorker) -> None:
    case, site = f"c-{uuid.uuid4().hex}", unique_site()
    prediction = make_prediction(case_pseudonym=case, site_id=site, decision="negative")
    followup = make_followup(case_pseudonym=case, site_id=site, label="positive")
    with SignedProducer(worker.settings.kafka_bootstrap) as producer:
        producer.deliver([prediction, followup])

    [outcome] = outcomes_of(worker.settings.kafka_bootstrap, {prediction.event_id}, 1)

    assert (outcome.decision, outcome.label, outcome.truth_source) == (
        "negative",
        "positive",
        "pathology",
    )
    assert outcome.followup_event_ids == (followup.event_id,)
    count = wait_for_metric(
        worker.metrics_url, "postmarket_outcomes_total", 1, site_id=site, label="positive"
    )
    assert count == 1


def test_resent_events_are_counted_once(worker: LocalWorker) -> None:
    case, site = f"c-{uuid.uuid4().hex}", unique_site()
    prediction = make_prediction(case_pseudonym=case, site_id=site)
    followup = make_followup(case_pseudonym=case, site_id=site)
    with SignedProducer(worker.settings.kafka_bootstrap) as producer:
        producer.deliver([prediction, prediction, followup, followup, prediction])

    settings = worker.settings
    wait_until_caught_up(settings.kafka_bootstrap, settings.worker_id, CASE_TOPICS)

    assert len(outcomes_of(settings.kafka_bootstrap, {prediction.event_id}, 1)) == 1
    assert metric_value(worker.metrics_url, "postmarket_outcomes_total", site_id=site) == 1


def test_invalid_records_are_dead_lettered_and_the_worker_goes_on(worker: LocalWorker) -> None:
    bootstrap = worker.settings.kafka_bootstrap
    good = make_prediction(case_pseudonym=f"c-{uuid.uuid4().hex}")
    wrong_type = json.loads(encode(good))
    wrong_type.update(event_id=str(uuid.uuid4()), score="high")
    future_version = json.loads(encode(good))
    future_version.update(event_id=str(uuid.uuid4()), schema_version=9)
    marker = uuid.uuid4().hex.encode()
    bad = [
        (b"k", b"not json " + marker),
        (good.case_pseudonym.encode(), json.dumps(wrong_type).encode()),
        (good.case_pseudonym.encode(), json.dumps(future_version).encode()),
        (b"someone-else", encode(good)),
    ]
    send_raw(bootstrap, topics.PREDICTIONS, bad)
    followup = make_followup(case_pseudonym=good.case_pseudonym)
    with SignedProducer(bootstrap) as producer:
        producer.deliver([good, followup])

    outcomes_of(bootstrap, {good.event_id}, 1)
    wait_for_metric(worker.metrics_url, "postmarket_events_deadlettered_total", 4)

    originals = {value for _, value in bad}

    def mine(records: list[Any]) -> list[DeadLetter]:
        letters = valid_events(records, DeadLetter)
        return [letter for letter in letters if letter.original in originals]

    letters = mine(read_topic(bootstrap, topics.DEADLETTER, lambda rs: len(mine(rs)) >= 4))
    by_original = {letter.original: letter for letter in letters}
    assert by_original[bad[0][1]].reason_code == "not_json"
    assert by_original[bad[1][1]].reason_code == "schema"
    assert "score" in by_original[bad[1][1]].reason
    assert by_original[bad[2][1]].reason_code == "unknown_schema_version"
    assert "co-partitioning" in by_original[bad[3][1]].reason
    assert all(letter.source_topic == topics.PREDICTIONS for letter in letters)


def test_past_retention_truth_finds_its_case_dropped_and_a_resend_counts_once(
    kafka_stack: Any, tmp_path: Path
) -> None:
    settings: Settings = kafka_stack.settings.model_copy(
        update={
            "worker_id": f"test-retention-{uuid.uuid4().hex[:8]}",
            "worker_metrics_port": free_port(),
            "home": tmp_path,
            "join_retention_days": 10.0,
            "join_sweep_interval_s": 0.0,
        }
    )
    site = unique_site()
    waiting = f"c-{uuid.uuid4().hex}"
    partition = case_partition(waiting, settings.topic_partitions)
    # Two later cases on the same partition move its event-time watermark (it rests on two
    # events: streams.retention.Watermark).
    later, later_too = itertools.islice(
        (
            case
            for case in (f"c-{uuid.uuid4().hex}" for _ in range(2000))
            if case_partition(case, settings.topic_partitions) == partition
        ),
        2,
    )
    stale = make_prediction(case_pseudonym=waiting, site_id=site, event_time=T0)
    # Only this test's records: the resends of earlier tests' dropped cases would count too.
    skip_backlog(settings.kafka_bootstrap, settings.worker_id, CASE_TOPICS)
    with LocalWorker(settings, tmp_path / "worker.log") as worker:
        with SignedProducer(settings.kafka_bootstrap) as producer:
            producer.deliver(
                [
                    stale,
                    *(
                        make_prediction(
                            case_pseudonym=case, site_id=site, event_time=T0 + timedelta(days=30)
                        )
                        for case in (later, later_too)
                    ),
                ]
            )
            wait_for_metric(
                worker.metrics_url, "postmarket_predictions_expired_total", 1, site_id=site
            )
            producer.deliver(
                [
                    stale,  # resent after its case was dropped: still a duplicate
                    make_followup(
                        case_pseudonym=waiting, site_id=site, event_time=T0 + timedelta(days=31)
                    ),
                ]
            )
        wait_until_caught_up(settings.kafka_bootstrap, settings.worker_id, CASE_TOPICS)
        records = read_all(settings.kafka_bootstrap, topics.OUTCOMES)
        joined = {o.prediction_event_id for o in valid_events(records, Outcome)}
        assert stale.event_id not in joined
        url = worker.metrics_url
        assert metric_value(url, "postmarket_outcomes_total", site_id=site) == 0
        assert metric_value(url, "postmarket_predictions_total", site_id=site) == 3
        assert metric_value(url, "postmarket_predictions_expired_total", site_id=site) == 1
        resent = "postmarket_events_duplicate_after_retention_total"
        assert metric_value(url, resent, topic=topics.PREDICTIONS) == 1


def test_outcome_latency_is_observed_once_per_new_outcome(worker: LocalWorker) -> None:
    """Seconds from the completing record's Kafka timestamp to the outcome: one observation
    per outcome, and well under five seconds on a loopback broker."""
    settings = worker.settings
    wait_until_caught_up(settings.kafka_bootstrap, settings.worker_id, CASE_TOPICS)
    latency = "postmarket_outcome_latency_seconds"
    count_before = metric_value(worker.metrics_url, f"{latency}_count")
    fast_before = metric_value(worker.metrics_url, f"{latency}_bucket", le="5.0")
    case, site = f"c-{uuid.uuid4().hex}", unique_site()
    with SignedProducer(settings.kafka_bootstrap) as producer:
        producer.deliver(
            [
                make_prediction(case_pseudonym=case, site_id=site),
                make_followup(case_pseudonym=case, site_id=site),
            ]
        )
    wait_for_metric(worker.metrics_url, "postmarket_outcomes_total", 1, site_id=site)
    assert metric_value(worker.metrics_url, f"{latency}_count") == count_before + 1
    assert metric_value(worker.metrics_url, f"{latency}_bucket", le="5.0") == fast_before + 1
