"""The stream agent: per (device, version, site, task), count predictions and outcomes,
run the detectors against the registered claims and the stream's own score reference,
and raise alerts.

It reads the outcomes, the predictions the join re-keyed by stream, and the re-baselining
decisions of the evidence store (``pms.rebaselines.v1``, keyed by stream like the others),
each applied once to its stream's monitor."""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator
from typing import Any, Literal, NamedTuple, cast

from postmarket import topics
from postmarket.contracts import (
    ContractViolation,
    Outcome,
    Problem,
    Rebaseline,
    RegistryEntry,
    StreamPrediction,
    VersionTally,
    decode,
    encode,
    utc_now,
    version_key,
)
from postmarket.contracts.events import JoinPosition, StreamKey
from streams.acquisition import acquisition_categories
from streams.alerting import alert_for
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
from streams.held_acks import HeldAcks, ack_all, flush_every, handle_holding_acks
from streams.performance import (
    CELLS,
    REFERENCE_DRIFT_DETECTORS,
    ClaimedMetric,
    Signal,
    StreamMonitor,
    claimed_lower_bounds,
    claimed_performance,
    planned_policy,
)
from streams.pooled import tally_of_labelled_state, version_tally
from streams.retention import key_partition
from streams.routing import RoutedScore, StreamPredictions

POLICY = planned_policy(settings)
metrics.fleet_false_alarm_budget.set(settings.fleet_false_alarms_per_year)
StateKind = Literal["outcome", "prediction"]
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
unwritten: dict[tuple[StateKind, str], tuple[int, StreamMonitor]] = {}
"""(side, stream key) -> (changelog partition, monitor) of the states changed since the
last flush."""
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
        await _apply(_decode(message.topic, event.value or b""), position)

    await dead_lettering_failures(event, position, monitor, "monitoring")


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
    held, failed = unacked.take(), set(failed_positions)
    failed_positions.clear()
    writes = [
        (STATE_TABLES[side], partition, key, monitor.state_of(side))
        for (side, key), (partition, monitor) in unwritten.items()
    ]
    tallies = [
        tally
        for (side, key), (_partition, monitor) in unwritten.items()
        if side == "outcome" and (tally := _tally(key, monitor)) is not None
    ]
    dirty = dict(unwritten)
    unwritten.clear()
    for table, _partition, key, state in writes:
        set_table_state(table, key, state)
    try:
        for table, partition, key, state in writes:
            await send_table_state(table, partition, key, state)
        for tally in tallies:
            await _send_tally(tally)
    except BaseException:
        for entry, target in dirty.items():  # sent again by the next flush
            unwritten.setdefault(entry, target)
        unacked.restore(held)
        failed_positions.update(failed)
        raise
    await ack_all(held)


def _tally(key: str, monitor: StreamMonitor) -> VersionTally | None:
    counts = (
        monitor.true_positives,
        monitor.false_negatives,
        monitor.true_negatives,
        monitor.false_positives,
    )
    stream = StreamKey.from_key(key)
    return version_tally(stream, counts, monitor.first_case_time, monitor.last_case_time)


async def _send_tally(tally: VersionTally) -> None:
    await produce(version_tallies, version_key(tally.stream).encode(), encode(tally))


tallies_resent: set[str] = set()
"""Streams whose tally this worker sent from its table since it was (re)assigned them."""


@app.timer(interval=5.0)
async def resend_tallies() -> None:
    """Once after each (re)assignment, send the tally of every stream this worker owns, from
    its table state: a crash can lose a tally whose stream state was delivered (the records
    are then not applied again, so nothing else would send it); a tally the pooled stage
    has is ignored there. From the table, not the live monitor: exactly what was sent."""
    recovery = cast(Any, app.tables).recovery  # Faust's TableManager, untyped there
    if app.rebalancing or app.in_recovery or not recovery.completed.is_set():
        return  # a table still recovering holds older states: wait for the latest
    owned = owned_partitions(topics.OUTCOMES)
    for key, state in list(stream_monitors.items()):
        if key in tallies_resent or state is None:
            continue
        if key_partition(key, settings.topic_partitions) not in owned:
            continue
        tallies_resent.add(key)
        tally = tally_of_labelled_state(StreamKey.from_key(key), state)
        if tally is not None:
            await _send_tally(tally)


