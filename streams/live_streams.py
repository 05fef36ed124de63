"""The streams a worker owns, as live monitors: each outcome, routed prediction and
re-baselining decision applied once, the states changed since the last flush taken at one
instant with the tallies they carry, and the streams' gauges.

No Faust here. The join calls :class:`LiveStreams` directly on its site's partition
(:mod:`streams.site_streams`), and sends what a flush takes with its case files. Nothing
assumes how the streams are partitioned: a state goes to the changelog partition the caller
names, and the caller says which streams it owns.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, NamedTuple

from postmarket.contracts import (
    Alert,
    Outcome,
    Rebaseline,
    RegistryEntry,
    VersionTally,
    utc_now,
)
from postmarket.contracts.events import JoinPosition, StreamKey
from postmarket.metrics import WorkerMetrics
from streams.alerting import alert_for
from streams.casefile import RecordPosition
from streams.charted_claims import claimed_lower_bounds, claimed_performance
from streams.detector_design import REFERENCE_DRIFT_DETECTORS
from streams.monitor_policy import ClaimedMetric, MonitorPolicy
from streams.pooled import tally_of_labelled_state, version_tally
from streams.routing import StreamPredictions
from streams.stream_gauges import publish_stream_metrics
from streams.stream_monitor import Signal, StreamMonitor

StateKind = Literal["outcome", "prediction"]
"""A stream's two table states: labelled (outcomes) and label-free (predictions)."""
STATE_KINDS: tuple[StateKind, ...] = ("outcome", "prediction")
StreamInput = Outcome | StreamPredictions | Rebaseline
"""An outcome, new predictions of a stream, or a decision to re-baseline its reference."""
Emit = Callable[[Alert], Awaitable[None]]
"""Hands one alert to the producer (keyed by its stream)."""
Owns = Callable[[str], bool]
"""Whether this worker owns the stream of a key right now."""


def contents(table: Mapping[str, Any]) -> Mapping[str, Any]:
    """What a table holds, read without Faust's per-read hooks (a sensor call and a missing
    key's default, None either way, on every read): a Faust table's store, or the mapping.

    Of Faust's in-memory store (every table's here), the dict it keeps its entries in: the
    store's own ``get`` is ``Mapping.get`` over its ``__getitem__``, three calls a read and
    a ``KeyError`` raised and caught for every key it lacks (each new case looked up twice)."""
    store = getattr(table, "data", table)
    entries = getattr(store, "data", None)
    return entries if type(entries) is dict else store


def stream_of(item: StreamInput) -> StreamKey:
    return item.stream


class Registration(NamedTuple):
    """What the registry says a stream's monitor needs: the claims of its version and task,
    the prevalence the version's scores are calibrated at (None: unknown), and the claims'
    lower confidence bounds."""

    claims: dict[ClaimedMetric, float]
    reference_prevalence: float | None
    lower_bounds: dict[ClaimedMetric, float]


class Registrations:
    """The registration of each stream's version and task, parsed once per value the
    registry holds (not once per event)."""

    def __init__(self, registry: Mapping[str, Any]) -> None:
        self._registry = registry
        self._parsed: dict[tuple[str, str], tuple[object, Registration]] = {}

    def of(self, stream: StreamKey) -> Registration:
        version_key = f"{stream.device_id}|{stream.device_version}"
        raw = contents(self._registry).get(version_key)
        cached = self._parsed.get((version_key, stream.task))
        if cached is not None and cached[0] is raw:
            return cached[1]
        entry = RegistryEntry.model_validate(raw, strict=False) if raw else None
        claims = claimed_performance(entry, stream.task)
        prevalence = entry.reference_prevalence if entry is not None and claims else None
        registration = Registration(claims, prevalence, claimed_lower_bounds(entry, stream.task))
        self._parsed[(version_key, stream.task)] = (raw, registration)
        return registration

    def clear(self) -> None:
        self._parsed.clear()


class StateWrite(NamedTuple):
    """One stream state a flush writes: to the ``side``'s table, at ``partition`` of its
    changelog."""

    side: StateKind
    partition: int
    key: str
    state: dict[str, Any]


class Applied(NamedTuple):
    """What applying inputs did: cases (or decisions) applied, and those applied already."""

    applied: int
    duplicates: int


Unwritten = dict[tuple[StateKind, str], tuple[int, StreamMonitor]]
Journal = dict[str, list[tuple[StreamInput, RecordPosition]]]


