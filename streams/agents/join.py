"""The join agent: decode, call the pure case file, emit. No business rule lives here."""

from __future__ import annotations

import functools
import logging
import time
from collections import Counter, OrderedDict
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any, NamedTuple

from postmarket import topics
from postmarket.contracts import (
    ContractViolation,
    FollowUp,
    Prediction,
    Problem,
    Rebaseline,
    decode,
    utc_now,
)
from postmarket.contracts.batches import BatchElement, check_batch_key, decode_batch
from postmarket.contracts.codec import encode_outcome
from postmarket.contracts.events import stream_key
from postmarket.metrics import Children
from streams import site_streams
from streams.app import app, consumed, duplicates, metrics, owned_partitions, settings
from streams.authentication import (
    AUTHENTICITY_REQUIRED,
    SignedRecord,
    authentic_event,
    check_site,
    signer_of,
    site_keys,
)
from streams.casefile import Accepted, CaseFile, RecordPosition
from streams.channels import (
    SendQueue,
    case_files,
    case_inputs,
    outcomes,
    send_table_states,
    set_table_state,
)
from streams.deadletter import DeadLetterNotWritten, Source, dead_letter_failure, dead_lettering
from streams.event_time import BelievableTimes, EventTimeBounds
from streams.first_sighting import judge_first_sighting
from streams.held_acks import HeldAcks, flush_every, flush_then_ack, handle_holding_acks
from streams.join_backlog import stream_inputs
from streams.live_streams import StreamInput, TakenStates, contents
from streams.rekeying import Origin, case_event_of, origin_of
from streams.retention import (
    SCAN_SLICE,
    ScanPacing,
    SweepCursor,
    Watermark,
    case_key,
    key_partition,
    misplaced,
    sweep_marks,
    swept,
)
from streams.site_streams import apply as apply_to_streams
from streams.site_streams import catch_ups, keep_states, live, send_states

EVENT_TIMES = EventTimeBounds(
    max_skew=timedelta(hours=settings.event_time_max_skew_hours),
    max_age=timedelta(days=settings.event_time_max_age_days),
)
RETENTION = timedelta(days=settings.join_retention_days)
REMEMBER_DROPPED = timedelta(days=settings.join_dedupe_days)
FORGET_EVERY = timedelta(days=1)
"""Dropped cases are checked for forgetting once per this much event time per partition."""
logger = logging.getLogger(__name__)
watermark = Watermark()
sweeps = ScanPacing(settings.join_sweep_interval_s)
"""When the retention sweep reads every case file again."""
last_forget: dict[int, datetime] = {}
SWEEP_SLICE = SCAN_SLICE
sweep: list[SweepCursor] = []
"""The retention sweep under way, if one is (dropped at each rebalance: the partitions
owned, and the tables, may have changed)."""

site_last_event = Children(metrics.site_last_event)
predictions_counted = Children(metrics.predictions)
outcomes_counted = Children(metrics.outcomes)

if AUTHENTICITY_REQUIRED:

    @app.task
    async def follow_site_keys() -> None:
        """Keep this worker's copy of every site's public keys current (see streams.site_keys)."""
        await site_keys.run()


FLUSH_EVENTS = 500
FLUSH_INTERVAL_S = 0.1
"""Case files and stream states go to their tables once per this many input records or
this long, whichever comes first, not once per record: one changelog record per event was
a quarter of the join's time (and a 1.4 KB stream state per case)."""
APPLIED_HEADER = ("pms-applied", b"join")
"""On each outcome: applied to its stream by the join that produced it (an output for the
evidence sink and auditors; no worker reads it back)."""
LIVE_CASES_MAX = 20_000
"""Case files kept as objects (about 3 KB each with their events), least recently used
dropped first: loading one from its table state validates every event in it again, which
cost a follow-up several times its own decode."""
live_cases: OrderedDict[str, CaseFile] = OrderedDict()
"""The case files this worker last loaded or changed, as objects, least recently used first
(an OrderedDict: a dict's oldest key, found past the holes its deletions leave, cost 4 us a
load once it was full, 0.4 this way); each equals its table
state or its entry in :data:`unwritten_cases`, so the table (with what the next flush
writes) stays the truth. Dropped on every rebalance: the table may have been recovered from
its changelog since."""
unwritten_cases: dict[str, tuple[int, CaseFile | None]] = {}
"""key -> (changelog partition, case file; None: delete it) of the case files changed since
the last flush, written once per flush instead of once per event (one changelog record per
event was a quarter of the join's time). Looked up before the table and never dropped by
the LRU of :data:`live_cases`: until the flush, this is the case's only up-to-date copy."""


