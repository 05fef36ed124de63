"""The store's registry as ``RegistryEntry`` events on the compacted ``pms.registry.v1``.

Workers read claims and registration status from that topic, so what is registered through
the CLI reaches them only when published. Publishing is idempotent: the topic is compacted
by ``device|version``, so a re-published entry replaces the previous one with the same
content (only ``updated_at`` moves).

The prevalence each version's scores are calibrated at is kept in the store with the
version (``registry add-version --reference-prevalence``, ``registry set-reference-prevalence``).
Publishing may override it (``registry publish --reference-prevalence``): a value given for
the version wins over one given for its device, which wins over the stored one. A version
with none of them is published with None (unknown: the workers do not adjust their
label-free estimate to a site's prevalence).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime

from evidence.store import DeviceView, VersionView
from postmarket import topics
from postmarket.contracts.events import RegistryEntry, utc_now
from postmarket.kafka_security import KafkaSecurity
from postmarket.topic_writer import publish_events
from postmarket.versions import ChangeClass, change_class, most_significant_change


def version_change_class(previous: VersionView | None, current: VersionView) -> ChangeClass | None:
    """The class of the change that made ``current`` from the device's previous version."""
    if previous is None:
        return None
    component = most_significant_change(previous.version, current.version)
    return None if component is None else change_class(component)


def parse_reference_prevalence(texts: Iterable[str]) -> dict[str, float]:
    """``DEVICE=P`` or ``DEVICE@VERSION=P`` texts -> {``device`` or ``device|version``: P}.

    Raises ValueError naming the text when it is not of that form, P is not a number
    strictly between 0 and 1, or one device (version) is given twice.

    >>> parse_reference_prevalence(["dr-screen=0.24", "dr-screen@2.2.0.0=0.3"])
    {'dr-screen': 0.24, 'dr-screen|2.2.0.0': 0.3}
    """
    parsed: dict[str, float] = {}
    for text in texts:
        target, equals, number = text.rpartition("=")
        device, at, version = target.partition("@")
        if not equals or not device or (at and not version):
            raise ValueError(f"{text!r} is not DEVICE=P or DEVICE@VERSION=P")
        try:
            prevalence = float(number)
        except ValueError:
            raise ValueError(f"{text!r}: {number!r} is not a number") from None
        if not (math.isfinite(prevalence) and 0.0 < prevalence < 1.0):
            raise ValueError(f"{text!r}: reference_prevalence must lie strictly between 0 and 1")
        key = f"{device}|{version}" if at else device
        if key in parsed:
            raise ValueError(f"{text!r}: a second prevalence for {key.replace('|', '@')}")
        parsed[key] = prevalence
    return parsed


def registry_entries(
    devices: Iterable[DeviceView],
    updated_at: datetime | None = None,
    reference_prevalence: Mapping[str, float] | None = None,
) -> list[RegistryEntry]:
    """One entry per device version: status, change class, claims and reference prevalence,
    oldest version first.

    Each version's reference prevalence is the one stored with it, unless overridden:
    ``reference_prevalence`` maps ``device|version`` (:meth:`RegistryEntry.as_key`) or a
    device id (all its versions) to the prevalence the scores are calibrated at, and a
    version given by its key wins over its device, which wins over the stored value. A
    version with none of them gets None (unknown). Raises ValueError when a key names no
    device or version in ``devices``.
    """
    stamp = updated_at or utc_now()
    prevalences = dict(reference_prevalence or {})
    entries: list[RegistryEntry] = []
    for device in devices:
        previous: VersionView | None = None
        for view in device.versions:  # DeviceView keeps versions in version order
            key = f"{device.device_id}|{view.version}"
            entries.append(
                RegistryEntry(
                    device_id=device.device_id,
                    device_version=str(view.version),
                    registration_status=view.registration_status,  # type: ignore[arg-type]
                    change_class=version_change_class(previous, view),
                    claims=view.claims,
                    updated_at=stamp,
                    reference_prevalence=prevalences.get(
                        key, prevalences.get(device.device_id, view.reference_prevalence)
                    ),
                )
            )
            previous = view
    unknown = set(prevalences) - {e.as_key() for e in entries} - {e.device_id for e in entries}
    if unknown:
        names = ", ".join(sorted(key.replace("|", "@") for key in unknown))
        raise ValueError(
            f"reference_prevalence names no device or version in the registry: {names}"
        )
    return entries


def publish_registry(
    entries: Sequence[RegistryEntry], bootstrap: str, security: KafkaSecurity | None = None
) -> int:
    """Produce ``entries`` keyed ``device|version`` (acks=all, idempotent); how many sent.

    Raises ``kafka.errors.KafkaError`` if the broker does not acknowledge every entry.
    """
    return publish_events(
        topics.REGISTRY,
        [(entry.as_key(), entry) for entry in entries],
        bootstrap,
        security,
        client_id="postmarket-registry-publisher",
    )
