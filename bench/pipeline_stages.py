"""Where a worker's own time goes per input event: the agents' calls, without Kafka or Faust.

The same events the pipeline benchmark sends, as v1 records (one signed event each) or as
v2 signed batches (:func:`signed_batches`), taken through the calls the join and stream
agents make for them, each stage timed on its own in this process:

- ``decode``: the event contract (``decode_for_topic``; ``decode_batch`` for a batch);
- ``signature``: the record's Ed25519 signature (``SiteKeyring.verify``), once per record;
- ``join``: the case file's ``add``; each changed case's table state, as Faust's JSON codec
  writes it to the changelog, once per flush; each outcome encoded for ``pms.outcomes.v1``;
  each new prediction as the streams take it (``prediction_input``);
- ``monitor``: the monitor's update with each outcome and new prediction, handed over by the
  join as objects (one hop: nothing encoded or decoded between them), and each changed
  stream's states encoded once per flush (detectors designed beforehand: that is once per
  registered version, not per event).

Each run under the worker's garbage-collection settings (:mod:`streams.gc_tuning`), as the
worker runs. Their sum is the work that is ours, per event. Beside the bare Faust agent's whole time
per event (same run), it bounds the full worker's ratio even if its extra consumes and
produces cost nothing: ``bare / (bare + ours)``.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime

from faust.utils import json as faust_json

from postmarket import topics
from postmarket.authenticity import SigningKey, SiteKeyring
from postmarket.contracts import (
    FollowUp,
    Outcome,
    Prediction,
    RegistryEntry,
    decode_for_topic,
    encode,
)
from postmarket.contracts.batches import EventKind, decode_batch, encode_batch
from postmarket.contracts.events import MAX_BATCH_EVENTS
from streams.casefile import CaseFile, RecordPosition
from streams.charted_claims import claimed_performance
from streams.gc_tuning import tuned_garbage_collection
from streams.join_backlog import prediction_input
from streams.monitor_policy import MonitorPolicy
from streams.routing import StreamPredictions
from streams.stream_monitor import StreamMonitor

FLUSH_EVENTS = 500
"""Input records per flush, as the agents batch their routed records and state writes."""
SignedRecord = tuple[str, bytes, bytes, list[tuple[str, bytes]]]
"""(topic, key, value, headers) as a collector sends it."""


def signed_records(
    events: list[Prediction | FollowUp], signing_keys: dict[str, SigningKey]
) -> list[SignedRecord]:
    records = []
    for event in events:
        topic = topics.PREDICTIONS if isinstance(event, Prediction) else topics.FOLLOWUPS
        key, value = event.case_pseudonym.encode(), encode(event)
        records.append((topic, key, value, signing_keys[event.site_id].sign(topic, key, value)))
    return records


def collector_batches(
    events: Sequence[Prediction | FollowUp], size: int = MAX_BATCH_EVENTS
) -> list[tuple[str, list[Prediction | FollowUp]]]:
    """The events in batches of ``size`` or fewer of one site each, as collectors send them.

    A site's events go in their time order (a backlog sent in full batches); the sites'
    collectors send side by side, so their batches interleave, one of each site in turn.
    """
    by_site: dict[str, list[Prediction | FollowUp]] = {}
    for event in events:
        by_site.setdefault(event.site_id, []).append(event)
    per_site = []
    for site, site_events in by_site.items():
        ordered = sorted(site_events, key=lambda event: event.event_time)
        per_site.append(
            [(site, ordered[start : start + size]) for start in range(0, len(ordered), size)]
        )
    return [
        batch for turn in itertools.zip_longest(*per_site) for batch in turn if batch is not None
    ]


def signed_batches(
    events: Sequence[Prediction | FollowUp], signing_keys: dict[str, SigningKey]
) -> list[SignedRecord]:
    """The events as ``pms.inputs.v2`` records: keyed by site, signed once each."""
    records = []
    for site, batch in collector_batches(events):
        key = site.encode()
        value = encode_batch(site, [(_kind(e), str(e.event_id), encode(e)) for e in batch])
        signature = signing_keys[site].sign(topics.INPUTS, key, value)
        records.append((topics.INPUTS, key, value, signature))
    return records


def _kind(event: Prediction | FollowUp) -> EventKind:
    return "prediction" if isinstance(event, Prediction) else "followup"


def _timed(stage: Callable[[], object]) -> float:
    started = time.perf_counter()
    stage()
    return time.perf_counter() - started


def _positions(records: list[SignedRecord]) -> Iterator[RecordPosition]:
    """Each record's position on one partition of its topic."""
    offsets: dict[str, int] = {}
    for topic, *_ in records:
        offsets[topic] = offsets.get(topic, -1) + 1
        yield RecordPosition(topic, 0, offsets[topic])


def _batch_events(
    records: list[SignedRecord],
) -> list[tuple[Prediction | FollowUp, RecordPosition]]:
    """Each event of each batch record, at its place in its record (its ``index``)."""
    placed = []
    for (_topic, _key, value, _headers), at in zip(records, _positions(records), strict=True):
        for element in decode_batch(value).elements:
            if element.event is None:
                raise ValueError(f"event {element.index} of a bench batch is invalid")
            position = RecordPosition(at.topic, at.partition, at.offset, element.index)
            placed.append((element.event, position))
    return placed