StreamInput = Outcome | StreamPredictions | StreamPrediction | Rebaseline
"""An outcome, new predictions the join routed (one by one before streams.routing), or a
decision to re-baseline a stream's reference."""


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


changed: dict[str, StreamMonitor] = {}
"""Streams updated since their gauges were last set, with their latest monitor."""


live_monitors: dict[str, StreamMonitor] = {}
"""The monitors of the streams this worker owns, as objects: rebuilding each from its table
state on every event cost a third of the stream agent's time. The table stays the truth;
the cache is dropped on every rebalance and whenever applying an event fails."""


@app.on_partitions_revoked.connect
async def _forget_revoked(sender: Any, /, *args: Any, signal: Any, **kwargs: Any) -> None:
    # While this worker still owns the partitions: a state written after the revoke could
    # overwrite what their new owner wrote. If it fails the worker fails, and its records,
    # never acked, are applied again from the tables by whoever owns them next.
    await flush_stream_states()
    live_monitors.clear()
    changed.clear()
    # Streams that moved to another worker must not keep their last values here, or a
    # sum across workers would count them twice; the refresh timer re-publishes the rest.
    for gauge in metrics.stream_gauges():
        gauge.clear()


@app.on_partitions_assigned.connect
async def _forget_assigned(sender: Any, /, *args: Any, signal: Any, **kwargs: Any) -> None:
    live_monitors.clear()
    tallies_resent.clear()


failed_positions: set[RecordPosition] = set()
"""Records held since the last flush whose update raised (dead-lettered, not applied)."""


async def _apply(item: StreamInput, position: RecordPosition) -> None:
    stream_key = _stream_of(item)
    key = stream_key.as_key()
    if isinstance(item, Rebaseline):
        _check_partition(key, position)
    try:
        await _apply_to(key, stream_key, item, position)
    except BaseException:
        # The monitor may hold half of this record's change: rebuilt without it.
        failed_positions.add(position)
        live_monitors.pop(key, None)
        if any((side, key) in unwritten for side in STATE_TABLES):
            _rebuild(key, stream_key)
        raise


def _stream_of(item: StreamInput) -> StreamKey:
    return item.prediction.stream if isinstance(item, StreamPrediction) else item.stream


def _check_partition(key: str, position: RecordPosition) -> None:
    """Refuse a decision produced elsewhere than its stream's partition (another partitioner,
    another key): its worker may not own the stream, and its state would be written to a
    changelog partition that is not the stream's. Dead-lettered, never applied."""
    expected = key_partition(key, settings.topic_partitions)
    if position.partition != expected:
        failed_positions.add(position)  # so a rebuild does not apply it either
        problem = Problem("<key>", f"on partition {position.partition}, not {expected}")
        raise ContractViolation("Rebaseline", "impossible_value", [problem])


def _rebuild(key: str, stream_key: StreamKey) -> None:
    """A stream's monitor from its tables and the records held since they were written.

    Those records were applied once already, so their alerts are not raised again.
    """
    monitor = _monitor(key, stream_key)
    for _stream, event in unacked.held():
        message = event.message
        position = RecordPosition(message.topic, message.partition, message.offset)
        if position in failed_positions:
            continue
        try:
            item = _decode(message.topic, event.value or b"")
        except ContractViolation:
            continue
        if _stream_of(item).as_key() == key:
            for _signals in _observations(monitor, item, position):
                pass
    for entry, (partition, _stale) in list(unwritten.items()):
        if entry[1] == key:
            unwritten[entry] = (partition, monitor)


def _observations(
    monitor: StreamMonitor, item: StreamInput, position: RecordPosition
) -> Iterator[list[Signal] | None]:
    """Apply ``item`` (read at ``position``) to ``monitor`` one case at a time: each case's
    signals as it is applied, None for a case the monitor had applied already. A decision
    raises nothing: no signals once applied, None if applied already."""
    if isinstance(item, Rebaseline):
        at = JoinPosition(
            topic=position.topic, partition=position.partition, offset=position.offset, rank=0
        )
        yield [] if monitor.rebaseline(item.rebaseline_id, at) else None
        return
    if isinstance(item, Outcome):
        applied = monitor.already_applied("outcome", item.joined_at)
        yield None if applied else monitor.observe(item)
        return
    for entry in _routed_scores(item):
        if monitor.already_applied("prediction", entry.joined_at):
            yield None
        else:
            yield monitor.observe_score(
                entry.score, entry.joined_at, entry.decision, entry.categories
            )


