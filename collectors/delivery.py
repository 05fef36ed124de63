"""The delivery loop: drain the outbox into Kafka, resending until acknowledged.

Each round reads the oldest pending events and sends them as the input contract says
(:mod:`collectors.batching`): v2 signed batches of this site's events on ``pms.inputs.v2``,
or v1 one record per event. A batch leaves the outbox only after the broker acknowledged
every record carrying its events (acks=all, idempotent producer), and each event is
audited with the coordinates of the record that carried it. Records that were not
acknowledged are resent as they were (same events, same bytes, same signature) while the
collector runs; after a restart they are planned again from the outbox.

When the broker is unreachable or does not acknowledge in time the events stay, the
failure is counted, the producer is rebuilt (a fresh idempotent session) and the loop
waits with capped exponential backoff before retrying, for as long as it takes.
Restarting the collector resumes from the outbox on disk.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from typing import Protocol

from kafka.errors import KafkaError

from collectors.batching import (
    DEFAULT_INPUT_CONTRACT,
    BatchRefused,
    InputContract,
    OutgoingRecord,
    batch_records,
    single_records,
)
from collectors.metrics import CollectorMetrics
from collectors.outbox import Outbox, PendingEvent
from collectors.producer import Delivery, DeliveryError, EncodedEvent
from postmarket.authenticity import RecordSigner
from postmarket.contracts.batches import MAX_BATCH_BYTES
from postmarket.contracts.events import MAX_BATCH_EVENTS

log = logging.getLogger(__name__)


class RecordSender(Protocol):
    """What the loop needs from a producer (``EventProducer`` in production)."""

    def deliver_encoded(self, records: Sequence[EncodedEvent]) -> list[Delivery]: ...

    def close(self) -> None: ...


def backoff_seconds(failures: int, initial: float = 0.5, cap: float = 30.0) -> float:
    """Wait before retry number ``failures``: doubling from ``initial``, at most ``cap``."""
    return float(min(cap, initial * 2 ** max(0, failures - 1)))


class DeliveryLoop:
    """Moves events from an :class:`Outbox` to Kafka, one acknowledged round at a time."""

    def __init__(
        self,
        outbox: Outbox,
        connect: Callable[[], RecordSender],
        metrics: CollectorMetrics | None = None,
        batch_size: int = MAX_BATCH_EVENTS,
        max_backoff: float = 30.0,
        signer: RecordSigner | None = None,
        input_contract: InputContract = DEFAULT_INPUT_CONTRACT,
        site_id: str | None = None,
        max_batch_bytes: int = MAX_BATCH_BYTES,
    ) -> None:
        self.outbox = outbox
        self.signer = signer
        """Signs each record as it leaves (the site's key): a key rotated or replaced while
        events wait in the outbox signs them, and a resend repeats the same signature."""
        self.batch_size = batch_size
        """Events read from the outbox per round (v2: cut into batches of at most
        ``MAX_BATCH_EVENTS`` events and ``max_batch_bytes`` bytes)."""
        self.max_backoff = max_backoff
        self.input_contract = input_contract
        self.site_id = site_id
        """This collector's site; v2 refuses to batch an event of any other (None: the
        site of the oldest pending event, and every other must be the same)."""
        self.max_batch_bytes = max_batch_bytes
        self._connect = connect
        self._metrics = metrics
        self._sender: RecordSender | None = None
        self._unacknowledged: list[OutgoingRecord] = []
        self._failures = 0

    def send_batch(self) -> int:
        """Send the oldest pending events; returns how many events were acknowledged.

        Raises :class:`DeliveryError` when they could not be delivered (they stay, and the
        same records are resent next time).
        """
        outgoing = self._unacknowledged or self._plan()
        if not outgoing:
            return 0
        events = [event for record in outgoing for event in record.events]
        try:
            if self._sender is None:
                self._sender = self._connect()
            deliveries = self._sender.deliver_encoded([record.record for record in outgoing])
        except (DeliveryError, KafkaError) as error:
            self._unacknowledged = outgoing
            self._drop_sender()
            reason = str(error) if isinstance(error, DeliveryError) else type(error).__name__
            self._count_failure(events, reason)
            raise DeliveryError(f"{len(events)} events not delivered: {error}") from None
        self._unacknowledged = []
        sent = self.outbox.acknowledge(
            (event, delivery)
            for record, delivery in zip(outgoing, deliveries, strict=True)
            for event in record.events
        )
        if self._metrics is not None:
            self._metrics.events_sent.inc(sent)
            self._metrics.last_successful_send.set(time.time())
        return sent

    def _plan(self) -> list[OutgoingRecord]:
        """The signed records of the oldest pending events, as the input contract says."""
        pending = self.outbox.pending(self.batch_size)
        if self.input_contract == "v1":
            return [record.signed(self.signer) for record in single_records(pending)]
        try:
            records = batch_records(
                pending,
                self.site_id,
                more_waiting=len(pending) == self.batch_size,
                max_events=min(self.batch_size, MAX_BATCH_EVENTS),
                max_bytes=self.max_batch_bytes,
            )
        except BatchRefused as refused:
            # Not a network problem: it repeats until the configuration is fixed, so say so.
            log.error("the outbox cannot be sent as v2 batches: %s", refused)
            self._count_failure(pending, str(refused))
            raise DeliveryError(f"{len(pending)} events not sent: {refused}") from None
        return [record.signed(self.signer) for record in records]

    def _count_failure(self, events: Sequence[PendingEvent], reason: str) -> None:
        self.outbox.record_attempt([event.event_id for event in events], reason)
        if self._metrics is not None:
            self._metrics.send_failures.inc()

    def drain(self, stop: threading.Event | None = None) -> int:
        """Send until the outbox is empty (or ``stop`` is set), retrying through outages."""
        stop = stop or threading.Event()
        total = 0
        while not stop.is_set():
            try:
                sent = self.send_batch()
            except DeliveryError as error:
                self._failures += 1
                wait = backoff_seconds(self._failures, cap=self.max_backoff)
                log.warning("%s; retrying in %.1f s", error, wait)
                stop.wait(wait)
                continue
            self._failures = 0
            if sent == 0:
                break
            total += sent
        return total

    def run(self, stop: threading.Event, idle_wait: float = 1.0) -> None:
        """Deliver forever: drain, then look for new events every ``idle_wait`` seconds."""
        while not stop.is_set():
            self.drain(stop)
            stop.wait(idle_wait)
        self.close()

    def _drop_sender(self) -> None:
        sender, self._sender = self._sender, None
        if sender is not None:
            try:
                sender.close()
            except KafkaError:
                log.debug("closing a failed producer raised", exc_info=True)

    def close(self) -> None:
        self._drop_sender()
