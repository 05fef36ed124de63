"""Delivering events to the central Kafka: acks from all replicas, idempotent, confirmed.

``deliver`` returns only when the broker has acknowledged every event, so a caller can
mark them sent in its outbox; an error names the topic and what failed, never the payload.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from types import TracebackType

from kafka import KafkaProducer
from kafka.errors import KafkaError

from postmarket import topics
from postmarket.authenticity import RecordSigner
from postmarket.contracts import Contract, FollowUp, Prediction, encode
from postmarket.kafka_security import KafkaSecurity
from postmarket.topic_writer import no_loss_producer_config

DELIVERY_TIMEOUT_S = 30.0


class DeliveryError(RuntimeError):
    """The broker did not acknowledge an event in time; it must be resent."""


@dataclass(frozen=True)
class Delivery:
    """Where the broker stored one event."""

    topic: str
    partition: int
    offset: int


@dataclass(frozen=True)
class EncodedEvent:
    """A record as it goes on the wire: topic, key, JSON bytes, and the record headers (the
    site's signature, see :mod:`postmarket.authenticity`). An outbox row is one v1 event
    (keyed by its case pseudonym); a v2 batch of them is keyed by site
    (:mod:`collectors.batching`)."""

    topic: str
    key: bytes
    value: bytes
    headers: tuple[tuple[str, bytes], ...] = ()

    def signed(self, signer: RecordSigner | None) -> EncodedEvent:
        """This record with ``signer``'s signature headers (as it is, without a signer).

        Ed25519 signatures are deterministic: a resend carries the very same bytes.
        """
        if signer is None:
            return self
        headers = tuple(signer.sign(self.topic, self.key, self.value))
        return EncodedEvent(self.topic, self.key, self.value, headers)


def topic_and_key(event: Contract) -> tuple[str, bytes]:
    """The topic of a collector event and its key (the case pseudonym: co-partitioning)."""
    if isinstance(event, Prediction):
        return topics.PREDICTIONS, event.case_pseudonym.encode()
    if isinstance(event, FollowUp):
        return topics.FOLLOWUPS, event.case_pseudonym.encode()
    raise TypeError(f"collectors send predictions and follow-ups, not {type(event).__name__}")


class EventProducer:
    """A kafka-python producer configured for no loss (:data:`postmarket.topic_writer.NO_LOSS`:
    acks=all, idempotence, retries), tuned for small batches confirmed one by one."""

    def __init__(
        self,
        bootstrap_servers: str,
        client_id: str = "postmarket-collector",
        security: KafkaSecurity | None = None,
    ) -> None:
        self._producer = KafkaProducer(
            **no_loss_producer_config(
                bootstrap_servers,
                client_id,
                security,
                # A send gives up when deliver stops waiting, so a DeliveryError is final.
                delivery_timeout_ms=int(DELIVERY_TIMEOUT_S * 1000),
                request_timeout_ms=10_000,
                linger_ms=5,
                compression_type="gzip",
            )
        )

    def deliver(
        self, events: Iterable[Contract], signer: RecordSigner | None = None
    ) -> list[Delivery]:
        """Send events as v1 records, one each (signed by ``signer``), and wait until the
        broker acknowledged each one."""
        records = []
        for event in events:
            topic, key = topic_and_key(event)
            records.append(EncodedEvent(topic, key, encode(event)).signed(signer))
        return self.deliver_encoded(records)

    def deliver_encoded(self, records: Iterable[EncodedEvent]) -> list[Delivery]:
        """Send already-encoded records (events or batches of them, from the outbox) and wait
        for every acknowledgement."""
        pending = []
        try:
            for record in records:
                future = self._producer.send(
                    record.topic,
                    key=record.key,
                    value=record.value,
                    headers=list(record.headers) or None,
                )
                pending.append((record.topic, future))
            self._producer.flush(timeout=DELIVERY_TIMEOUT_S)
        except KafkaError as error:
            raise DeliveryError(f"send failed ({type(error).__name__})") from None
        deliveries = []
        for topic, future in pending:
            try:
                metadata = future.get(timeout=DELIVERY_TIMEOUT_S)
            except KafkaError as error:
                raise DeliveryError(f"{topic}: not acknowledged ({type(error).__name__})") from None
            deliveries.append(Delivery(metadata.topic, metadata.partition, metadata.offset))
        return deliveries

    def close(self) -> None:
        self._producer.close(timeout=DELIVERY_TIMEOUT_S)

    def __enter__(self) -> EventProducer:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()
