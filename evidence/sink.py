"""The evidence sink: outcomes, predictions and alerts from Kafka into the evidence store.

At-least-once from Kafka, exactly-once in the store: each polled batch is written in
database transactions that skip events already stored (by event id, alert id), and the
consumer group's offsets are committed only after those transactions committed. A crash
(kill -9) between the two replays the batch, which then writes nothing new.

Invalid records are skipped and counted (the workers dead-letter them upstream; the sink
is a reader and must not stall on one).

Every ``review_every_s`` (after new records) the sink also reviews the whole store, which
no single worker sees: weekly performance snapshots (:mod:`.snapshots`) and each site
against its fleet (:mod:`.fleet_review`, from per-site counts the database aggregates, so
its cost does not grow with the years of outcomes read into Python). The first review
refreshes every week's snapshots; later ones only the weeks the sink's batches touched
since (duplicates and replays included), as no other week's figures can have moved.
"""

from __future__ import annotations

import logging
import signal
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from types import FrameType
from typing import Any

from evidence.fleet_review import review_fleet
from evidence.snapshots import refresh_snapshots, week_of
from evidence.store import EvidenceStore
from postmarket import topics
from postmarket.contracts.batches import decode_batch
from postmarket.contracts.codec import ContractViolation, decode
from postmarket.contracts.events import Alert, Outcome, Prediction, utc_now
from postmarket.kafka_security import KafkaSecurity

log = logging.getLogger(__name__)

SINK_GROUP = "postmarket-evidence-sink"
SINK_ACTOR = "evidence-sink"
SINK_TOPICS = (topics.OUTCOMES, topics.ALERTS, topics.PREDICTIONS, topics.INPUTS)


@dataclass
class SinkCounts:
    """What the sink has done since it started."""

    records: int = 0
    outcomes_new: int = 0
    predictions_new: int = 0
    alerts_new: int = 0
    duplicates: int = 0
    invalid: int = 0
    batches: int = 0
    snapshots: int = 0
    """Weekly performance snapshots stored because a figure moved."""
    fleet_alerts: int = 0
    """Site-vs-fleet findings the periodic review stored: new alerts or recurrences."""
    invalid_by_topic: dict[str, int] = field(default_factory=dict)


@dataclass
class DecodedBatch:
    outcomes: list[Outcome] = field(default_factory=list)
    predictions: list[Prediction] = field(default_factory=list)
    alerts: list[Alert] = field(default_factory=list)
    invalid: dict[str, int] = field(default_factory=dict)


def decode_records(records: Iterable[tuple[str, bytes | None]]) -> DecodedBatch:
    """Sort ``(topic, value)`` records into events; count what does not decode."""
    batch = DecodedBatch()
    for topic, value in records:
        try:
            if topic == topics.OUTCOMES:
                batch.outcomes.append(decode(Outcome, value or b""))
            elif topic == topics.PREDICTIONS:
                batch.predictions.append(decode(Prediction, value or b""))
            elif topic == topics.ALERTS:
                batch.alerts.append(decode(Alert, value or b""))
            elif topic == topics.INPUTS:
                _add_predictions_of_batch(batch, value or b"")
        except ContractViolation as violation:
            batch.invalid[topic] = batch.invalid.get(topic, 0) + 1
            log.warning("skipping an invalid record on %s: %s", topic, violation)
    return batch


def _add_predictions_of_batch(batch: DecodedBatch, value: bytes) -> None:
    """The valid predictions of a signed batch (follow-ups reach the store as outcomes);
    each invalid event counts as one invalid record of the batch's topic."""
    for element in decode_batch(value).elements:
        if isinstance(element.event, Prediction):
            batch.predictions.append(element.event)
        elif element.violation is not None:
            batch.invalid[topics.INPUTS] = batch.invalid.get(topics.INPUTS, 0) + 1


def touched_weeks(batch: DecodedBatch) -> dict[str, set[datetime]]:
    """Each device's weeks (Monday starts) holding the prediction time of an event of the batch.

    Stored or duplicate alike: a replayed event's week is refreshed again, which is harmless.
    """
    weeks: dict[str, set[datetime]] = {}
    for outcome in batch.outcomes:
        weeks.setdefault(outcome.stream.device_id, set()).add(week_of(outcome.prediction_time)[0])
    for prediction in batch.predictions:
        weeks.setdefault(prediction.device_id, set()).add(week_of(prediction.event_time)[0])
    return weeks


def store_batch(store: EvidenceStore, batch: DecodedBatch, counts: SinkCounts) -> None:
    """Write one decoded batch; every write skips what is already stored."""
    new_outcomes, new_predictions = store.record_field_events(batch.outcomes, batch.predictions)
    new_alerts = sum(store.record_alert(alert, actor=SINK_ACTOR) for alert in batch.alerts)
    total = len(batch.outcomes) + len(batch.predictions) + len(batch.alerts)
    counts.outcomes_new += new_outcomes
    counts.predictions_new += new_predictions
    counts.alerts_new += new_alerts
    counts.duplicates += total - new_outcomes - new_predictions - new_alerts
    counts.invalid += sum(batch.invalid.values())
    for topic, n in batch.invalid.items():
        counts.invalid_by_topic[topic] = counts.invalid_by_topic.get(topic, 0) + n