async def _apply_to(
    key: str, stream_key: StreamKey, item: StreamInput, position: RecordPosition
) -> None:
    # A decision for a stream with no state yet goes to a fresh monitor: it restarts an
    # empty reference (harmless) and is remembered, so a redelivery is skipped.
    monitor = _monitor(key, stream_key)
    applied = 0
    for signals in _observations(monitor, item, position):
        if signals is None:
            duplicates(position.topic).inc()
            continue
        applied += 1
        # Raised as each fires, from the monitor as it is then: the alert id stays the same
        # however the join batched the predictions before a crash and after it.
        await _raise(stream_key, signals, monitor)
    if not applied:
        return
    # Outcomes, routed predictions and decisions are keyed by stream: the record's partition
    # is the state's changelog partition. A decision changes the label-free side, and the
    # labelled one too when it restarts a claims test that rejected (restart_after_review).
    side: StateKind = "outcome" if isinstance(item, Outcome) else "prediction"
    unwritten[(side, key)] = (position.partition, monitor)
    if isinstance(item, Rebaseline):
        unwritten[("outcome", key)] = (position.partition, monitor)
        _count_rebaseline(stream_key)
    # Gauges are set in batches (publish_changed_streams): setting ~20 labelled gauges per
    # event cost a quarter of the stream agent's time in a profile.
    changed[key] = monitor


def _count_rebaseline(stream: StreamKey) -> None:
    """Count an applied decision; drop the gauges of the drift tests it removed, which no
    publish would set again until the new reference is complete."""
    labels = metrics.stream_labels(stream)
    metrics.stream_rebaselines.labels(*labels).inc()
    metrics.forget_detectors(labels, REFERENCE_DRIFT_DETECTORS)


def _routed_scores(item: StreamPredictions | StreamPrediction) -> tuple[RoutedScore, ...]:
    if isinstance(item, StreamPredictions):
        return item.predictions
    prediction = item.prediction
    routed = RoutedScore(
        score=prediction.score,
        joined_at=item.joined_at,
        decision=prediction.decision,
        categories=acquisition_categories(prediction.acquisition),
    )
    return (routed,)


async def _raise(stream: StreamKey, signals: list[Signal], monitor: StreamMonitor) -> None:
    for signal in signals:
        alert = alert_for(stream, signal, monitor, utc_now())
        await produce(alerts, stream.as_key().encode(), encode(alert))
        labels = metrics.stream_labels(stream)
        metrics.alerts.labels(*labels, alert.detector, alert.severity).inc()


class Registration(NamedTuple):
    """What the registry says a stream's monitor needs: the claims of its version and task,
    the prevalence the version's scores are calibrated at (None: unknown), and the claims'
    lower confidence bounds."""

    claims: dict[ClaimedMetric, float]
    reference_prevalence: float | None
    lower_bounds: dict[ClaimedMetric, float]


_parsed_registrations: dict[tuple[str, str], tuple[object, Registration]] = {}


def _registration(stream: StreamKey) -> Registration:
    """The registration of a stream's version and task, parsed once per value the global
    registry table holds (not once per event)."""
    version_key = f"{stream.device_id}|{stream.device_version}"
    raw = registry.get(version_key)
    cached = _parsed_registrations.get((version_key, stream.task))
    if cached is not None and cached[0] is raw:
        return cached[1]
    entry = RegistryEntry.model_validate(raw, strict=False) if raw else None
    claims = claimed_performance(entry, stream.task)
    prevalence = entry.reference_prevalence if entry is not None and claims else None
    registration = Registration(claims, prevalence, claimed_lower_bounds(entry, stream.task))
    _parsed_registrations[(version_key, stream.task)] = (raw, registration)
    return registration


