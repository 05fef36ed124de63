"""The pooled agent: per (device, version, task), test the version on all its sites' counts.

It reads the cumulative tallies the join sends (``pms.version-tallies.v1``, keyed by
``device|version|task``), keeps each group's :class:`~streams.pooled.PooledMonitor` in a
changelogged table, and raises its alerts on the version's pooled stream key. Tallies are
idempotent (a site's tally at or below the kept sequence changes nothing), so a tally read
again after a crash, or sent twice, is simply skipped: no applied positions to keep.
"""

from __future__ import annotations

import logging
from typing import Any

from postmarket import topics
from postmarket.contracts import (
    RegistryEntry,
    VersionTally,
    decode,
    encode,
    utc_now,
    version_key,
)
from postmarket.contracts.events import StreamKey
from streams.app import app, consumed, duplicates, metrics, owned_partitions, settings
from streams.casefile import RecordPosition
from streams.channels import (
    alerts,
    pooled_monitors,
    produce,
    registry,
    send_table_state,
    set_table_state,
    version_tallies,
)
from streams.charted_claims import claimed_lower_bounds, claimed_performance
from streams.deadletter import dead_lettering_failures
from streams.held_acks import HeldAcks, flush_every, flush_then_ack, handle_holding_acks
from streams.monitor_policy import TESTS_PER_STREAM, ClaimedMetric, planned_policy
from streams.pooled import PooledMonitor
from streams.pooled_alerts import group_stream, pooled_alert, pooled_stream
from streams.retention import key_partition
from streams.stream_monitor import CELLS

POLICY = planned_policy(settings)
logger = logging.getLogger(__name__)

_budget = POLICY.budget()
if _budget is not None:
    metrics.pooled_false_alarm_budget.set(_budget.pooled_false_alarms_per_year(TESTS_PER_STREAM))

POOLED_FLUSH_EVENTS = 500
POOLED_FLUSH_INTERVAL_S = 0.1
"""A group's changed state goes to its table once per this many tallies or this long, as the
join's stream states do (one small tally per stream per flush of the join)."""
unwritten: dict[str, tuple[int, PooledMonitor]] = {}
"""Group key -> (changelog partition, monitor) of the states changed since the last flush."""
unacked = HeldAcks()
live_monitors: dict[str, PooledMonitor] = {}
"""The monitors of the groups this worker owns, as objects (the table stays the truth)."""
changed: dict[str, PooledMonitor] = {}
"""Groups updated since their gauges were last set."""


@app.agent(version_tallies)
async def pool_versions(stream: Any) -> None:
    """Apply each site stream's tally to its version's pooled monitor."""
    await handle_holding_acks(
        stream, _pool_record, unacked, flush_pooled_states, POOLED_FLUSH_EVENTS
    )


async def _pool_record(event: Any) -> None:
    message = event.message
    position = RecordPosition(message.topic, message.partition, message.offset)
    consumed(message.topic).inc()

    async def pool() -> None:
        await _apply(decode(VersionTally, event.value or b""), position)

    await dead_lettering_failures(event, position, pool, "pooling")


@app.task
async def flush_pooled_states_periodically() -> None:
    await flush_every(POOLED_FLUSH_INTERVAL_S, flush_pooled_states, "pooled states")


async def flush_pooled_states() -> None:
    """Send the pooled states changed since the last flush, then ack the tallies read so far
    (taken at one instant, as :func:`streams.agents.monitor.flush_stream_states`)."""
    await flush_then_ack(unacked, _take_pooled, _keep_pooled, _send_pooled, _restore_pooled)


PooledWrites = list[tuple[str, int, PooledMonitor, dict[str, Any]]]
"""(group key, changelog partition, monitor, its state) of each group a flush writes."""


def _take_pooled() -> PooledWrites:
    writes = [(key, p, monitor, monitor.to_state()) for key, (p, monitor) in unwritten.items()]
    unwritten.clear()
    return writes


def _keep_pooled(writes: PooledWrites) -> None:
    for key, _partition, _monitor, state in writes:
        set_table_state(pooled_monitors, key, state)


async def _send_pooled(writes: PooledWrites) -> None:
    for key, partition, _monitor, state in writes:
        await send_table_state(pooled_monitors, partition, key, state)


