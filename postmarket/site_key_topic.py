"""Site public keys on the compacted ``pms.sitekeys.v1``: publish a registration, read them all.

Compacted by ``site|key_id``: the topic keeps the latest record of every key, so a
revocation replaces the registration it revokes, and a worker that starts later still
learns of both. Only public keys ever travel here.
"""

from __future__ import annotations

from collections.abc import Sequence

from postmarket import topics
from postmarket.authenticity import SiteKeyring
from postmarket.contracts import SiteKeyRegistration, encode
from postmarket.kafka_security import KafkaSecurity
from postmarket.topic_reader import read_to_end, valid_events

PUBLISH_TIMEOUT_S = 30.0


def publish_site_keys(
    registrations: Sequence[SiteKeyRegistration],
    bootstrap: str,
    security: KafkaSecurity | None = None,
) -> int:
    """Produce ``registrations`` (acks=all, idempotent) and wait for every acknowledgement.

    Raises ``kafka.errors.KafkaError`` if the broker does not acknowledge them.
    """
    from kafka import KafkaProducer

    producer = KafkaProducer(
        bootstrap_servers=bootstrap,
        client_id="postmarket-site-keys",
        acks="all",
        enable_idempotence=True,
        **(security or KafkaSecurity()).kafka_python_kwargs(),
    )
    try:
        futures = [
            producer.send(
                topics.SITE_KEYS, key=registration.as_key().encode(), value=encode(registration)
            )
            for registration in registrations
        ]
        producer.flush(timeout=PUBLISH_TIMEOUT_S)
        for future in futures:
            future.get(timeout=PUBLISH_TIMEOUT_S)
    finally:
        producer.close(timeout=PUBLISH_TIMEOUT_S)
    return len(registrations)


def read_site_keys(
    bootstrap: str, security: KafkaSecurity | None = None, timeout_s: float = 30.0
) -> SiteKeyring:
    """Every key registered so far (the latest record per key), read to the topic's end."""
    keyring = SiteKeyring()
    records = read_to_end(
        bootstrap,
        topics.SITE_KEYS,
        security=security,
        timeout_s=timeout_s,
        client_id="postmarket-site-keys",
    )
    for registration in valid_events(records, SiteKeyRegistration):
        keyring.apply(registration)
    return keyring
