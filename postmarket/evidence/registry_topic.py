"""The store's registry as ``RegistryEntry`` events on the compacted ``pms.registry.v1``.

Workers read claims and registration status from that topic, so what is registered through
the CLI reaches them only when published. Publishing is idempotent: the topic is compacted
by ``device|version``, so a re-published entry replaces the previous one with the same
content (only ``updated_at`` moves).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime

from postmarket import topics
from postmarket.contracts.codec import encode
from postmarket.contracts.events import RegistryEntry, utc_now
from postmarket.evidence.store import DeviceView, VersionView
from postmarket.kafka_security import KafkaSecurity
from postmarket.versions import ChangeClass, change_class, most_significant_change

PUBLISH_TIMEOUT_S = 30.0


def version_change_class(previous: VersionView | None, current: VersionView) -> ChangeClass | None:
    """The class of the change that made ``current`` from the device's previous version."""
    if previous is None:
        return None
    component = most_significant_change(previous.version, current.version)
    return None if component is None else change_class(component)


def registry_entries(
    devices: Iterable[DeviceView], updated_at: datetime | None = None
) -> list[RegistryEntry]:
    """One entry per device version: status, change class and claims, oldest version first."""
    stamp = updated_at or utc_now()
    entries: list[RegistryEntry] = []
    for device in devices:
        previous: VersionView | None = None
        for view in device.versions:  # DeviceView keeps versions in version order
            entries.append(
                RegistryEntry(
                    device_id=device.device_id,
                    device_version=str(view.version),
                    registration_status=view.registration_status,  # type: ignore[arg-type]
                    change_class=version_change_class(previous, view),
                    claims=view.claims,
                    updated_at=stamp,
                )
            )
            previous = view
    return entries


def publish_registry(
    entries: Sequence[RegistryEntry], bootstrap: str, security: KafkaSecurity | None = None
) -> int:
    """Produce ``entries`` keyed ``device|version`` (acks=all, idempotent); how many sent.

    Raises ``kafka.errors.KafkaError`` if the broker does not acknowledge every entry.
    """
    from kafka import KafkaProducer

    producer = KafkaProducer(
        bootstrap_servers=bootstrap,
        client_id="postmarket-registry-publisher",
        acks="all",
        enable_idempotence=True,
        **(security or KafkaSecurity()).kafka_python_kwargs(),
    )
    try:
        futures = [
            producer.send(topics.REGISTRY, key=entry.as_key().encode(), value=encode(entry))
            for entry in entries
        ]
        producer.flush(timeout=PUBLISH_TIMEOUT_S)
        for future in futures:
            future.get(timeout=PUBLISH_TIMEOUT_S)
    finally:
        producer.close(timeout=PUBLISH_TIMEOUT_S)
    return len(entries)