@app.on_partitions_revoked.connect
async def _forget_cases_on_revoke(sender: Any, /, *args: Any, **kwargs: Any) -> None:
    # While this worker still owns the partitions: a case file or stream state written
    # after the revoke could overwrite what their new owner wrote. If it fails the worker
    # fails, and its records, never acked, are joined again by whoever owns them next.
    catch_ups.revoked()  # before the flush: a timer's catch-up applies nothing after it
    await flush_joined()
    live_cases.clear()
    sweep.clear()
    live.revoke()


@app.on_partitions_assigned.connect
async def _forget_cases_on_assign(sender: Any, /, *args: Any, **kwargs: Any) -> None:
    live_cases.clear()
    sweep.clear()
    live.assign()
    catch_ups.assigned()


outcome_queue = SendQueue(outcomes, headers=[APPLIED_HEADER])
"""The outcomes the events joined completed, handed to the producer by a task of their own
after each input record (and by each flush, before it acks)."""
unacked = HeldAcks()
"""The records read since the last flush: acked only once the case files and stream
states they changed are sent, so a crash in between reads them again instead of losing
them."""


@app.agent(case_inputs)
async def join_cases(stream: Any) -> None:
    """Join each case's predictions with its follow-ups, emit outcomes when truth is final,
    and apply both to their site's streams."""
    await handle_holding_acks(stream, _join_record, unacked, flush_joined, FLUSH_EVENTS)


async def _join_record(event: Any) -> None:
    try:
        await _join_events(event)
    finally:
        # Also after a failure: the record is acked as handled then (see handle_holding_acks),
        # and the cases changed before it already hold these outcomes as sent.
        outcome_queue.send_soon()


async def _join_events(event: Any) -> None:
    message = event.message
    # Before this partition's first record reaches the streams: they skip by position, so
    # an older input applied after a newer one would be lost (streams.join_catch_up).
    await catch_ups.before_record((message.topic, message.partition), message.offset)
    if event.message.topic == topics.INPUTS:
        await _join_batch(event)
    else:
        await _join_forwarded(event)


async def _join_batch(event: Any) -> None:
    """A signed batch: verified and its site checked once, then each event alone, so a bad
    one is dead-lettered with its place and the others count."""
    message = event.message
    at = RecordPosition(message.topic, message.partition, message.offset)
    value = event.value or b""

    async def read() -> None:
        signer = await signer_of(SignedRecord(message.topic, message.key, value, message.headers))
        batch = decode_batch(value)
        check_batch_key(batch, message.key)
        _check_placed(batch.site_id, message.partition)
        check_site(signer, batch.site_id, value)
        consumed(message.topic).inc(len(batch.elements))
        await _join_elements(at, batch.elements, message.timestamp)

    # Only the envelope and the signature can refuse the whole record: each event's own
    # failure is its own dead letter (an event joined before it stays joined).
    await dead_lettering(Source(at, value, message.headers), read, "reading a batch")


