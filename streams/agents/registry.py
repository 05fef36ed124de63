"""The registry agent: keep every worker's copy of registrations and claims current."""

from __future__ import annotations

from typing import Any

from postmarket.contracts import ContractViolation, RegistryEntry, decode
from postmarket.metrics import REGISTRATION_STATUSES
from streams.app import app, metrics
from streams.casefile import RecordPosition
from streams.channels import registry, registry_updates
from streams.deadletter import send_dead_letter


@app.agent(registry_updates)
async def follow_registry(stream: Any) -> None:
    """Copy each registry entry into the global table every worker reads claims from."""
    async for event in stream.events():
        message = event.message
        metrics.events_consumed.labels(message.topic).inc()
        try:
            entry = decode(RegistryEntry, event.value or b"")
        except ContractViolation as violation:
            position = RecordPosition(message.topic, message.partition, message.offset)
            await send_dead_letter(position, event.value, violation)
            continue
        registry[entry.as_key()] = entry.model_dump(mode="json")
        publish_registration(entry)


def publish_registration(entry: RegistryEntry) -> None:
    """One-hot registration status of a version, for dashboards and the rules."""
    for status in REGISTRATION_STATUSES:
        value = 1.0 if status == entry.registration_status else 0.0
        metrics.version_registration.labels(entry.device_id, entry.device_version, status).set(
            value
        )


@app.timer(interval=30.0)
async def refresh_registrations() -> None:
    """Every worker holds the whole registry: show it after a restart too."""
    for state in list(registry.values()):
        if state:
            publish_registration(RegistryEntry.model_validate(state, strict=False))
