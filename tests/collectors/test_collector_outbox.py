"""The outbox and delivery loop with a fake broker: durable, bounded, audited, retried."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from collectors.delivery import DeliveryLoop, backoff_seconds
from collectors.metrics import CollectorMetrics
from collectors.outbox import Outbox, OutboxFull
from collectors.producer import Delivery, DeliveryError, EncodedEvent
from tests.factories import make_prediction


class FakeBroker:
    """Acknowledges batches, or fails the next ``failures`` of them."""

    def __init__(self, failures: int = 0) -> None:
        self.failures = failures
        self.received: list[EncodedEvent] = []

    def deliver_encoded(self, records: Sequence[EncodedEvent]) -> list[Delivery]:
        if self.failures > 0:
            self.failures -= 1
            raise DeliveryError("broker unreachable")
        start = len(self.received)
        self.received.extend(records)
        return [Delivery(r.topic, 0, start + i) for i, r in enumerate(records)]

    def close(self) -> None:
        return None


@pytest.fixture
def registry() -> CollectorRegistry:
    return CollectorRegistry()


@pytest.fixture
def metrics(registry: CollectorRegistry) -> CollectorMetrics:
    return CollectorMetrics.create(registry)


def test_events_survive_reopening_the_outbox(tmp_path: Path) -> None:
    event = make_prediction()
    with Outbox(tmp_path / "o.db") as outbox:
        outbox.put(event)
    with Outbox(tmp_path / "o.db") as reopened:
        assert [p.event_id for p in reopened.pending()] == [str(event.event_id)]


def test_the_outbox_is_in_wal_mode(tmp_path: Path) -> None:
    import sqlite3

    Outbox(tmp_path / "o.db").close()
    (mode,) = sqlite3.connect(tmp_path / "o.db").execute("PRAGMA journal_mode").fetchone()
    assert mode == "wal"


def test_the_same_event_is_stored_once(tmp_path: Path) -> None:
    event = make_prediction()
    with Outbox(tmp_path / "o.db") as outbox:
        assert outbox.put(event) and not outbox.put(event)
        assert outbox.depth() == 1


def test_acknowledged_events_leave_the_outbox_and_are_audited(tmp_path: Path) -> None:
    broker = FakeBroker()
    with Outbox(tmp_path / "o.db") as outbox:
        events = [make_prediction(case_pseudonym=f"c-{i}") for i in range(7)]
        for event in events:
            outbox.put(event)
        assert DeliveryLoop(outbox, lambda: broker, batch_size=3).drain() == 7
        assert outbox.depth() == 0
        audit = outbox.audit_entries()
    assert {a.event_id for a in audit} == {str(e.event_id) for e in events}
    assert {a.case_pseudonym for a in audit} == {f"c-{i}" for i in range(7)}


def test_failed_batches_stay_and_are_retried(
    tmp_path: Path, metrics: CollectorMetrics, registry: CollectorRegistry
) -> None:
    broker = FakeBroker(failures=2)
    with Outbox(tmp_path / "o.db", metrics=metrics) as outbox:
        outbox.put(make_prediction())
        loop = DeliveryLoop(outbox, lambda: broker, metrics, max_backoff=0.01)
        assert loop.drain() == 1
    assert len(broker.received) == 1
    assert registry.get_sample_value("postmarket_collector_send_failures_total") == 2
    assert registry.get_sample_value("postmarket_collector_events_sent_total") == 1
    last = registry.get_sample_value("postmarket_collector_last_successful_send_timestamp_seconds")
    assert last is not None and last > 0


def test_a_full_outbox_refuses_new_events(tmp_path: Path) -> None:
    with Outbox(tmp_path / "o.db", max_bytes=2000) as outbox:
        with pytest.raises(OutboxFull, match="2000 bytes"):
            for i in range(100):
                outbox.put(make_prediction(case_pseudonym=f"c-{i}"))
        assert 0 < outbox.depth() < 100


def test_near_the_limit_it_warns_and_sets_the_metric(
    tmp_path: Path,
    metrics: CollectorMetrics,
    registry: CollectorRegistry,
    caplog: pytest.LogCaptureFixture,
) -> None:
    size = len(make_prediction().model_dump_json()) + 8
    with (
        caplog.at_level(logging.WARNING),
        Outbox(
            tmp_path / "o.db", max_bytes=size * 10, warn_fraction=0.5, metrics=metrics
        ) as outbox,
    ):
        for i in range(4):
            outbox.put(make_prediction(case_pseudonym=f"c-{i}"))
        assert registry.get_sample_value("postmarket_collector_outbox_near_limit") == 0
        for i in range(4, 7):
            outbox.put(make_prediction(case_pseudonym=f"c-{i}"))
        assert registry.get_sample_value("postmarket_collector_outbox_near_limit") == 1
        assert registry.get_sample_value("postmarket_collector_outbox_depth") == 7
    assert "limit" in caplog.text


def test_rejected_file_reasons_start_at_zero(registry: CollectorRegistry) -> None:
    CollectorMetrics.create(registry)
    for reason in ("not_dicom", "truncated", "missing_tags"):
        value = registry.get_sample_value(
            "postmarket_collector_files_rejected_total", {"reason": reason}
        )
        assert value == 0


def test_backoff_doubles_and_is_capped() -> None:
    assert [backoff_seconds(n, 0.5, 4.0) for n in (1, 2, 3, 4, 5)] == [0.5, 1, 2, 4, 4]