class EvidenceSink:
    """A kafka-python consumer group member that writes the pipeline's evidence to the store."""

    def __init__(
        self,
        store: EvidenceStore,
        bootstrap: str,
        *,
        group: str = SINK_GROUP,
        max_records: int = 500,
        poll_timeout_s: float = 1.0,
        security: KafkaSecurity | None = None,
        review_every_s: float | None = 60.0,
    ) -> None:
        self.store = store
        self.bootstrap = bootstrap
        self.security = security or KafkaSecurity()
        self.group = group
        self.max_records = max_records
        self.poll_timeout_s = poll_timeout_s
        self.counts = SinkCounts()
        self.review_every_s = review_every_s
        self._stopping = False
        self._reviewed_at = time.monotonic()
        self._unreviewed = False
        self._touched: dict[str, set[datetime]] | None = None
        """Weeks stored into per device since the last review; None: refresh every week
        (at start-up, what earlier runs stored may not have been reviewed)."""

    def note_stored(self, batch: DecodedBatch) -> None:
        """Remember the weeks a stored batch touched, for the next snapshot refresh."""
        if self._touched is not None:
            for device_id, weeks in touched_weeks(batch).items():
                self._touched.setdefault(device_id, set()).update(weeks)

    def review(self) -> None:
        """Refresh weekly snapshots (every week first, then the touched ones) and compare
        each site with its fleet."""
        touched = self._touched
        if touched is None:
            for device_id in self.store.field_devices():
                self.counts.snapshots += refresh_snapshots(self.store, device_id)
        else:
            for device_id, weeks in sorted(touched.items()):
                self.counts.snapshots += refresh_snapshots(self.store, device_id, weeks)
        self._touched = {}
        self.counts.fleet_alerts += len(review_fleet(self.store, utc_now()))
        self._reviewed_at, self._unreviewed = time.monotonic(), False

    def _review_if_due(self) -> None:
        every = self.review_every_s
        if every is not None and self._unreviewed and time.monotonic() - self._reviewed_at >= every:
            self.review()

    def stop(self) -> None:
        """Finish the batch in hand, commit it, and return from :meth:`run`."""
        self._stopping = True

    def install_signal_handlers(self) -> None:
        """SIGTERM and SIGINT stop the sink cleanly after the current batch."""

        def handle(signum: int, frame: FrameType | None) -> None:
            log.info("signal %s: stopping after the current batch", signum)
            self.stop()

        signal.signal(signal.SIGTERM, handle)
        signal.signal(signal.SIGINT, handle)

    def run(
        self,
        until_idle_s: float | None = None,
        on_batch: Callable[[SinkCounts], None] | None = None,
    ) -> SinkCounts:
        """Consume until stopped, or until no record arrived for ``until_idle_s`` seconds."""
        from kafka import KafkaConsumer
        from kafka.errors import CommitFailedError

        consumer = KafkaConsumer(
            *SINK_TOPICS,
            bootstrap_servers=self.bootstrap,
            group_id=self.group,
            client_id=f"{self.group}-consumer",
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            isolation_level="read_committed",
            max_poll_records=self.max_records,
            **self.security.kafka_python_kwargs(),
        )
        last_record = time.monotonic()
        try:
            while not self._stopping:
                polled: dict[Any, list[Any]] = consumer.poll(
                    timeout_ms=int(self.poll_timeout_s * 1000), max_records=self.max_records
                )
                records = [(r.topic, r.value) for batch in polled.values() for r in batch]
                if records:
                    batch = decode_records(records)
                    store_batch(self.store, batch, self.counts)
                    self.note_stored(batch)
                    # Only now are the records safely in the store: commit their offsets.
                    try:
                        consumer.commit()
                    except CommitFailedError as error:
                        # A rebalance took the partitions away; their new owner replays
                        # the batch, and the store skips what this one already wrote.
                        log.warning("offset commit failed after a rebalance: %s", error)
                    self.counts.records += len(records)
                    self.counts.batches += 1
                    self._unreviewed = True
                    last_record = time.monotonic()
                    if on_batch is not None:
                        on_batch(self.counts)
                elif not consumer.assignment():
                    # Waiting to join the group (e.g. for a crashed member's session to
                    # expire) is not idleness: nothing could have arrived yet.
                    last_record = time.monotonic()
                elif until_idle_s is not None and time.monotonic() - last_record >= until_idle_s:
                    break
                self._review_if_due()
        finally:
            consumer.close(autocommit=False)
        if self._unreviewed and self.review_every_s is not None:
            self.review()  # what the last batches brought is reviewed before returning
        return self.counts