async def _join_elements(
    at: RecordPosition, elements: Sequence[BatchElement], sent_at: float
) -> None:
    """Each event of a batch worked out on its case in turn (a bad one dead-lettered alone),
    then what they give the streams applied at once and their cases kept. If the streams
    refuse that, they are left as before it, and the events are joined again one at a time:
    only the one refused is dead-lettered.

    One application per record instead of one per event: its lock, its roll-back marks and
    its call were a tenth of the join's time per event."""
    believable, cases = EVENT_TIMES.for_record(sent_at, utc_now()), StagedCases()
    staged: list[tuple[BatchElement, Staged]] = []
    for element in elements:
        # dead_lettering's work, inline: a Source and a call per event were a twentieth of
        # the join's time, for the rare event that fails.
        try:
            work = await _stage_element(at, element, sent_at, believable, cases)
        except DeadLetterNotWritten:
            raise
        except Exception as error:
            await dead_letter_failure(Source.of_event(at, element), error, "joining")
            continue
        staged.append((element, work))
    if not staged:
        return
    site_last_event(staged[0][1].event.site_id).set(time.time())
    try:
        await apply_to_streams([i for _e, work in staged for i in work.inputs], at.partition)
    except Exception:
        logger.warning("the streams refused an event of %s: joining its events one by one", at)
        for element, work in staged:
            alone = functools.partial(_join, work.position, work.event, sent_at, at.topic)
            await dead_lettering(Source.of_event(at, element), alone, "joining")
        return
    kept = KeptCounts()
    for _element, work in staged:
        _keep(work, kept)
    kept.publish()
    _sweep_if_due(at.partition)


async def _join_forwarded(event: Any) -> None:
    """A v1 record the ingress agent re-keyed by site: verified over the topic and key its
    collector signed, and dead-lettered as the record the collector sent."""
    message = event.message
    position = RecordPosition(message.topic, message.partition, message.offset)
    origin = origin_of(message.headers)
    source = position if origin is None else RecordPosition(*origin.where())

    async def join() -> None:
        if origin is None:
            reason = "no origin header: not a v1 record forwarded by a worker"
            raise ContractViolation("record", "unknown_source", [Problem("<headers>", reason)])
        value = event.value or b""
        if origin.topic == topics.REBASELINES:
            await _apply_decision(origin, message.key, value, position.partition)
            return
        record = SignedRecord(origin.topic, origin.key, value, message.headers)
        case_event = await authentic_event(
            record, lambda: case_event_of(origin.topic, origin.key, value)
        )
        if message.key != case_event.site_id.encode():
            reason = f"forwarded under {message.key!r}, not its site_id"
            raise ContractViolation("record", "schema", [Problem("<key>", reason)])
        _check_placed(case_event.site_id, message.partition)
        await _join(position, case_event, message.timestamp, origin.topic)

    await dead_lettering(Source(source, event.value, message.headers), join, "joining")


async def _apply_decision(origin: Origin, key: bytes | None, value: bytes, partition: int) -> None:
    """A re-baselining decision forwarded by site: applied at its original record's
    position (where a worker of the previous release applied it too), its state on the
    site's ``partition``."""
    decision = decode(Rebaseline, value)
    if key != decision.stream.site_id.encode():
        reason = f"forwarded under {key!r}, not its stream's site_id"
        raise ContractViolation("Rebaseline", "schema", [Problem("<key>", reason)])
    _check_placed(decision.stream.site_id, partition)
    at = RecordPosition(*origin.where())
    done = await apply_to_streams([(decision, at)], partition)
    duplicates(origin.topic).inc(done.duplicates)


@app.task
async def flush_joined_periodically() -> None:
    await flush_every(FLUSH_INTERVAL_S, flush_joined, "case files and stream states")


async def flush_joined() -> None:
    """Write the case files and stream states changed since the last flush (with the
    tallies for the pooled stage), then ack the records read so far.

    Both are taken at one instant with the records they cover (no await in between), so
    the tables always hold states that cover at least the records acked or being acked. A
    record read again after a crash (its offset not committed) is applied onto the last
    written states: the case's own positions make each of its events a replay (outcomes
    sent again, same places) if that state covers it, a new event if not; the streams skip
    by position what their state covers. Faust commits only acked offsets, after flushing
    its producer: a record's offset is never committed before what it changed is on its way.
    """
    # Taken never inside an event's change to its streams (``applying``).
    parts = (_take_joined, _keep_joined, _send_joined, _restore_joined)
    await flush_then_ack(unacked, *parts, taking=site_streams.applying)


