"""Versions seen in the field, judged against the registry under the change-control policy."""

from __future__ import annotations

from collections.abc import Iterable

from postmarket.contracts.events import RegistryEntry
from postmarket.unregistered_change import DeviceRegistry
from postmarket.versions import Version


def device_registry(entries: Iterable[RegistryEntry], device_id: str) -> DeviceRegistry:
    """What the registry topic says about one device: the versions registered for it."""
    registered = frozenset(
        Version.parse(entry.device_version)
        for entry in entries
        if entry.device_id == device_id and entry.registration_status == "registered"
    )
    return DeviceRegistry(device_id=device_id, registered_versions=registered)
