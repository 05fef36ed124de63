"""Publishing events to Kafka with kafka-python: every record acknowledged, or an error.

Every producer of ours that must not lose a record (the collectors, ``postmarket replay``,
the central commands) is built from :func:`no_loss_producer_config`: one statement of what
makes a record, once acknowledged, kept and kept once, under the tuning each chooses.

The central commands (registry, site keys, re-baselining decisions) publish a few records
at a time and must not report success for a record the broker did not keep, so each send
waits for the acknowledgement of every in-sync replica (acks=all) through an idempotent
producer, which also keeps a retried send from being written twice.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from types import MappingProxyType
from typing import Any, Final

from postmarket.contracts import Contract, encode
from postmarket.kafka_security import KafkaSecurity

PUBLISH_TIMEOUT_S = 30.0

NO_LOSS: Final[Mapping[str, object]] = MappingProxyType(
    {
        # Acknowledged only once every in-sync replica has the record.
        "acks": "all",
        # A retried send is written once, and in order, per partition.
        "enable_idempotence": True,
        # Retry until delivery_timeout_ms (each producer's own bound), never give up sooner.
        "retries": 2**31 - 1,
        # The most an idempotent producer may have in flight and still keep the order.
        "max_in_flight_requests_per_connection": 5,
    }
)
"""The kafka-python settings that make a producer lose nothing; no producer tunes them."""


def no_loss_producer_config(
    bootstrap_servers: str,
    client_id: str,
    security: KafkaSecurity | None = None,
    **tuning: Any,
) -> dict[str, Any]:
    """Keyword arguments for a ``kafka.KafkaProducer`` that loses nothing: :data:`NO_LOSS`,
    the connection's security, and ``tuning`` (linger, batch size, compression, timeouts),
    which each producer chooses for its load but which may not restate a no-loss setting.

    >>> config = no_loss_producer_config("localhost:9092", "postmarket-example", linger_ms=5)
    >>> config["acks"], config["enable_idempotence"], config["linger_ms"]
    ('all', True, 5)
    >>> no_loss_producer_config("localhost:9092", "postmarket-example", acks=1)
    Traceback (most recent call last):
    ValueError: acks is a no-loss setting (postmarket.topic_writer.NO_LOSS), not tuning
    """
    restated = sorted(NO_LOSS.keys() & tuning.keys())
    if restated:
        raise ValueError(
            f"{', '.join(restated)} is a no-loss setting (postmarket.topic_writer.NO_LOSS),"
            " not tuning"
        )
    return {
        "bootstrap_servers": bootstrap_servers,
        "client_id": client_id,
        **NO_LOSS,
        **tuning,
        **(security or KafkaSecurity()).kafka_python_kwargs(),
    }


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

    producer = KafkaProducer(**no_loss_producer_config(bootstrap, client_id, security))
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