class LegacyTables(NamedTuple):
    """A previous layout's stream tables (keyed by stream, on the stream key's partition):
    a stream found only there is adopted at its first change, written whole to the current
    tables, then deleted there."""

    labelled: Mapping[str, Any]
    label_free: Mapping[str, Any]
    partition_of: Callable[[str], int]
    """The changelog partition of a stream key in those tables."""

    def holds(self, key: str) -> list[StateKind]:
        tables = (self.labelled, self.label_free)
        return [
            side for side, table in zip(STATE_KINDS, tables, strict=True) if key in contents(table)
        ]


class Retirement(NamedTuple):
    """A legacy state to delete, once its stream's state is written to the current tables."""

    side: StateKind
    partition: int
    key: str


class _Mark(NamedTuple):
    key: str
    stream: StreamKey
    journal: int
    """How many inputs the stream's journal held."""
    unwritten: dict[StateKind, tuple[int, StreamMonitor] | None]
    changed: bool


@dataclass(frozen=True)
class TakenStates:
    """What one flush sends, taken at one instant: the changed streams' states and the
    cumulative tallies of those whose outcomes changed. Given back to
    :meth:`LiveStreams.restore` if sending fails, so the next flush sends them again."""

    writes: list[StateWrite]
    tallies: list[VersionTally]
    retired: list[Retirement]
    """Legacy states adopted by the ``writes``: delete them after writing these."""
    _unwritten: Unwritten = field(repr=False)
    _journal: Journal = field(repr=False)


