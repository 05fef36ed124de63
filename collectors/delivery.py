"""The delivery loop: drain the outbox into Kafka, resending until acknowledged.

A batch leaves the outbox only after the broker acknowledged every event in it
(acks=all, idempotent producer). When the broker is unreachable or does not acknowledge
in time the batch stays, the failure is counted, the producer is rebuilt (a fresh
idempotent session) and the loop waits with capped exponential backoff before retrying,
for as long as it takes. Restarting the collector resumes from the outbox on disk.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from typing import Protocol

from kafka.errors import KafkaError

from collectors.metrics import CollectorMetrics
from collectors.outbox import Outbox
from collectors.producer import Delivery, DeliveryError, EncodedEvent
from postmarket.authenticity import RecordSigner

log = logging.getLogger(__name__)


class RecordSender(Protocol):
    """What the loop needs from a producer (``EventProducer`` in production)."""

    def deliver_encoded(self, records: Sequence[EncodedEvent]) -> list[Delivery]: ...

    def close(self) -> None: ...


def backoff_seconds(failures: int, initial: float = 0.5, cap: float = 30.0) -> float:
    """Wait before retry number ``failures``: doubling from ``initial``, at most ``cap``."""
    return float(min(cap, initial * 2 ** max(0, failures - 1)))


class DeliveryLoop:
    """Moves events from an :class:`Outbox` to Kafka, one acknowledged batch at a time."""

    def __init__(
        self,
        outbox: Outbox,
        connect: Callable[[], RecordSender],
        metrics: CollectorMetrics | None = None,
        batch_size: int = 500,
        max_backoff: float = 30.0,
        signer: RecordSigner | None = None,
    ) -> None:
        self.outbox = outbox
        self.signer = signer
        """Signs each record as it leaves (the site's key): a key rotated or replaced while
        events wait in the outbox signs them, and a resend repeats the same signature."""
        self.batch_size = batch_size
        self.max_backoff = max_backoff
        self._connect = connect
        self._metrics = metrics
        self._sender: RecordSender | None = None
        self._failures = 0

    def send_batch(self) -> int:
        """Send the oldest pending batch; returns how many events were acknowledged.

        Raises :class:`DeliveryError` when the batch could not be delivered (it stays).
        """
        batch = self.outbox.pending(self.batch_size)
        if not batch:
            return 0
        try:
            if self._sender is None:
                self._sender = self._connect()
            records = [event.record.signed(self.signer) for event in batch]
            deliveries = self._sender.deliver_encoded(records)
        except (DeliveryError, KafkaError) as error:
            self._drop_sender()
            reason = str(error) if isinstance(error, DeliveryError) else type(error).__name__
            self.outbox.record_attempt([event.event_id for event in batch], reason)
            if self._metrics is not None:
                self._metrics.send_failures.inc()
            raise DeliveryError(f"{len(batch)} events not delivered: {error}") from None
        sent = self.outbox.acknowledge(zip(batch, deliveries, strict=True))
        if self._metrics is not None:
            self._metrics.events_sent.inc(sent)
            self._metrics.last_successful_send.set(time.time())
        return sent

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
