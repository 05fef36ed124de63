"""The unregistered-change check the stream worker runs when a version is first seen at a site.

Pure: the worker passes a snapshot of the device's registry (:class:`DeviceRegistry`, which
the evidence store builds) and the active change-control policy, and gets either nothing or
an :class:`~postmarket.contracts.Alert` with detector ``unregistered_change`` to send down the
same alert path as every detector's. The alert id is derived from the stream, so a replayed
first sighting produces the same alert and the store keeps one.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime

from postmarket.contracts.events import Alert, StreamKey, utc_now
from postmarket.versions import (
    ChangeControlPolicy,
    ChangeRecord,
    Version,
    registration_required,
)

DETECTOR = "unregistered_change"
_ALERT_NAMESPACE = uuid.UUID("6f0d7c1e-2b8a-4d5e-9a43-0c1f6e8b7a21")


@dataclass(frozen=True)
class DeviceRegistry:
    """What the registry knows about one device: its registered versions and change records."""

    device_id: str
    registered_versions: frozenset[Version] = frozenset()
    change_records: Mapping[Version, ChangeRecord] = field(default_factory=dict)

    def base_of(self, version: Version) -> Version | None:
        """The newest registered version not newer than ``version`` (what it derives from)."""
        candidates = [
            registered for registered in self.registered_versions if registered <= version
        ]
        return max(candidates, default=None)


def unregistered_change_alert_id(stream: StreamKey) -> uuid.UUID:
    """The one alert id of an unregistered change on a stream (stable across replays)."""
    return uuid.uuid5(_ALERT_NAMESPACE, f"{DETECTOR}|{stream.as_key()}")


def unregistered_change_alert(
    stream: StreamKey,
    first_seen_at: datetime,
    registry: DeviceRegistry,
    policy: ChangeControlPolicy,
    raised_at: datetime | None = None,
) -> Alert | None:
    """An alert if ``stream``'s version may not run in the field under ``policy``, else None.

    The version may run if it is registered, or if its change from the registered version
    it derives from needs no registration (e.g. only B changed under ``nmpa-syzb``).
    """
    if stream.device_id != registry.device_id:
        raise ValueError(
            f"registry of device {registry.device_id!r} cannot judge device {stream.device_id!r}"
        )
    field_version = Version.parse(stream.device_version)
    if field_version in registry.registered_versions:
        return None
    base = registry.base_of(field_version)
    decision = registration_required(
        base, field_version, registry.change_records.get(field_version), policy
    )
    if not decision.required:
        return None
    return Alert(
        alert_id=unregistered_change_alert_id(stream),
        stream=stream,
        detector=DETECTOR,
        statistic=1.0,
        threshold=1.0,
        evidence={"registered_versions": len(registry.registered_versions)},
        first_case_time=first_seen_at,
        last_case_time=first_seen_at,
        raised_at=raised_at or utc_now(),
        severity="critical",
        message=(
            f"version {field_version} of {stream.device_id} is running at site {stream.site_id} "
            f"without the change registration it needs: {decision.reason}"
        ),
    )