def _monitor(key: str, stream: StreamKey) -> StreamMonitor:
    registration = _registration(stream)
    monitor = live_monitors.get(key)
    if monitor is None:
        labelled, label_free = stream_monitors.get(key), stream_prediction_monitors.get(key)
        if labelled is None and label_free is None:
            monitor = StreamMonitor.for_claims(
                registration.claims,
                POLICY,
                registration.reference_prevalence,
                registration.lower_bounds,
            )
        else:
            # A stream stored before the fleet budget moves to it (see from_states).
            monitor = StreamMonitor.from_states(labelled, label_free, plan=POLICY)
        live_monitors[key] = monitor
    monitor.adopt_claims(*registration)
    return monitor


def publish_stream_metrics(stream: StreamKey, monitor: StreamMonitor) -> None:
    """Set the stream's gauges from its monitor state (exact, unlike per-process counters)."""
    labels = metrics.stream_labels(stream)
    cells = {
        "tp": monitor.true_positives,
        "fn": monitor.false_negatives,
        "tn": monitor.true_negatives,
        "fp": monitor.false_positives,
    }
    for cell, count in cells.items():
        metrics.stream_confusion.labels(*labels, cell).set(count)
    metrics.stream_predictions.labels(*labels).set(monitor.predictions)
    for key, counts in monitor.strata.items():
        dimension, stratum = key.split("=", 1)
        for cell, count in zip(CELLS, counts, strict=True):
            metrics.stratum_confusion.labels(*labels, dimension, stratum, cell).set(count)
    completeness = monitor.followup_completeness
    if completeness is not None:
        metrics.followup_completeness.labels(*labels).set(completeness)
    for metric in ("sensitivity", "specificity"):
        estimate = monitor.estimate(metric)
        if estimate is not None:
            for bound, value in zip(("estimate", "lower", "upper"), estimate, strict=True):
                metrics.stream_performance.labels(*labels, metric, bound).set(value)
    for metric, claimed in monitor.claims.items():
        metrics.stream_claim.labels(*labels, metric).set(claimed)
    for metric, level in monitor.levels.items():
        metrics.stream_acceptable_level.labels(*labels, metric).set(level.acceptable)
    for metric in monitor.unmonitored:
        metrics.stream_unmonitored.labels(*labels, metric).set(1)
    expected = monitor.expected_false_alarms_per_year()
    if expected is not None:
        metrics.stream_expected_false_alarms.labels(*labels).set(expected)
    estimated = monitor.estimated_performance()
    if estimated is not None:
        for metric in ("sensitivity", "specificity", "ppv"):
            estimate = getattr(estimated, metric)
            bounds = {
                "estimate": estimate.estimate,
                "lower": estimate.lower,
                "upper": estimate.upper,
            }
            for bound, value in bounds.items():
                if math.isfinite(value):
                    metrics.estimated_performance.labels(*labels, metric, bound).set(value)
    agreement = monitor.reader_agreement()
    if agreement is not None:
        bounds = {"estimate": agreement.kappa, "lower": agreement.lower, "upper": agreement.upper}
        for bound, value in bounds.items():
            metrics.reader_agreement.labels(*labels, bound).set(value)
    for detector, (statistic, threshold) in monitor.statistics.items():
        metrics.detector_statistic.labels(*labels, detector).set(statistic)
        metrics.detector_threshold.labels(*labels, detector).set(threshold)


@app.timer(interval=2.0)
async def publish_changed_streams() -> None:
    """Set the gauges of the streams that changed in the last interval."""
    while changed:
        key, monitor = changed.popitem()
        publish_stream_metrics(StreamKey.from_key(key), monitor)


@app.timer(interval=10.0)
async def refresh_stream_metrics() -> None:
    """After a restart or rebalance, show the streams this worker now owns."""
    # An in-memory table keeps the keys of partitions this worker no longer owns.
    owned = owned_partitions(topics.OUTCOMES)
    keys = {*stream_monitors.keys(), *stream_prediction_monitors.keys()}
    for key in keys:
        if key_partition(key, settings.topic_partitions) not in owned:
            continue
        labelled, label_free = stream_monitors.get(key), stream_prediction_monitors.get(key)
        if labelled is None and label_free is None:
            continue
        monitor = live_monitors.get(key) or StreamMonitor.from_states(
            labelled, label_free, plan=POLICY
        )
        publish_stream_metrics(StreamKey.from_key(key), monitor)
