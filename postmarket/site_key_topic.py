"""Site public keys on the compacted ``pms.sitekeys.v1``: publish a registration, read them all.

Compacted by ``site|key_id``: the topic keeps the latest record of every key, so a
revocation replaces the registration it revokes, and a worker that starts later still
learns of both. Only public keys ever travel here.
"""

from __future__ import annotations

from collections.abc import Sequence

from postmarket import topics
from postmarket.authenticity import SiteKeyring
from postmarket.contracts import SiteKeyRegistration
from postmarket.kafka_security import KafkaSecurity
from postmarket.topic_reader import read_to_end, valid_events
from postmarket.topic_writer import publish_events


def publish_site_keys(
    registrations: Sequence[SiteKeyRegistration],
    bootstrap: str,
    security: KafkaSecurity | None = None,
) -> int:
    """Produce ``registrations`` (acks=all, idempotent) and wait for every acknowledgement.

    Raises ``kafka.errors.KafkaError`` if the broker does not acknowledge them.
    """
    return publish_events(
        topics.SITE_KEYS,
        [(registration.as_key(), registration) for registration in registrations],
        bootstrap,
        security,
        client_id="postmarket-site-keys",
    )


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