class LiveStreams:
    """The monitors of the streams a worker owns, and what changed since the last flush.

    The tables stay the truth: a monitor is loaded from them (``labelled``,
    ``label_free``) the first time its stream is seen, kept as an object (rebuilding each
    from its table state on every event cost a third of the (then separate) stream agent's
    time), and dropped on every rebalance. Each input applied since the last flush is kept with its
    position, so a stream whose update fails is rebuilt from its tables and the inputs
    applied before it, without the failed one.

    Alerts and re-baselinings are counted once applied; duplicates are returned for the
    caller to count (the join knows a replayed record as one duplicate already). The
    gauges are set in batches (:meth:`publish_changed`): setting ~20 labelled gauges per
    event cost a quarter of the stream agent's time in a profile.
    """

    def __init__(
        self,
        plan: MonitorPolicy,
        labelled: Mapping[str, Any],
        label_free: Mapping[str, Any],
        registry: Mapping[str, Any],
        metrics: WorkerMetrics,
        legacy: LegacyTables | None = None,
    ) -> None:
        self.plan = plan
        self._tables: dict[StateKind, Mapping[str, Any]] = {
            "outcome": labelled,
            "prediction": label_free,
        }
        self.legacy = legacy
        self._retiring: set[Retirement] = set()
        """Legacy deletions of a flush whose sending failed: sent by the next one."""
        self.registrations = Registrations(registry)
        self._metrics = metrics
        self.live_monitors: dict[str, StreamMonitor] = {}
        self.unwritten: Unwritten = {}
        """(side, stream key) -> (changelog partition, monitor) of the states changed since
        the last flush."""
        self.changed: dict[str, StreamMonitor] = {}
        """Streams updated since their gauges were last set, with their latest monitor."""
        self._journal: Journal = {}
        """Stream key -> the inputs applied to it since the last flush, oldest first."""
        self._tallies_resent: set[str] = set()
        """Streams whose tally was sent from the table since they were (re)assigned."""

    # --- applying inputs ----------------------------------------------------------------

    async def apply_outcome(
        self, outcome: Outcome, position: RecordPosition, emit: Emit
    ) -> Applied:
        return await self.apply(outcome, position, emit)

    async def apply_predictions(
        self,
        predictions: StreamPredictions,
        position: RecordPosition,
        emit: Emit,
    ) -> Applied:
        return await self.apply(predictions, position, emit)

    async def apply_decision(
        self, decision: Rebaseline, position: RecordPosition, emit: Emit
    ) -> Applied:
        return await self.apply(decision, position, emit)

    async def apply(self, item: StreamInput, position: RecordPosition, emit: Emit) -> Applied:
        """:meth:`apply_all` of one input, its state going to ``position.partition``."""
        return await self.apply_all([(item, position)], emit, position.partition)

    async def apply_all(
        self, inputs: Sequence[tuple[StreamInput, RecordPosition]], emit: Emit, partition: int
    ) -> Applied:
        """Apply each input, read at its position, to its stream's monitor once (stream by
        stream, each stream's in their order), then ``emit`` the alerts they raised; what
        was applied and what was a duplicate (the caller counts those: it may know them as
        duplicates already).

        All or nothing: if anything raises (``emit`` too), every stream is left as before
        the first input. The changed states go to ``partition`` of the changelogs at the
        next flush (the caller's record's partition: where its worker owns the streams).
        """
        by_stream = _by_stream(inputs)
        marks: dict[str, _Mark] = {}
        raised: list[tuple[StreamKey, Alert]] = []
        rebaselined: list[StreamKey] = []
        applied = duplicates = 0
        try:
            for key, (stream, items) in by_stream.items():
                marks[key] = self._mark(key, stream)
                done = self._apply_to(key, stream, items, partition, raised, rebaselined)
                applied, duplicates = applied + done.applied, duplicates + done.duplicates
                self._journal.setdefault(key, []).extend(items)
            for _stream, alert in raised:
                await emit(alert)
        except BaseException:
            for mark in marks.values():
                self._roll_back(mark)
            raise
        for stream, alert in raised:
            labels = self._metrics.stream_labels(stream)
            self._metrics.alerts.labels(*labels, alert.detector, alert.severity).inc()
        for stream in rebaselined:
            self._count_rebaseline(stream)
        return Applied(applied, duplicates)

    def _apply_to(
        self,
        key: str,
        stream: StreamKey,
        items: Sequence[tuple[StreamInput, RecordPosition]],
        partition: int,
        raised: list[tuple[StreamKey, Alert]],
        rebaselined: list[StreamKey],
    ) -> Applied:
        """One stream's inputs, in their order, on its monitor (looked up once)."""
        # A decision for a stream with no state yet goes to a fresh monitor: it restarts an
        # empty reference (harmless) and is remembered, so a redelivery is skipped.
        monitor = self.monitor(key, stream)
        applied = duplicates = 0
        sides: set[StateKind] = set()
        for item, signals in observed(monitor, items):
            if signals is None:
                duplicates += 1
                continue
            applied += 1
            # Built as each fires, from the monitor as it is then: the alert id stays the
            # same however the join batched the predictions before a crash and after.
            raised += [(stream, alert_for(stream, s, monitor, utc_now())) for s in signals]
            if isinstance(item, Rebaseline):
                # A decision changes the label-free side, and the labelled one too when it
                # restarts a claims test that rejected (restart_after_review).
                sides.update(STATE_KINDS)
                if item.scope == "reference":
                    rebaselined.append(stream)
            else:
                sides.add("outcome" if isinstance(item, Outcome) else "prediction")
        if applied:
            if self._adopting(key):
                # Adopted from the legacy tables: both sides move, or one would be lost.
                sides.update(STATE_KINDS)
            for side in sides:
                self.unwritten[(side, key)] = (partition, monitor)
            self.changed[key] = monitor
        return Applied(applied, duplicates)

    def _mark(self, key: str, stream: StreamKey) -> _Mark:
        """What :meth:`_roll_back` needs to leave a stream as it is now."""
        return _Mark(
            key,
            stream,
            len(self._journal.get(key, [])),
            {side: self.unwritten.get((side, key)) for side in STATE_KINDS},
            key in self.changed,
        )

    def _roll_back(self, mark: _Mark) -> None:
        """Leave a stream as at ``mark``: the inputs applied since are forgotten, and its
        monitor, which may hold half of one, rebuilt from its tables and the inputs before."""
        key = mark.key
        journal = self._journal.get(key, [])
        del journal[mark.journal :]
        if not journal:
            self._journal.pop(key, None)
        for side, target in mark.unwritten.items():
            if target is None:
                self.unwritten.pop((side, key), None)
            else:
                self.unwritten[(side, key)] = target
        if not mark.changed:
            self.changed.pop(key, None)
        self.live_monitors.pop(key, None)
        if any(target is not None for target in mark.unwritten.values()):
            self._rebuild(key, mark.stream)

    def monitor(self, key: str, stream: StreamKey) -> StreamMonitor:
        """The stream's live monitor, loaded from its tables (or new) if not live, with the
        registry's current claims."""
        registration = self.registrations.of(stream)
        monitor = self.live_monitors.get(key)
        if monitor is None:
            labelled, label_free = self._stored(key)
            if labelled is None and label_free is None:
                monitor = StreamMonitor.for_claims(
                    registration.claims,
                    self.plan,
                    registration.reference_prevalence,
                    registration.lower_bounds,
                )
            else:
                # A stream stored before the fleet budget moves to it (see from_states).
                monitor = StreamMonitor.from_states(labelled, label_free, plan=self.plan)
            self.live_monitors[key] = monitor
        monitor.adopt_claims(*registration)
        return monitor

    def _stored(self, key: str) -> tuple[Any, Any]:
        """The stream's (labelled, label-free) table states; the legacy ones if the current
        tables hold neither (a stream not changed since the upgrade)."""
        labelled, label_free = (contents(self._tables[side]).get(key) for side in STATE_KINDS)
        if labelled is None and label_free is None and self.legacy is not None:
            legacy = self.legacy
            return contents(legacy.labelled).get(key), contents(legacy.label_free).get(key)
        return labelled, label_free

    def _adopting(self, key: str) -> bool:
        """Whether the stream's state is still only in the legacy tables."""
        if self.legacy is None or not self.legacy.holds(key):
            return False
        return all(contents(self._tables[side]).get(key) is None for side in STATE_KINDS)

    def _stored_keys(self) -> set[str]:
        tables = [*self._tables.values()]
        if self.legacy is not None:
            tables += [self.legacy.labelled, self.legacy.label_free]
        return {key for table in tables for key in table.keys()}

    def _rebuild(self, key: str, stream: StreamKey) -> None:
        """A stream's monitor from its tables and the inputs applied since they were
        written. Those inputs were applied once already: their alerts are not raised again."""
        monitor = self.monitor(key, stream)
        for _observed in observed(monitor, self._journal.get(key, [])):
            pass
        for entry, (partition, _stale) in list(self.unwritten.items()):
            if entry[1] == key:
                self.unwritten[entry] = (partition, monitor)
        if key in self.changed:
            self.changed[key] = monitor

    def _count_rebaseline(self, stream: StreamKey) -> None:
        """Count an applied re-baselining (a review moves no reference); drop the gauges of the
        drift tests it removed, which no publish would set again until the new reference is
        complete."""
        labels = self._metrics.stream_labels(stream)
        self._metrics.stream_rebaselines.labels(*labels).inc()
        self._metrics.forget_detectors(labels, REFERENCE_DRIFT_DETECTORS)

    # --- flushing -----------------------------------------------------------------------

    def take_flush(self) -> TakenStates:
        """The states changed since the last flush and the tallies of the streams whose
        outcomes changed, taken at one instant (call it with no await between it and taking
        the acks it covers); the next flush starts empty."""
        unwritten, journal = self.unwritten, self._journal
        writes = [
            StateWrite(side, partition, key, monitor.state_of(side))
            for (side, key), (partition, monitor) in unwritten.items()
        ]
        tallies = [
            tally
            for (side, key), (_partition, monitor) in unwritten.items()
            if side == "outcome" and (tally := tally_of(key, monitor)) is not None
        ]
        retired = set(self._retiring)
        if self.legacy is not None:
            for key in {key for _side, key in unwritten}:
                for side in self.legacy.holds(key):
                    retired.add(Retirement(side, self.legacy.partition_of(key), key))
        self.unwritten, self._journal, self._retiring = {}, {}, set()
        return TakenStates(writes, tallies, sorted(retired), unwritten, journal)

    def restore(self, taken: TakenStates) -> None:
        """Have the next flush send again what ``taken`` held (its sending failed), unless a
        stream changed since: then its newer state is sent."""
        for entry, target in taken._unwritten.items():
            self.unwritten.setdefault(entry, target)
        for key, inputs in taken._journal.items():
            self._journal[key] = [*inputs, *self._journal.get(key, [])]
        self._retiring.update(taken.retired)

    # --- rebalancing --------------------------------------------------------------------

    def revoke(self) -> None:
        """Forget the live monitors and clear the stream gauges, once the states were
        flushed: streams that moved to another worker must not keep their last values here,
        or a sum across workers would count them twice (the refresh re-publishes the rest)."""
        self.live_monitors.clear()
        self.changed.clear()
        for gauge in self._metrics.stream_gauges():
            gauge.clear()

    def assign(self) -> None:
        """Forget the live monitors (the tables may have been recovered since) and which
        tallies were resent."""
        self.live_monitors.clear()
        self._tallies_resent.clear()

    def clear(self) -> None:
        """Forget everything held in memory, as a worker that has just started."""
        self.live_monitors.clear()
        self.unwritten.clear()
        self.changed.clear()
        self._journal.clear()
        self._retiring.clear()
        self._tallies_resent.clear()
        self.registrations.clear()

    def tallies_to_resend(self, owns: Owns) -> Iterator[VersionTally]:
        """Once after each assignment, the tally of every stream owned, from its labelled
        table state: a crash can lose a tally whose stream state was delivered (the inputs
        are then not applied again, so nothing else would send it). From the table, not the
        live monitor: exactly what was sent. Each is marked resent as it is yielded."""
        for key in sorted(self._stored_keys()):
            if key in self._tallies_resent or not owns(key):
                continue
            state = self._stored(key)[0]
            if state is None:
                continue
            self._tallies_resent.add(key)
            tally = tally_of_labelled_state(StreamKey.from_key(key), state)
            if tally is not None:
                yield tally

    # --- gauges -------------------------------------------------------------------------

    def publish(self, stream: StreamKey, monitor: StreamMonitor) -> None:
        publish_stream_metrics(self._metrics, stream, monitor)

    def publish_changed(self) -> None:
        """Set the gauges of the streams changed since this was last called."""
        while self.changed:
            key, monitor = self.changed.popitem()
            self.publish(StreamKey.from_key(key), monitor)

    def publish_owned(self, owns: Owns) -> None:
        """Set the gauges of every stream owned that has a state (after a restart or a
        rebalance): an in-memory table keeps the keys of partitions no longer owned."""
        for key in self._stored_keys():
            if not owns(key):
                continue
            labelled, label_free = self._stored(key)
            if labelled is None and label_free is None:
                continue
            monitor = self.live_monitors.get(key) or StreamMonitor.from_states(
                labelled, label_free, plan=self.plan
            )
            self.publish(StreamKey.from_key(key), monitor)


