"""Publishing events to Kafka with kafka-python: every record acknowledged, or an error.

The central commands (registry, site keys, re-baselining decisions) publish a few records
at a time and must not report success for a record the broker did not keep, so each send
waits for the acknowledgement of every in-sync replica (acks=all) through an idempotent
producer, which also keeps a retried send from being written twice.
"""

from __future__ import annotations

from collections.abc import Sequence

from postmarket.contracts import Contract, encode
from postmarket.kafka_security import KafkaSecurity

PUBLISH_TIMEOUT_S = 30.0


def publish_events(
    topic: str,
    keyed_events: Sequence[tuple[str, Contract]],
    bootstrap: str,
    security: KafkaSecurity | None = None,
    *,
    client_id: str,
) -> int:
    """Produce each ``(key, event)`` to ``topic`` and wait for every acknowledgement;
    how many sent.

    Raises ``kafka.errors.KafkaError`` if the broker does not acknowledge every record.
    """
    from kafka import KafkaProducer

    producer = KafkaProducer(
        bootstrap_servers=bootstrap,
        client_id=client_id,
        acks="all",
        enable_idempotence=True,
        **(security or KafkaSecurity()).kafka_python_kwargs(),
    )
    try:
        futures = [
            producer.send(topic, key=key.encode(), value=encode(event))
            for key, event in keyed_events
        ]
        producer.flush(timeout=PUBLISH_TIMEOUT_S)
        for future in futures:
            future.get(timeout=PUBLISH_TIMEOUT_S)
    finally:
        producer.close(timeout=PUBLISH_TIMEOUT_S)
    return len(keyed_events)
