"""The stream agent: per (device, version, site, task), count predictions and outcomes,
run the detectors against the registered claims and the stream's own score reference,
and raise alerts.

It reads the outcomes, the predictions the join re-keyed by stream, and the re-baselining
decisions of the evidence store (``pms.rebaselines.v1``, keyed by stream like the others),
decodes each and hands it to :class:`~streams.live_streams.LiveStreams`, which applies it
once to its stream's monitor; this module sends what that takes at each flush."""

from __future__ import annotations

import logging
from typing import Any, cast

from postmarket import topics
from postmarket.contracts import (
    Alert,
    ContractViolation,
    Outcome,
    Problem,
    Rebaseline,
    StreamPrediction,
    VersionTally,
    decode,
    encode,
    version_key,
)
from streams.app import app, consumed, duplicates, metrics, owned_partitions, settings
from streams.casefile import RecordPosition
from streams.channels import (
    alerts,
    produce,
    registry,
    send_table_state,
    set_table_state,
    stream_inputs,
    stream_monitors,
    stream_prediction_monitors,
    version_tallies,
)
from streams.deadletter import dead_lettering_failures
from streams.held_acks import HeldAcks, flush_every, flush_then_ack, handle_holding_acks
from streams.live_streams import LiveStreams, StateKind, StreamInput, TakenStates
from streams.performance import planned_policy
from streams.retention import key_partition
from streams.routing import StreamPredictions

POLICY = planned_policy(settings)
metrics.fleet_false_alarm_budget.set(settings.fleet_false_alarms_per_year)
STATE_TABLES: dict[StateKind, Any] = {
    "outcome": stream_monitors,
    "prediction": stream_prediction_monitors,
}
logger = logging.getLogger(__name__)


STATE_FLUSH_EVENTS = 500
STATE_FLUSH_INTERVAL_S = 0.1
"""A stream's changed state goes to its table once per this many input records or this long,
whichever comes first, not once per record: one write per outcome was a 1.4 KB changelog
record per case; per flush, the bench's stream tables got about a tenth as many records."""
states = LiveStreams(POLICY, stream_monitors, stream_prediction_monitors, registry, metrics)
"""The live monitors of the streams this worker owns and their states not written yet."""
unacked = HeldAcks()
"""The records read since the last flush: acked once the states they changed are sent."""


@app.agent(stream_inputs)
async def monitor_streams(stream: Any) -> None:
    """Apply each outcome, re-keyed prediction and re-baselining decision once to its
    stream's monitor."""
    await handle_holding_acks(
        stream, _monitor_record, unacked, flush_stream_states, STATE_FLUSH_EVENTS
    )


async def _monitor_record(event: Any) -> None:
    message = event.message
    position = RecordPosition(message.topic, message.partition, message.offset)
    consumed(message.topic).inc()

    async def monitor() -> None:
        item = _decode(message.topic, event.value or b"")
        if isinstance(item, Rebaseline):
            _check_partition(item.stream.as_key(), position)
        done = await states.apply(item, position, _raise)
        duplicates(message.topic).inc(done.duplicates)

    await dead_lettering_failures(event, position, monitor, "monitoring")


async def _raise(alert: Alert) -> None:
    await produce(alerts, alert.stream.as_key().encode(), encode(alert))


@app.task
async def flush_stream_states_periodically() -> None:
    await flush_every(STATE_FLUSH_INTERVAL_S, flush_stream_states, "stream states")


async def flush_stream_states() -> None:
    """Send the states changed since the last flush, then ack the records read so far.

    The states are taken at one instant with the records they cover (no await in between),
    so a table always holds a state that covers exactly the records acked or being acked.
    Each state carries the positions it has applied: a record read again after a crash (its
    offset not committed) is skipped if its state was sent, and applied if not.

    With the states go the cumulative tallies of the streams whose outcomes changed, for the
    pooled per-version stage: taken at the same instant, sent before the acks, so a crash
    sends them again rather than losing them (the pooled stage ignores a tally it has).
    """
    await flush_then_ack(unacked, states.take_flush, _keep_states, _send_states, states.restore)


def _keep_states(taken: TakenStates) -> None:
    for write in taken.writes:
        set_table_state(STATE_TABLES[write.side], write.key, write.state)


async def _send_states(taken: TakenStates) -> None:
    for write in taken.writes:
        table = STATE_TABLES[write.side]
        await send_table_state(table, write.partition, write.key, write.state)
    for tally in taken.tallies:
        await _send_tally(tally)


async def _send_tally(tally: VersionTally) -> None:
    await produce(version_tallies, version_key(tally.stream).encode(), encode(tally))


@app.timer(interval=5.0)
async def resend_tallies() -> None:
    """Once after each (re)assignment, send the tally of every stream this worker owns, from
    its table state (see :meth:`LiveStreams.tallies_to_resend`); a tally the pooled stage
    has is ignored there."""
    recovery = cast(Any, app.tables).recovery  # Faust's TableManager, untyped there
    if app.rebalancing or app.in_recovery or not recovery.completed.is_set():
        return  # a table still recovering holds older states: wait for the latest
    owned = owned_partitions(topics.OUTCOMES)
    for tally in states.tallies_to_resend(
        lambda key: key_partition(key, settings.topic_partitions) in owned
    ):
        await _send_tally(tally)


def _decode(topic: str, raw: bytes) -> StreamInput:
    if topic == topics.OUTCOMES:
        return decode(Outcome, raw)
    if topic == topics.REBASELINES:
        return decode(Rebaseline, raw)
    try:
        return decode(StreamPredictions, raw)
    except ContractViolation as violation:
        try:  # routed by a worker of the previous release, still on the topic
            return decode(StreamPrediction, raw)
        except ContractViolation:
            raise violation from None


def _check_partition(key: str, position: RecordPosition) -> None:
    """Refuse a decision produced elsewhere than its stream's partition (another partitioner,
    another key): its worker may not own the stream, and its state would be written to a
    changelog partition that is not the stream's. Dead-lettered, never applied."""
    expected = key_partition(key, settings.topic_partitions)
    if position.partition != expected:
        problem = Problem("<key>", f"on partition {position.partition}, not {expected}")
        raise ContractViolation("Rebaseline", "impossible_value", [problem])


@app.on_partitions_revoked.connect
async def _forget_revoked(sender: Any, /, *args: Any, signal: Any, **kwargs: Any) -> None:
    # While this worker still owns the partitions: a state written after the revoke could
    # overwrite what their new owner wrote. If it fails the worker fails, and its records,
    # never acked, are applied again from the tables by whoever owns them next.
    await flush_stream_states()
    states.revoke()


@app.on_partitions_assigned.connect
async def _forget_assigned(sender: Any, /, *args: Any, signal: Any, **kwargs: Any) -> None:
    states.assign()


@app.timer(interval=2.0)
async def publish_changed_streams() -> None:
    """Set the gauges of the streams that changed in the last interval."""
    states.publish_changed()


@app.timer(interval=10.0)
async def refresh_stream_metrics() -> None:
    """After a restart or rebalance, show the streams this worker now owns."""
    owned = owned_partitions(topics.OUTCOMES)
    states.publish_owned(lambda key: key_partition(key, settings.topic_partitions) in owned)