class JoinedFlush(NamedTuple):
    """What one flush of the join sends: the case files changed since the last (as held,
    and as states) and the stream states."""

    held: dict[str, tuple[int, CaseFile | None]]
    writes: list[tuple[int, str, dict[str, Any] | None]]
    streams: TakenStates


def _take_joined() -> JoinedFlush:
    held = dict(unwritten_cases)
    unwritten_cases.clear()
    writes = [
        (partition, key, case.to_state() if case is not None else None)
        for key, (partition, case) in held.items()
    ]
    return JoinedFlush(held, writes, live.take_flush())


def _keep_joined(taken: JoinedFlush) -> None:
    for _partition, key, state in taken.writes:
        set_table_state(case_files, key, state)
    keep_states(taken.streams)


async def _send_joined(taken: JoinedFlush) -> None:
    await outcome_queue.hand_over()
    await send_table_states(case_files, taken.writes)
    await send_states(taken.streams)


def _restore_joined(taken: JoinedFlush) -> None:
    for key, entry in taken.held.items():  # written again by the next flush, unless changed
        unwritten_cases.setdefault(key, entry)
    live.restore(taken.streams)


def _hold_case(partition: int, key: str, case: CaseFile | None) -> None:
    """Have the next flush write ``case`` (None: delete it) under ``key``."""
    unwritten_cases[key] = (partition, case)


async def _stage_element(
    at: RecordPosition,
    element: BatchElement,
    sent_at: float,
    believable: BelievableTimes,
    cases: StagedCases,
) -> Staged:
    if element.event is None:
        raise element.violation or ContractViolation("record", "schema", [])
    position = at.at_index(element.index)
    return await _stage(position, element.event, sent_at, at.topic, believable, cases)


class Staged(NamedTuple):
    """One event worked out on its case and not kept yet: the case as it changed it, and
    what it gives the streams."""

    position: RecordPosition
    event: Prediction | FollowUp
    sent_at: float
    sent_to: str
    key: str
    changed: CaseFile
    accepted: Accepted
    legacy: bool
    """Its case was found under its key from before the inputs were keyed by site."""
    inputs: list[tuple[StreamInput, RecordPosition]]


StagedCases = dict[str, CaseFile]
"""The cases changed by the events of a batch staged so far, by key: the next event of the
same case changes them further."""


async def _join(
    position: RecordPosition, case_event: Prediction | FollowUp, sent_at: float, sent_to: str
) -> None:
    """One event, all or nothing: its case changes only once its streams took what the
    change gives them (they roll back if they fail), so a failure dead-letters the event with
    neither changed. ``sent_at``: the record's Kafka timestamp (CreateTime: when the
    collector sent it); ``sent_to``: the topic the collector sent it to (the metrics' label)."""
    believable = EVENT_TIMES.for_record(sent_at, utc_now())
    work = await _stage(position, case_event, sent_at, sent_to, believable, {})
    site_last_event(case_event.site_id).set(time.time())
    if work.inputs:
        await apply_to_streams(work.inputs, position.partition)
    kept = KeptCounts()
    _keep(work, kept)
    kept.publish()
    _sweep_if_due(position.partition)


async def _stage(
    position: RecordPosition,
    case_event: Prediction | FollowUp,
    sent_at: float,
    sent_to: str,
    believable: BelievableTimes,
    cases: StagedCases,
) -> Staged:
    """The event's change to a copy of its case (from ``cases`` if an event staged before
    changed it), nothing kept yet; its first sighting judged before."""
    _believe_event_time(case_event, believable)
    watermark.advance(position.partition, case_event.event_time)
    key = case_key(case_event.site_id, case_event.case_pseudonym)
    prediction = case_event if isinstance(case_event, Prediction) else None
    case, legacy = cases.get(key), False
    if case is None:
        case, legacy = _case_file(key, case_event.case_pseudonym)
    event_key = str(case_event.event_id)
    if prediction is not None and not case.knows(prediction, event_key):
        # Before the case changes: an error here leaves it as it was.
        await judge_first_sighting(prediction, prediction.stream, position.partition)
    changed = case.copy()
    accepted = changed.add(case_event, position, event_key)
    if not accepted.duplicate:
        cases[key] = changed
    inputs = stream_inputs(accepted, prediction, position)
    return Staged(position, case_event, sent_at, sent_to, key, changed, accepted, legacy, inputs)


