"""The evidence sink on the real broker: redelivery and a kill -9 never duplicate or lose."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from evidence_builders import make_alert, make_stream

from evidence.sink import EvidenceSink
from evidence.store import EvidenceStore
from postmarket import topics
from postmarket.contracts import Contract, encode
from postmarket.contracts.batches import EventKind, encode_batch
from tests.factories import make_outcome, make_prediction
from tests.integration.pipeline_io import send_raw

pytestmark = pytest.mark.integration


def outcomes_for(device: str, n: int) -> list[Any]:
    return [
        make_outcome(
            "positive" if i % 3 else "negative",
            "positive" if i % 2 else "negative",
            offset=i,
            device_id=device,
            site_id=f"site-{i % 3}",
            case_pseudonym=f"c-{device}-{i}",
        )
        for i in range(n)
    ]


def produce(bootstrap: str, topic: str, events: list[Contract], key: str = "k") -> None:
    send_raw(bootstrap, topic, [(key.encode(), encode(event)) for event in events])


def run_sink(store: EvidenceStore, bootstrap: str, group: str) -> Any:
    return EvidenceSink(store, bootstrap, group=group, max_records=200).run(until_idle_s=3.0)


def test_redelivered_outcomes_and_alerts_are_stored_once(
    kafka_stack: Any, evidence_url: str
) -> None:
    bootstrap = kafka_stack.settings.kafka_bootstrap
    device = f"dev-{uuid.uuid4().hex[:8]}"
    outcomes = outcomes_for(device, 40)
    alert = make_alert(stream=make_stream(device_id=device))
    predictions = [make_prediction(device_id=device, case_pseudonym=f"p-{i}") for i in range(5)]
    produce(bootstrap, topics.OUTCOMES, outcomes + outcomes[:10])  # a worker's re-emission
    produce(bootstrap, topics.ALERTS, [alert, alert])
    produce(bootstrap, topics.PREDICTIONS, predictions)

    with EvidenceStore(evidence_url) as store:
        run_sink(store, bootstrap, f"sink-{uuid.uuid4().hex[:8]}")
        # A second group reads everything again: a full redelivery.
        again = run_sink(store, bootstrap, f"sink-{uuid.uuid4().hex[:8]}")

        assert store.outcome_count(device) == 40
        assert {o.event_id for o in store.outcomes(device)} == {str(o.event_id) for o in outcomes}
        # (the sink's fleet review may add site-vs-fleet alerts of its own on these data)
        from_topic = [a for a in store.device_alerts(device) if a.alert.detector == alert.detector]
        assert [a.alert.alert_id for a in from_topic] == [alert.alert_id]
        assert sum(c.predictions for c in store.prediction_counts(device)) == 5
        assert again.outcomes_new == 0
        assert store.verify_audit_chain().problem is None
        # The review after the first run stored weekly snapshots; nothing moved since.
        snapshots = store.snapshots(device)
        assert snapshots and {s.version for s in snapshots} == {"2.1.0.3"}
        assert again.snapshots == 0


def test_predictions_in_signed_batches_are_stored_once_and_bad_events_counted(
    kafka_stack: Any, sqlite_url: str
) -> None:
    """v2 collectors send predictions in batches on pms.inputs.v2; a resent batch and a v1
    copy of the same prediction store nothing twice, and one bad event of a batch is
    counted without losing the others."""
    bootstrap = kafka_stack.settings.kafka_bootstrap
    device = f"dev-{uuid.uuid4().hex[:8]}"
    predictions = [make_prediction(device_id=device, case_pseudonym=f"p-{i}") for i in range(4)]
    events: list[tuple[EventKind, str, bytes]] = [
        ("prediction", str(p.event_id), encode(p)) for p in predictions
    ]
    bad = ("prediction", str(uuid.uuid4()), b'{"schema_version": 1, "score": 2}')
    batch = encode_batch("site-a", [*events[:2], bad, *events[2:]])
    send_raw(bootstrap, topics.INPUTS, [(b"site-a", batch), (b"site-a", batch)])
    produce(bootstrap, topics.PREDICTIONS, predictions[:1])

    with EvidenceStore(sqlite_url) as store:
        counts = run_sink(store, bootstrap, f"sink-{uuid.uuid4().hex[:8]}")
        assert sum(c.predictions for c in store.prediction_counts(device)) == 4
    assert counts.invalid_by_topic.get(topics.INPUTS, 0) >= 2  # the bad event, twice


def test_invalid_records_are_skipped_and_counted(kafka_stack: Any, sqlite_url: str) -> None:
    bootstrap = kafka_stack.settings.kafka_bootstrap
    device = f"dev-{uuid.uuid4().hex[:8]}"
    send_raw(bootstrap, topics.OUTCOMES, [(b"k", b"not json"), (b"k", b'{"schema_version": 1}')])
    produce(bootstrap, topics.OUTCOMES, outcomes_for(device, 3))

    with EvidenceStore(sqlite_url) as store:
        counts = run_sink(store, bootstrap, f"sink-{uuid.uuid4().hex[:8]}")
        assert store.outcome_count(device) == 3
    assert counts.invalid_by_topic.get(topics.OUTCOMES, 0) >= 2


def start_sink_process(url: str, bootstrap: str, group: str, log: Path, *extra: str) -> Any:
    command = [sys.executable, "-m", "postmarket", "evidence", "sink", "--url", url]
    command += ["--bootstrap", bootstrap, "--group", group, "--max-records", "25", "--no-metrics"]
    command += extra
    with log.open("ab") as out:
        return subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)


def wait_for_outcomes(url: str, device: str, at_least: int, timeout_s: float = 60.0) -> int:
    deadline = time.monotonic() + timeout_s
    with EvidenceStore(url, migrate=False) as store:
        while time.monotonic() < deadline:
            stored = store.outcome_count(device)
            if stored >= at_least:
                return stored
            time.sleep(0.05)
    raise AssertionError(f"fewer than {at_least} outcomes stored after {timeout_s} s")


@pytest.mark.slow
def test_kill_9_mid_stream_then_restart_stores_exactly_the_distinct_outcomes(
    kafka_stack: Any, evidence_url: str, tmp_path: Path
) -> None:
    bootstrap = kafka_stack.settings.kafka_bootstrap
    device = f"dev-{uuid.uuid4().hex[:8]}"
    outcomes = outcomes_for(device, 1500)
    produce(bootstrap, topics.OUTCOMES, outcomes + outcomes[::7])
    EvidenceStore(evidence_url).close()  # migrate before two processes race to
    group = f"sink-{uuid.uuid4().hex[:8]}"
    log = tmp_path / "sink.log"

    first = start_sink_process(evidence_url, bootstrap, group, log)
    try:
        stored_at_kill = wait_for_outcomes(evidence_url, device, 100)
        os.kill(first.pid, signal.SIGKILL)
    finally:
        first.wait(timeout=10)
    assert stored_at_kill < len(outcomes), "the sink finished before it could be killed"

    second = start_sink_process(evidence_url, bootstrap, group, log, "--until-idle", "4")
    assert second.wait(timeout=180) == 0, log.read_text()

    with EvidenceStore(evidence_url) as store:
        stored = {o.event_id for o in store.outcomes(device)}
        assert store.outcome_count(device) == len(outcomes)
    assert stored == {str(o.event_id) for o in outcomes}


def test_sigterm_stops_the_sink_cleanly(kafka_stack: Any, sqlite_url: str, tmp_path: Path) -> None:
    bootstrap = kafka_stack.settings.kafka_bootstrap
    device = f"dev-{uuid.uuid4().hex[:8]}"
    produce(bootstrap, topics.OUTCOMES, outcomes_for(device, 5))
    EvidenceStore(sqlite_url).close()
    log = tmp_path / "sink.log"
    running = start_sink_process(sqlite_url, bootstrap, f"sink-{uuid.uuid4().hex[:8]}", log)
    try:
        wait_for_outcomes(sqlite_url, device, 5)
        running.send_signal(signal.SIGTERM)
        assert running.wait(timeout=30) == 0, log.read_text()
    finally:
        if running.poll() is None:
            running.kill()
            running.wait()
    assert "stored " in log.read_text()
