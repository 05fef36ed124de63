"""Upgrading to the release whose join drives the stream monitors (issue 17's merge): what
the previous release left (case files, stream states in the stream-keyed tables, outcomes
its stream agent had not applied yet) is adopted and counted exactly once.

The previous release's state is written as it wrote it: its case files and stream states
as changelog records of its tables, its unapplied outcomes on ``pms.outcomes.v1``, its
stream states computed by the same monitor code it ran."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from prometheus_client import CollectorRegistry

from launcher.local_worker import LocalWorker
from postmarket import topics
from postmarket.config import Settings
from postmarket.contracts import Alert, encode
from postmarket.contracts.batches import encode_batch
from postmarket.metrics import WorkerMetrics
from postmarket.topic_admin import ensure_topics
from postmarket.topics import TopicSpec
from streams.casefile import CaseFile, RecordPosition
from streams.join_backlog import prediction_input
from streams.live_streams import LiveStreams
from streams.monitor_policy import planned_policy
from streams.retention import case_key, key_partition
from streams.table_rekeying_kafka import changelog_topic, read_changelog
from tests.factories import make_followup, make_prediction, make_registry_entry
from tests.integration.pipeline_io import free_port, metric_value, send_raw, skip_backlog
from tests.integration.scenario_cases import CELLS
from tests.integration.test_signed_batches import entries

pytestmark = [pytest.mark.integration, pytest.mark.slow]

CASES = [("negative", "positive"), ("positive", "positive"), ("negative", "negative")]
"""The previous release joined these; its stream agent applied the first case's outcome
and every prediction, and stopped before the other two outcomes."""
NEW_CASE = ("positive", "negative")
"""Sent after the upgrade, to the same site, at a later position of the same partition."""


async def _emit(alert: Alert) -> None:
    return None


def _old_release_state(
    settings: Settings, site: str, version: str, first_offset: int
) -> tuple[dict[str, Any], dict[str, Any], list[Any]]:
    """The case files, the stream's (labelled, label-free) states, and the unapplied
    outcomes, as the previous release left them."""
    partition = key_partition(site, settings.topic_partitions)
    entry = make_registry_entry(device_version=version)
    old_agent = LiveStreams(
        planned_policy(settings),
        {},
        {},
        {entry.as_key(): entry.model_dump(mode="json")},
        WorkerMetrics.create(CollectorRegistry()),
    )
    case_states: dict[str, Any] = {}
    unapplied = []
    for n, (decision, label) in enumerate(CASES):
        pseudonym = f"old-{n}"
        prediction = make_prediction(
            site_id=site, device_version=version, case_pseudonym=pseudonym, decision=decision
        )
        followup = make_followup(site_id=site, case_pseudonym=pseudonym, label=label)
        case = CaseFile()
        at = RecordPosition(topics.INPUTS, partition, first_offset + 2 * n)
        case.add(prediction, at)
        [outcome] = case.add(
            followup, RecordPosition(topics.INPUTS, partition, first_offset + 2 * n + 1)
        ).outcomes
        case_states[case_key(site, pseudonym)] = case.to_state()
        asyncio.run(old_agent.apply(prediction_input(prediction, at.joined(0)), at, _emit))
        if n == 0:
            asyncio.run(old_agent.apply(outcome, at, _emit))
        else:
            unapplied.append(outcome)
    taken = old_agent.take_flush()
    states: dict[str, Any] = {write.side: write.state for write in taken.writes}
    return case_states, states, unapplied


def _end_offset(bootstrap: str, topic: str, partition: int) -> int:
    consumer = KafkaConsumer(bootstrap_servers=bootstrap)
    try:
        tp = TopicPartition(topic, partition)
        return int(consumer.end_offsets([tp])[tp])
    finally:
        consumer.close()


def _rekey_by_site(settings: Settings) -> subprocess.CompletedProcess[str]:
    """``postmarket topics rekey-by-site`` as an operator runs it, for this worker id."""
    env = {
        **os.environ,
        "POSTMARKET_KAFKA_BOOTSTRAP": settings.kafka_bootstrap,
        "POSTMARKET_WORKER_ID": settings.worker_id,
        "POSTMARKET_TOPIC_PARTITIONS": str(settings.topic_partitions),
        "POSTMARKET_HOME": str(settings.home),
        "COLUMNS": "200",
    }
    command = [sys.executable, "-m", "postmarket", "topics", "rekey-by-site"]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)


def _check_keyed_by_site(settings: Settings, site: str, cases: list[str], stream: str) -> None:
    """Every moved state is under its new key on the site's partition, the old ones gone."""
    site_partition = key_partition(site, settings.topic_partitions)
    consumer = KafkaConsumer(bootstrap_servers=settings.kafka_bootstrap)
    try:

        def latest(table: str) -> dict[str, Any]:
            topic = changelog_topic(settings.worker_id, table)
            return read_changelog(consumer, topic, lambda _line: None)

        case_files, labelled, label_free, old_labelled, old_label_free = (
            latest(table)
            for table in (
                "case-files",
                "site-stream-monitors",
                "site-stream-prediction-monitors",
                "stream-monitors",
                "stream-prediction-monitors",
            )
        )
    finally:
        consumer.close()
    for pseudonym in cases:
        assert case_files[case_key(site, pseudonym)].partition == site_partition
        assert case_files[pseudonym].value is None  # the old key's tombstone
    for table in (labelled, label_free):
        assert table[stream].partition == site_partition and table[stream].value is not None
    assert old_labelled[stream].value is None and old_label_free[stream].value is None