def _restore_pooled(writes: PooledWrites) -> None:
    for key, partition, monitor, _state in writes:  # sent again by the next flush
        unwritten.setdefault(key, (partition, monitor))


async def _apply(tally: VersionTally, position: RecordPosition) -> None:
    key = version_key(tally.stream)
    monitor = _monitor(key, tally.stream)
    if monitor.already_counted(tally):
        duplicates(position.topic).inc()
        return
    try:
        # Checked before anything changes (a tally that is not cumulative raises first).
        signals = monitor.observe(tally)
    except BaseException:
        if key not in unwritten:
            live_monitors.pop(key, None)  # reloaded from the table next time
        raise
    # Tallies are keyed by group: the record's partition is the state's changelog partition.
    unwritten[key] = (position.partition, monitor)
    changed[key] = monitor
    group = pooled_stream(tally.stream)
    for signal in signals:
        alert = pooled_alert(tally.stream, signal, monitor, utc_now())
        await produce(alerts, group.as_key().encode(), encode(alert))
        labels = metrics.stream_labels(group)
        metrics.alerts.labels(*labels, alert.detector, alert.severity).inc()


def _registration(
    stream: StreamKey,
) -> tuple[dict[ClaimedMetric, float], dict[ClaimedMetric, float], float | None]:
    raw = registry.get(f"{stream.device_id}|{stream.device_version}")
    entry = RegistryEntry.model_validate(raw, strict=False) if raw else None
    claims = claimed_performance(entry, stream.task)
    prevalence = entry.reference_prevalence if entry is not None and claims else None
    return claims, claimed_lower_bounds(entry, stream.task), prevalence


def _monitor(key: str, stream: StreamKey) -> PooledMonitor:
    claims, lower_bounds, prevalence = _registration(stream)
    monitor = live_monitors.get(key)
    if monitor is None:
        state = pooled_monitors.get(key)
        if state is None:
            monitor = PooledMonitor.for_claims(claims, lower_bounds, POLICY, prevalence)
        else:
            monitor = PooledMonitor.from_state(state)
        live_monitors[key] = monitor
    monitor.adopt_claims(claims, lower_bounds, prevalence)
    return monitor


@app.on_partitions_revoked.connect
async def _forget_revoked_groups(sender: Any, /, *args: Any, signal: Any, **kwargs: Any) -> None:
    # As the join: written while this worker still owns the partitions.
    await flush_pooled_states()
    live_monitors.clear()
    changed.clear()
    for gauge in metrics.pooled_gauges():
        gauge.clear()


@app.on_partitions_assigned.connect
async def _forget_assigned_groups(sender: Any, /, *args: Any, signal: Any, **kwargs: Any) -> None:
    live_monitors.clear()


def publish_pooled_metrics(key: str, monitor: PooledMonitor) -> None:
    """Set a group's gauges from its pooled monitor."""
    group = group_stream(key)
    labels = (group.device_id, group.device_version, group.task)
    for cell, count in zip(CELLS, monitor.counts.totals(), strict=True):
        metrics.pooled_confusion.labels(*labels, cell).set(count)
    metrics.pooled_sites.labels(*labels).set(len(monitor.counts.sites))
    expected = monitor.expected_false_alarms_per_year()
    if expected is not None:
        metrics.pooled_expected_false_alarms.labels(*labels).set(expected)
    stream = metrics.stream_labels(group)
    for detector, (statistic, threshold) in monitor.statistics.items():
        metrics.detector_statistic.labels(*stream, detector).set(statistic)
        metrics.detector_threshold.labels(*stream, detector).set(threshold)


@app.timer(interval=2.0)
async def publish_changed_groups() -> None:
    while changed:
        publish_pooled_metrics(*changed.popitem())


@app.timer(interval=10.0)
async def refresh_pooled_metrics() -> None:
    """After a restart or rebalance, show the groups this worker now owns."""
    owned = owned_partitions(topics.VERSION_TALLIES)
    for key, state in list(pooled_monitors.items()):
        if state is None or key_partition(key, settings.topic_partitions) not in owned:
            continue
        try:
            monitor = live_monitors.get(key) or PooledMonitor.from_state(state)
        except ValueError:
            logger.exception("pooled state of %s cannot be read; its gauges are not shown", key)
            continue
        publish_pooled_metrics(key, monitor)