def _join(
    placed: list[tuple[Prediction | FollowUp, RecordPosition]],
) -> tuple[list[Outcome], list[StreamPredictions]]:
    """Join every event, encoding each outcome as sent to ``pms.outcomes``; the outcomes and
    new predictions, as the join hands them to the streams."""
    cases: dict[str, CaseFile] = {}
    joined: list[Outcome] = []
    routed: list[StreamPredictions] = []
    unwritten: dict[str, CaseFile] = {}

    def flush() -> None:
        for case in unwritten.values():  # the changelog records, as Faust's codec writes them
            faust_json.dumps(case.to_state())
        unwritten.clear()

    for number, (event, position) in enumerate(placed):
        case = cases.setdefault(event.case_pseudonym, CaseFile())
        accepted = case.add(event, position)
        if not accepted.duplicate:
            unwritten[event.case_pseudonym] = case  # written once per flush (join.py)
        for outcome in accepted.outcomes:
            encode(outcome)
            joined.append(outcome)
        if isinstance(event, Prediction):
            routed.append(prediction_input(event, position.joined(0)))
        if number % FLUSH_EVENTS == FLUSH_EVENTS - 1:
            flush()
    flush()
    return joined, routed


def _monitor(
    outcomes: list[Outcome], routed: list[StreamPredictions], registry: dict[str, RegistryEntry]
) -> None:
    policy = MonitorPolicy()
    monitors: dict[str, StreamMonitor] = {}

    def monitor_of(stream_key: str, version: str, task: str) -> StreamMonitor:
        if stream_key not in monitors:
            entry = registry[version]
            claims = claimed_performance(entry, task)
            monitors[stream_key] = StreamMonitor.for_claims(
                claims, policy, entry.reference_prevalence
            )
        return monitors[stream_key]

    for number, outcome in enumerate(outcomes):
        stream = outcome.stream
        monitor_of(stream.as_key(), stream.device_version, stream.task).observe(outcome)
        if number % FLUSH_EVENTS == FLUSH_EVENTS - 1:
            for monitor in monitors.values():
                faust_json.dumps(monitor.state_of("outcome"))
    for number, batch in enumerate(routed):
        stream = batch.stream
        monitor = monitor_of(stream.as_key(), stream.device_version, stream.task)
        for entry in batch.predictions:
            monitor.observe_score(entry.score, entry.joined_at, entry.decision, entry.categories)
        if number % FLUSH_EVENTS == FLUSH_EVENTS - 1:
            for each in monitors.values():
                faust_json.dumps(each.state_of("prediction"))


def own_work_us_per_event(
    events: list[Prediction | FollowUp],
    signing_keys: dict[str, SigningKey],
    registry: list[RegistryEntry],
    registered_at: datetime,
    *,
    batched: bool = False,
    worker_gc: bool = True,
) -> dict[str, float]:
    """Microseconds per input event of each stage, and their ``total``, as v1 records
    (``batched``: as v2 signed batches of up to 500 events, :func:`signed_batches`), under
    the worker's garbage-collection settings (``worker_gc`` False: Python's defaults)."""
    if not worker_gc:
        return _own_work(events, signing_keys, registry, registered_at, batched)
    with tuned_garbage_collection():
        return _own_work(events, signing_keys, registry, registered_at, batched)


def _own_work(
    events: list[Prediction | FollowUp],
    signing_keys: dict[str, SigningKey],
    registry: list[RegistryEntry],
    registered_at: datetime,
    batched: bool,
) -> dict[str, float]:
    if batched:
        records = signed_batches(events, signing_keys)
        placed = _batch_events(records)
    else:
        records = signed_records(events, signing_keys)
        placed = list(zip(events, _positions(records), strict=True))
    keyring = SiteKeyring(
        key.registration(site, registered_at) for site, key in signing_keys.items()
    )
    seconds: dict[str, float] = {}
    if batched:
        seconds["decode"] = _timed(lambda: [decode_batch(v) for _t, _k, v, _h in records])
    else:
        seconds["decode"] = _timed(lambda: [decode_for_topic(t, v) for t, _k, v, _h in records])
    seconds["signature"] = _timed(
        lambda: [keyring.verify(h, t, k, v, at=registered_at) for t, k, v, h in records]
    )
    started = time.perf_counter()
    outcomes, predictions = _join(placed)
    seconds["join"] = time.perf_counter() - started
    by_version = {entry.device_version: entry for entry in registry}
    tasks = {event.task for event in events if isinstance(event, Prediction)}
    for entry, task in itertools.product(registry, tasks):  # thresholds: once per version
        claims = claimed_performance(entry, task)
        StreamMonitor.for_claims(claims, MonitorPolicy(), entry.reference_prevalence)
    seconds["monitor"] = _timed(lambda: _monitor(outcomes, predictions, by_version))
    per_event = {stage: 1e6 * spent / len(events) for stage, spent in seconds.items()}
    per_event["total"] = sum(per_event.values())
    return per_event