class KeptCounts:
    """What the events of a record kept add to the join's counters, by stream: counted once
    per record and stream, not once per event (each increment looks its labels up and takes
    its counter's lock)."""

    def __init__(self) -> None:
        self.predictions: Counter[str] = Counter()
        self.outcomes: Counter[tuple[str, str, str]] = Counter()

    def publish(self) -> None:
        for key, count in self.predictions.items():
            predictions_counted(*_labels(key)).inc(count)
        for (key, decision, label), count in self.outcomes.items():
            outcomes_counted(*_labels(key), decision, label).inc(count)


def _labels(key: str) -> tuple[str, ...]:
    """The metric labels of a stream key made by ``StreamKey.as_key`` (the stream shared,
    validated once: :func:`~postmarket.contracts.events.stream_key`)."""
    device_id, device_version, site_id, task = key.split("|")
    return metrics.stream_labels(stream_key(device_id, device_version, site_id, task))


def _keep(work: Staged, kept: KeptCounts) -> None:
    """The event's case as it changed it, once its streams took its inputs; its outcomes,
    and its counts in ``kept``. Held with no await: the next flush writes the case."""
    accepted, event = work.accepted, work.event
    if accepted.duplicate:
        duplicates(work.sent_to).inc()
        if accepted.after_retention:
            metrics.events_duplicate_after_retention.labels(work.sent_to).inc()
    else:
        live_cases[work.key] = work.changed
        _hold_case(work.position.partition, work.key, work.changed)
        if work.legacy:
            _forget_legacy_key(event.case_pseudonym)
        if isinstance(event, Prediction):
            kept.predictions[event.stream.as_key()] += 1
    # Handed over after the record (_join_record), at the latest by the flush that acks it
    # (Faust flushes the producer before committing); on a replay of this very record the
    # same outcomes are sent again and their consumers skip them by event id.
    for outcome in accepted.outcomes:
        key = outcome.stream.as_key()
        record = (outcome_partition(key), key.encode(), encode_outcome(outcome))
        outcome_queue.put(record)
        if not accepted.duplicate:
            kept.outcomes[key, outcome.decision, outcome.label] += 1
            # Pipeline latency of the record that completed the join, not the clinical
            # wait for truth (event times), which the follow-up completeness shows.
            metrics.outcome_latency.observe(max(time.time() - work.sent_at, 0.0))


def _check_placed(site_id: str, partition: int) -> None:
    """Refuse a record its producer placed on another partition than its site's (an
    explicit partition, or another partitioner): applied here, it would start a second
    copy of the site's cases and streams, owned by whichever worker reads this one."""
    problem = misplaced(site_id, partition, settings.topic_partitions)
    if problem is not None:
        raise ContractViolation("record", "schema", [Problem("<partition>", problem)])


@functools.lru_cache(maxsize=4096)
def outcome_partition(key: str) -> int:
    """The partition of a stream's outcomes, as the producer's key hash would choose it
    (murmur2, as Faust's default partitioner and the Java client; ``pms.outcomes.v1`` has
    ``topic_partitions``, checked at start), hashed once per stream instead of per outcome."""
    return key_partition(key, settings.topic_partitions)


def _believe_event_time(case_event: Prediction | FollowUp, believable: BelievableTimes) -> None:
    """Refuse an event dated implausibly far from when its record was sent and read
    (see streams.event_time): it would move the watermark and expire other cases."""
    problem = believable.problem(case_event.event_time)
    if problem is not None:
        contract = type(case_event).__name__
        raise ContractViolation(contract, "impossible_value", [problem])


