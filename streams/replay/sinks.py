"""Where a replay's records go: the broker, or a counter for a dry run."""

from __future__ import annotations

import functools
from typing import Protocol

from postmarket.authenticity import RecordSigner
from postmarket.kafka_security import KafkaSecurity
from postmarket.topic_writer import no_loss_producer_config


class EventSink(Protocol):
    """Where converted records go: Kafka for a replay, a counter for a dry run."""

    def send(self, topic: str, key: bytes, value: bytes, events: int = 1) -> None:
        """Queue one record carrying ``events`` events; must not wait for its acknowledgement."""

    def finish(self) -> int:
        """Wait until every queued record is acknowledged; return how many events were not."""


class CountingSink:
    """A sink that only counts (``--dry-run``, tests, the read/convert benchmark)."""

    def __init__(self) -> None:
        self.sent = 0
        """Events (a batch record counts each of its events)."""

    def send(self, topic: str, key: bytes, value: bytes, events: int = 1) -> None:
        self.sent += events

    def finish(self) -> int:
        return 0


class KafkaSink:
    """A kafka-python producer with the collector's guarantees, tuned for bulk.

    The no-loss settings of :mod:`collectors.producer` (acks=all, idempotence, retries:
    :data:`postmarket.topic_writer.NO_LOSS`); unlike the collector (which confirms each
    outbox batch before marking it sent) a replay keeps the pipe full and only counts
    failures in callbacks, waiting for the acknowledgements once at the end.
    Nothing is lost by that: a replay that reports unacknowledged events is run again, and
    its event ids (from the file, or derived from each row) make the second run a duplicate
    the workers skip.
    """

    def __init__(
        self,
        bootstrap_servers: str,
        compression: str | None = "gzip",
        linger_ms: int = 20,
        signer: RecordSigner | None = None,
        security: KafkaSecurity | None = None,
    ) -> None:
        from kafka import KafkaProducer

        self._signer = signer
        """Signs every record (a key registered for the replayed site; see ``--signing-key``)."""
        self._producer = KafkaProducer(
            **no_loss_producer_config(
                bootstrap_servers,
                "postmarket-replay",
                # On a secure broker: a site principal (only sites may write the input topics).
                security,
                delivery_timeout_ms=120_000,
                request_timeout_ms=30_000,
                linger_ms=linger_ms,
                batch_size=512 * 1024,
                compression_type=compression,
            )
        )
        self.failed = 0
        """Events (not records) the broker did not acknowledge."""
        self.last_error: str | None = None

    def _on_error(self, events: int, error: BaseException) -> None:
        self.failed += events
        self.last_error = type(error).__name__

    def send(self, topic: str, key: bytes, value: bytes, events: int = 1) -> None:
        from kafka.errors import KafkaError

        try:
            headers = self._signer.sign(topic, key, value) if self._signer else None
            future = self._producer.send(topic, key=key, value=value, headers=headers)
        except KafkaError as error:
            self._on_error(events, error)
            return
        future.add_errback(functools.partial(self._on_error, events))

    def finish(self) -> int:
        self._producer.flush()
        return self.failed

    def close(self) -> None:
        self._producer.close(timeout=30)