def observed(
    monitor: StreamMonitor, items: Sequence[tuple[StreamInput, RecordPosition]]
) -> Iterator[tuple[StreamInput, list[Signal] | None]]:
    """:func:`observations` of each of ``items`` in turn, case by case with its item; the
    predictions of consecutive items applied as one run (:meth:`StreamMonitor.observe_scores`:
    the same states and signals, each yielded as its case is applied)."""
    run: list[StreamPredictions] = []
    for item, position in items:
        if isinstance(item, StreamPredictions):
            run.append(item)
            continue
        if run:
            yield from _observed_run(monitor, run)
            run = []
        for signals in observations(monitor, item, position):
            yield item, signals
    if run:
        yield from _observed_run(monitor, run)


def _observed_run(
    monitor: StreamMonitor, run: list[StreamPredictions]
) -> Iterator[tuple[StreamInput, list[Signal] | None]]:
    entries = [entry for item in run for entry in item.predictions]
    items = (item for item in run for _entry in item.predictions)
    yield from zip(items, monitor.observe_scores(entries), strict=True)


def observations(
    monitor: StreamMonitor, item: StreamInput, position: RecordPosition
) -> Iterator[list[Signal] | None]:
    """Apply ``item`` (read at ``position``) to ``monitor`` one case at a time: each case's
    signals as it is applied, None for a case the monitor had applied already. A decision
    (a re-baselining or a review, by its scope) raises nothing: no signals once applied,
    None if applied already."""
    if isinstance(item, Rebaseline):
        at = JoinPosition(
            topic=position.topic, partition=position.partition, offset=position.offset, rank=0
        )
        yield [] if monitor.rebaseline(item.rebaseline_id, at, item.scope) else None
        return
    if isinstance(item, Outcome):
        applied = monitor.already_applied("outcome", item.joined_at)
        yield None if applied else monitor.observe(item)
        return
    yield from monitor.observe_scores(item.predictions)


def tally_of(key: str, monitor: StreamMonitor) -> VersionTally | None:
    """The stream's cumulative tally for the pooled per-version stage."""
    counts = (
        monitor.true_positives,
        monitor.false_negatives,
        monitor.true_negatives,
        monitor.false_positives,
    )
    stream = StreamKey.from_key(key)
    return version_tally(stream, counts, monitor.first_case_time, monitor.last_case_time)


def _by_stream(
    inputs: Sequence[tuple[StreamInput, RecordPosition]],
) -> dict[str, tuple[StreamKey, list[tuple[StreamInput, RecordPosition]]]]:
    """The inputs by stream key, each stream's in their order (streams are independent:
    applied stream by stream, each is looked up, marked and journalled once per call)."""
    grouped: dict[str, tuple[StreamKey, list[tuple[StreamInput, RecordPosition]]]] = {}
    for item, position in inputs:
        stream = stream_of(item)
        key = stream.as_key()
        entry = grouped.get(key)
        if entry is None:
            entry = grouped[key] = (stream, [])
        entry[1].append((item, position))
    return grouped