def _case_file(key: str, case_pseudonym: str) -> tuple[CaseFile, bool]:
    """The case file as its table will hold it after the next flush: the live object, else
    the one the flush will write, else loaded from the table; and whether it was found
    under its key from before the inputs were keyed by site."""
    case = live_cases.get(key)
    if case is not None:
        live_cases.move_to_end(key)  # most recently used last
        return case, False
    legacy = False
    found = _stored(key)
    if found is None:
        # Written before the upgrade, on the pseudonym's partition: adopted under the
        # site key at its first change (one worker reads them all; see manufacturer.md).
        found = _stored(case_pseudonym)
        legacy = found is not None
        if isinstance(found, CaseFile):  # held under its old key: not the same object
            found = found.to_state()
    case = found if isinstance(found, CaseFile) else CaseFile.from_state(found)
    live_cases[key] = case
    if len(live_cases) > LIVE_CASES_MAX:
        # Safe for an unwritten case too: unwritten_cases keeps it, and is looked up first.
        live_cases.popitem(last=False)
    return case, legacy


def _stored(key: str) -> CaseFile | dict[str, Any] | None:
    """What the next flush writes under ``key`` if it writes anything, else the table's."""
    held = unwritten_cases.get(key)
    if held is not None:
        return held[1]
    state: dict[str, Any] | None = contents(case_files).get(key)
    return state


def _forget_legacy_key(case_pseudonym: str) -> None:
    """Delete a case file adopted under its site key from its pre-upgrade key (at the
    flush that writes it under its site key, after it)."""
    partition = key_partition(case_pseudonym, settings.topic_partitions)
    _hold_case(partition, case_pseudonym, None)


def _sweep_if_due(partition: int) -> None:
    """Drop the events of this worker's cases that are past retention, and forget the cases
    dropped longer ago than ``join_dedupe_days`` (see streams.retention): one sweep of the
    case files for every partition it owns (one per partition read them all as many times),
    each case against its own partition's watermark, begun as :data:`sweeps` allows, then
    :data:`SWEEP_SLICE` cases after each input record (a million at once held the join up
    for seconds). ``partition``: the one whose record was just processed.

    Called between records, with no event under way: a case is judged by its state then,
    so an event joined since the sweep began is never dropped on what its case held before.
    Reads each state's event times only; a case is loaded only when it is past retention.
    """
    if not sweep:
        started = time.monotonic()
        if not sweeps.due(started):
            return
        owned = owned_partitions(topics.INPUTS) | {partition}
        marks = sweep_marks(owned, watermark, last_forget, FORGET_EVERY)
        if partition not in marks:
            return  # too few events yet to tell how far this partition's event time has come
        sweep.append(SweepCursor(_case_keys(), marks, owned, marks[partition], started))
    cursor = sweep[0]
    began = time.monotonic()
    for key in cursor.next_slice(SWEEP_SLICE):
        _sweep_case(key, cursor)
    cursor.reading_s += time.monotonic() - began
    if cursor.done:
        sweep.clear()
        sweeps.scanned(cursor.started, cursor.started + cursor.reading_s)


def _case_keys() -> list[str]:
    """The keys of every case file, the table's and those only the next flush writes."""
    stored = contents(case_files)
    return [*stored, *(key for key in unwritten_cases if key not in stored)]


def _sweep_case(key: str, cursor: SweepCursor) -> None:
    held = unwritten_cases.get(key)
    if held is not None:  # changed since the last flush: few of them
        state = held[1].to_state() if held[1] is not None else None
    else:
        state = contents(case_files).get(key)
    done = swept(key, state, cursor, RETENTION, REMEMBER_DROPPED, settings.topic_partitions)
    if done is None:
        return
    _hold_case(done.home, key, done.case)
    live_cases.pop(key, None)
    if done.expired is not None:
        for stream in done.expired.streams_without_truth:
            metrics.predictions_expired.labels(*metrics.stream_labels(stream)).inc()
        metrics.followups_unmatched.inc(done.expired.followups_without_prediction)