@pytest.mark.parametrize(
    ("rekeyed", "quiet"),
    [(False, False), (True, False), (False, True)],
    ids=["adopted-by-the-worker", "rekeyed-offline", "site-quiet-after-the-upgrade"],
)
def test_the_previous_releases_state_and_backlog_are_counted_exactly_once(
    kafka_stack: Any, tmp_path: Path, rekeyed: bool, quiet: bool
) -> None:
    """Adopted by the one worker at each stream's first change, or moved to the site's
    partition by ``postmarket topics rekey-by-site`` before any worker starts (what a fleet
    of several workers does: then the case files are still under their pseudonyms, on
    their pseudonyms' partitions, and the old tables emptied, so only the moved states
    can give these counts). ``quiet``: the site sends nothing after the upgrade, so no
    record of its partition comes to catch its streams up: the worker's timer does."""
    settings: Settings = kafka_stack.settings.model_copy(
        update={
            "worker_id": f"test-upgrade-{uuid.uuid4().hex[:8]}",
            "worker_metrics_port": free_port(),
            "home": tmp_path,
        }
    )
    bootstrap, group = settings.kafka_bootstrap, settings.worker_id
    site, version = f"site-{uuid.uuid4().hex[:8]}", f"7.{uuid.uuid4().int % 1000}.0.0"
    entry = make_registry_entry(device_version=version)
    send_raw(bootstrap, topics.REGISTRY, [(entry.as_key().encode(), encode(entry))])
    partition = key_partition(site, settings.topic_partitions)

    # The old join read its cases from these offsets: taken on the real partition, then
    # moved past, so the new release reads only what is sent after the upgrade.
    first_offset = _end_offset(bootstrap, topics.INPUTS, partition)
    fillers: list[tuple[bytes | None, bytes]] = [
        (site.encode(), b"read by the previous release") for _ in range(2 * len(CASES))
    ]
    send_raw(bootstrap, topics.INPUTS, fillers, signed=False)
    case_states, stream_states, unapplied = _old_release_state(
        settings, site, version, first_offset
    )
    stream = unapplied[0].stream.as_key()
    changelogs = {
        name: f"{group}-{name}-changelog"
        for name in ("case-files", "stream-monitors", "stream-prediction-monitors")
    }
    ensure_topics(
        bootstrap,
        [
            TopicSpec(topic, settings.topic_partitions, {"cleanup.policy": "compact"})
            for topic in changelogs.values()
        ],
    )
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all")
    try:
        for key, state in case_states.items():
            # The previous release keyed them by pseudonym; the adopting worker reads them
            # under their site key too (what the rest of the upgrade tests cover).
            pseudonym = key.partition("|")[2]
            old_key = pseudonym if rekeyed else key
            producer.send(
                changelogs["case-files"],
                key=json.dumps(old_key).encode(),
                value=json.dumps(state).encode(),
                partition=key_partition(old_key, settings.topic_partitions)
                if rekeyed
                else partition,
            )
        legacy_partition = key_partition(stream, settings.topic_partitions)
        for side, table in (
            ("outcome", "stream-monitors"),
            ("prediction", "stream-prediction-monitors"),
        ):
            producer.send(
                changelogs[table],
                key=json.dumps(stream).encode(),
                value=json.dumps(stream_states[side]).encode(),
                partition=legacy_partition,
            )
        for outcome in unapplied:  # left on the outcomes topic: no worker reads it now
            producer.send(topics.OUTCOMES, key=stream.encode(), value=encode(outcome))
        producer.flush(timeout=30)
    finally:
        producer.close()
    skip_backlog(
        bootstrap, group, [topics.PREDICTIONS, topics.FOLLOWUPS, topics.INPUTS, topics.REBASELINES]
    )

    if rekeyed:
        moved = _rekey_by_site(settings)
        assert moved.returncode == 0, moved.stderr
        assert f"moved {len(CASES)} case-files state(s)" in moved.stdout
        assert "moved 1 stream-monitors state(s)" in moved.stdout
        _check_keyed_by_site(settings, site, [key.partition("|")[2] for key in case_states], stream)
        again = _rekey_by_site(settings)
        assert again.returncode == 0 and "nothing to move" in again.stdout, again.stdout

    worker = LocalWorker(settings, tmp_path / "worker.log")
    worker.start()
    try:
        if rekeyed:
            refused = _rekey_by_site(settings)
            assert refused.returncode == 1 and "stop every worker" in refused.stderr
            assert "Traceback" not in refused.stderr
        cases = CASES if quiet else [*CASES, NEW_CASE]
        if not quiet:
            decision, label = NEW_CASE
            prediction = make_prediction(
                site_id=site, device_version=version, case_pseudonym="new-0", decision=decision
            )
            followup = make_followup(site_id=site, case_pseudonym="new-0", label=label)
            send_raw(
                bootstrap,
                topics.INPUTS,
                [(site.encode(), encode_batch(site, entries(prediction, followup)))],
            )
        expected = {cell: 0 for cell in CELLS.values()}
        for case in cases:
            expected[CELLS[case]] += 1

        def observed() -> dict[str, int]:
            return {
                cell: int(
                    metric_value(
                        worker.metrics_url,
                        "postmarket_stream_confusion_cases",
                        site_id=site,
                        cell=cell,
                    )
                )
                for cell in expected
            }

        deadline, counts = time.monotonic() + 120, observed()
        while counts != expected and time.monotonic() < deadline:
            time.sleep(1)
            counts = observed()
        assert counts == expected, worker.tail()
        predictions = metric_value(
            worker.metrics_url, "postmarket_stream_predictions", site_id=site
        )
        assert predictions == len(cases)
    finally:
        worker.stop()
