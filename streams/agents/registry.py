"""The registry agent: keep every worker's copy of registrations and claims current."""

from __future__ import annotations

import logging
from typing import Any, cast

from postmarket.contracts import ContractViolation, RegistryEntry, decode
from postmarket.metrics import REGISTRATION_STATUSES
from streams.app import app, metrics
from streams.casefile import RecordPosition
from streams.channels import registry, registry_updates
from streams.chart_warming import RegisteredCharts
from streams.deadletter import send_dead_letter
from streams.held_acks import HeldAcks, ack_all, flush_every, handle_holding_acks
from streams.live_streams import contents
from streams.site_streams import POLICY

unacked = HeldAcks()
"""Each record is acked once handled: a registry record Faust skips during a stop or a
rebalance is read again (see streams.transport), never lost to every worker's copy."""
registered_charts = RegisteredCharts(POLICY)
"""The versions whose labelled charts this worker designed (:mod:`streams.chart_warming`)."""
logger = logging.getLogger(__name__)


@app.agent(registry_updates)
async def follow_registry(stream: Any) -> None:
    """Copy each registry entry into the global table every worker reads claims from."""
    await handle_holding_acks(stream, _follow, unacked, ack_handled, 1)


@app.task
async def ack_handled_periodically() -> None:
    await flush_every(1.0, ack_handled, "registry acks")


async def ack_handled() -> None:
    """The table writes go through Faust's producer, which it flushes before committing."""
    await ack_all(unacked.take())


async def _follow(event: Any) -> None:
    message = event.message
    metrics.events_consumed.labels(message.topic).inc()
    try:
        entry = decode(RegistryEntry, event.value or b"")
    except ContractViolation as violation:
        position = RecordPosition(message.topic, message.partition, message.offset)
        await send_dead_letter(position, event.value, violation)
        return
    registry[entry.as_key()] = entry.model_dump(mode="json")
    publish_registration(entry)


@app.on_rebalance_complete.connect
async def _design_before_streams_resume(sender: Any, /, *args: Any, **kwargs: Any) -> None:
    # Faust sends this once the tables are recovered and before the streams resume: the
    # versions registered by then have their charts before their first event is read
    # (a worker restarting on a backlog designed them at that event, stalling its stream's
    # partition; about 0.1 s per version's claims, cold). Recovery is not marked complete
    # yet here, so the registry is read as it is; the timer designs what arrives later.
    try:
        registered_charts.design_new(contents(registry))
    except Exception as error:  # the streams resume anyway: a new stream designs its own
        logger.warning("designing the registered versions' charts failed: %s", error)


@app.timer(interval=1.0)
async def design_registered_charts() -> None:
    """Registered versions' charts designed within a second of their entries' arrival, from
    the table: those this worker's agent reads and those the other workers read alike."""
    design_recovered_registry()


def design_recovered_registry() -> int:
    """Design the charts of every version in this worker's copy of the registry: all it
    holds once recovered at start (most at the rebalance's end, before the streams resume),
    then each new entry, not at the version's first prediction, where it would stall every
    stream behind it (predictions within a second of their registration design their own)."""
    if not cast(Any, app.tables).recovery.completed.is_set():  # Faust's TableManager, untyped
        return 0  # a registry still recovering: design from the whole of it
    return registered_charts.design_new(contents(registry))


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
