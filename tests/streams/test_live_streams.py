"""The live streams of a worker, without Faust: each input applied once, a failing update
leaving its stream as it was, a flush taken at one instant and given back when sending
fails, states written where the caller's record was read, and tallies resent once."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from postmarket import topics
from postmarket.contracts import Alert, Outcome
from postmarket.contracts.events import JoinPosition
from postmarket.metrics import STREAM_CONFUSION, WorkerMetrics
from streams.app import settings
from streams.casefile import RecordPosition
from streams.live_streams import Applied, LegacyTables, LiveStreams, Registrations
from streams.monitor_policy import planned_policy
from streams.routing import RoutedScore, StreamPredictions
from streams.stream_monitor import Signal, StreamMonitor
from tests.factories import make_outcome, make_rebaseline, make_registry_entry
from tests.streams.test_stream_policy_migration import _old_states
from tests.streams.test_stream_policy_migration import _positives as _old_positives

ENTRY = make_registry_entry()
STREAM_KEY = make_outcome("positive", "positive", 0).stream
STREAM = STREAM_KEY.as_key()
PARTITION = 5
"""A partition no stream-key hash chose: the states go wherever the caller read the input."""


class Streams:
    """A :class:`LiveStreams` over plain dicts, with its own metrics and recorded alerts."""

    def __init__(self, registered: bool = True) -> None:
        self.registry = CollectorRegistry()
        self.labelled: dict[str, Any] = {}
        self.label_free: dict[str, Any] = {}
        entries = {ENTRY.as_key(): ENTRY.model_dump(mode="json")} if registered else {}
        self.live = LiveStreams(
            planned_policy(settings),
            self.labelled,
            self.label_free,
            entries,
            WorkerMetrics.create(self.registry),
        )
        self.alerts: list[Alert] = []

    async def _emit(self, alert: Alert) -> None:
        self.alerts.append(alert)

    def apply(self, outcome: Outcome, partition: int = PARTITION) -> Applied:
        at = RecordPosition(topics.OUTCOMES, partition, outcome.joined_at.offset)
        return asyncio.run(self.live.apply_outcome(outcome, at, self._emit))

    def flush(self) -> list[list[int]]:
        """Take a flush and write it to the tables: the counts of each state written."""
        taken = self.live.take_flush()
        tables = {"outcome": self.labelled, "prediction": self.label_free}
        for write in taken.writes:
            tables[write.side][write.key] = write.state
        return [list(w.state["counts"]) for w in taken.writes if w.side == "outcome"]

    def counts(self) -> list[int]:
        monitor = self.live.monitor(STREAM, STREAM_KEY)
        return [
            monitor.true_positives,
            monitor.false_negatives,
            monitor.true_negatives,
            monitor.false_positives,
        ]

    def sample(self, name: str, **labels: str) -> float:
        return self.registry.get_sample_value(name, labels) or 0.0


@pytest.fixture
def streams() -> Streams:
    return Streams()


@pytest.fixture
def poisoned(monkeypatch: pytest.MonkeyPatch) -> Iterator[Outcome]:
    """An outcome whose update raises after the monitor counted it."""
    outcome = make_outcome("negative", "positive", offset=1)
    observe = StreamMonitor.observe

    def observe_with_a_bug(self: StreamMonitor, applied: Outcome) -> list[Signal]:
        signals = observe(self, applied)
        if applied.event_id == outcome.event_id:
            raise RuntimeError("a bug after the monitor counted the outcome")
        return signals

    monkeypatch.setattr(StreamMonitor, "observe", observe_with_a_bug)
    yield outcome


def test_an_outcome_applied_twice_counts_once_and_is_returned_as_a_duplicate(
    streams: Streams,
) -> None:
    outcome = make_outcome("positive", "positive", offset=7)
    assert streams.apply(outcome) == Applied(applied=1, duplicates=0)
    assert streams.apply(outcome) == Applied(applied=0, duplicates=1)
    assert streams.counts() == [1, 0, 0, 0]
    # The caller counts duplicates: it may know the record as one already (the join).
    assert streams.sample("postmarket_events_duplicate_total", topic=topics.OUTCOMES) == 0


def test_an_outcome_applied_again_after_its_state_was_written_counts_once(
    streams: Streams,
) -> None:
    outcome = make_outcome("positive", "positive", offset=7)
    streams.apply(outcome)
    streams.flush()
    streams.live.assign()  # a rebalance: the monitor is loaded again from the table
    streams.apply(outcome)
    assert streams.counts() == [1, 0, 0, 0]
    assert streams.flush() == []  # nothing changed, nothing to write


def test_a_failing_update_leaves_the_stream_as_before_it(
    streams: Streams, poisoned: Outcome
) -> None:
    streams.apply(make_outcome("positive", "positive", offset=0))
    with pytest.raises(RuntimeError):
        streams.apply(poisoned)
    streams.apply(make_outcome("negative", "negative", offset=2))
    assert streams.counts() == [1, 0, 1, 0]
    assert streams.flush() == [[1, 0, 1, 0]]


def test_a_failing_update_after_a_failed_flush_keeps_what_that_flush_held(
    streams: Streams, poisoned: Outcome
) -> None:
    streams.apply(make_outcome("positive", "positive", offset=0))
    streams.live.restore(streams.live.take_flush())  # sending failed: nothing written
    with pytest.raises(RuntimeError):
        streams.apply(poisoned)
    assert streams.flush() == [[1, 0, 0, 0]]


def test_inputs_applied_together_change_every_stream_or_none(
    streams: Streams, poisoned: Outcome
) -> None:
    """The join applies one event's outcomes and predictions together: a failure on one
    stream leaves the others, applied before it in the same call, as they were."""
    streams.apply(make_outcome("positive", "positive", offset=0))
    streams.flush()
    other = make_outcome("positive", "positive", offset=5, site_id="site-b")
    at = RecordPosition(topics.OUTCOMES, PARTITION, 9)
    together = [(other, at), (poisoned, at)]
    with pytest.raises(RuntimeError):
        asyncio.run(streams.live.apply_all(together, streams._emit, PARTITION))
    assert streams.flush() == []  # neither stream changed
    assert streams.counts() == [1, 0, 0, 0]
    site_b = streams.live.monitor(other.stream.as_key(), other.stream)
    assert site_b.predictions == 0 and site_b.outcomes == 0


def test_inputs_applied_together_write_their_states_where_the_caller_says(
    streams: Streams,
) -> None:
    outcome = make_outcome("positive", "positive", offset=0)
    at = RecordPosition(topics.REBASELINES, 1, 0)  # dedupe by this position, stored on 3
    done = asyncio.run(streams.live.apply_all([(outcome, at)], streams._emit, 3))
    assert done == Applied(applied=1, duplicates=0)
    [write] = streams.live.take_flush().writes
    assert write.partition == 3


def test_an_alert_that_cannot_be_sent_leaves_the_stream_as_before_its_outcome() -> None:
    streams = Streams()
    misses = [make_outcome("negative", "positive", offset=i) for i in range(30)]

    async def refuse(alert: Alert) -> None:
        raise ConnectionError("the producer is gone")

    live = streams.live
    firing = None
    for outcome in misses:
        at = RecordPosition(topics.OUTCOMES, PARTITION, outcome.joined_at.offset)
        try:
            asyncio.run(live.apply_outcome(outcome, at, refuse))
        except ConnectionError:
            firing = outcome
            break
    assert firing is not None, "no alert fired on 30 false negatives"
    assert streams.counts()[1] == firing.joined_at.offset  # the misses before it, not it
    streams.apply(firing)  # read again: applied now, and its alert raised
    assert streams.counts()[1] == firing.joined_at.offset + 1
    assert [alert.detector for alert in streams.alerts] == ["sensitivity_claims_test"]


def test_a_flush_takes_each_changed_state_once_with_its_tally(streams: Streams) -> None:
    streams.apply(make_outcome("positive", "positive", offset=0))
    streams.apply(make_outcome("negative", "negative", offset=1))
    taken = streams.live.take_flush()
    assert [(w.side, w.partition, w.key) for w in taken.writes] == [("outcome", PARTITION, STREAM)]
    assert [(t.sequence, t.counts) for t in taken.tallies] == [(2, (1, 0, 1, 0))]
    again = streams.live.take_flush()
    assert again.writes == [] and again.tallies == []


def test_a_flush_given_back_is_taken_again_with_the_newer_state(streams: Streams) -> None:
    streams.apply(make_outcome("positive", "positive", offset=0))
    failed = streams.live.take_flush()
    streams.apply(make_outcome("negative", "negative", offset=1))
    streams.live.restore(failed)
    taken = streams.live.take_flush()
    assert [list(w.state["counts"]) for w in taken.writes] == [[1, 0, 1, 0]]


def test_a_state_goes_to_the_partition_its_input_was_read_from(streams: Streams) -> None:
    streams.apply(make_outcome("positive", "positive", offset=0), partition=2)
    [write] = streams.live.take_flush().writes
    assert write.partition == 2


def test_a_decision_writes_both_sides_of_its_stream_and_counts_once(streams: Streams) -> None:
    decision = make_rebaseline()
    at = RecordPosition(topics.REBASELINES, PARTITION, 0)
    for _ in range(2):
        asyncio.run(streams.live.apply_decision(decision, at, streams._emit))
    taken = streams.live.take_flush()
    assert sorted(w.side for w in taken.writes) == ["outcome", "prediction"]
    labels = STREAM_KEY.model_dump(mode="json")
    assert streams.sample("postmarket_stream_rebaselines_total", **labels) == 1


def test_each_owned_streams_tally_is_resent_once_per_assignment(streams: Streams) -> None:
    streams.apply(make_outcome("positive", "positive", offset=0))
    streams.flush()
    other = make_outcome("positive", "positive", 0, site_id="site-b").stream.as_key()
    streams.labelled[other] = streams.labelled[STREAM]

    def owns(key: str) -> bool:
        return key == STREAM

    assert [t.stream.as_key() for t in streams.live.tallies_to_resend(owns)] == [STREAM]
    assert list(streams.live.tallies_to_resend(owns)) == []
    streams.live.assign()
    assert len(list(streams.live.tallies_to_resend(owns))) == 1


def test_gauges_are_set_for_changed_streams_and_cleared_on_revoke(streams: Streams) -> None:
    streams.apply(make_outcome("positive", "positive", offset=0))
    confusion = {**STREAM_KEY.model_dump(mode="json"), "cell": "tp"}

    def true_positives() -> float | None:
        return streams.registry.get_sample_value(STREAM_CONFUSION, confusion)

    assert true_positives() is None  # set in batches, not per input
    streams.live.publish_changed()
    assert true_positives() == 1
    streams.live.revoke()
    assert true_positives() is None


def test_the_live_streams_need_no_faust_app() -> None:
    """Pure enough to be driven by any agent (the join next): importing it starts no app."""
    probe = (
        "import sys, streams.live_streams; "
        "print('faust' in sys.modules, 'streams.app' in sys.modules)"
    )
    found = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    )
    assert found.stdout.split() == ["False", "False"]


def _legacy_streams(old: Streams) -> Streams:
    """Live streams whose current tables are empty, over ``old``'s tables as the legacy
    layout's (stream-keyed, on partition 7 here)."""
    new = Streams()
    new.live.legacy = LegacyTables(old.labelled, old.label_free, lambda key: 7)
    return new


def test_a_stream_stored_in_the_legacy_tables_is_adopted_whole_at_its_first_change() -> None:
    old = Streams()
    old.apply(make_outcome("positive", "positive", offset=0))
    old.flush()
    new = _legacy_streams(old)
    new.apply(make_outcome("negative", "negative", offset=1), partition=2)
    assert new.counts() == [1, 0, 1, 0]
    taken = new.live.take_flush()
    # Both sides move to the current tables, on the caller's partition, and only then is
    # the legacy state (the old layout wrote the labelled side only) deleted, on its own.
    assert sorted((w.side, w.partition) for w in taken.writes) == [
        ("outcome", 2),
        ("prediction", 2),
    ]
    assert [(r.side, r.partition, r.key) for r in taken.retired] == [("outcome", 7, STREAM)]


def test_an_input_the_legacy_state_applied_is_a_duplicate_and_adopts_nothing() -> None:
    old = Streams()
    applied = make_outcome("positive", "positive", offset=0)
    old.apply(applied)
    old.flush()
    new = _legacy_streams(old)
    assert new.apply(applied) == Applied(applied=0, duplicates=1)
    taken = new.live.take_flush()
    assert taken.writes == [] and taken.retired == []


def test_a_legacy_deletion_whose_flush_failed_is_sent_by_the_next_flush() -> None:
    old = Streams()
    old.apply(make_outcome("positive", "positive", offset=0))
    old.flush()
    new = _legacy_streams(old)
    new.apply(make_outcome("negative", "negative", offset=1))
    failed = new.live.take_flush()
    for retirement in failed.retired:  # kept locally before the send failed
        {"outcome": old.labelled, "prediction": old.label_free}[retirement.side].pop(STREAM)
    new.live.restore(failed)
    assert new.live.take_flush().retired == failed.retired


# --- ported from the stream agent's tests (the join drives these streams now) -------------


def _predictions(start: int, n: int, score: float = 0.3) -> StreamPredictions:
    """``n`` new predictions of the stream, as the join gives them."""
    return StreamPredictions(
        stream=STREAM_KEY,
        predictions=tuple(
            RoutedScore(
                score=score,
                joined_at=JoinPosition(topic=topics.INPUTS, partition=0, offset=i, rank=0),
                decision="negative",
                categories={"manufacturer": "SIEMENS", "model": "Definition AS"},
            )
            for i in range(start, start + n)
        ),
    )


def _apply(streams: Streams, item: Any, offset: int = 0) -> Applied:
    at = RecordPosition(topics.REBASELINES, PARTITION, offset)
    return asyncio.run(streams.live.apply(item, at, streams._emit))


def test_the_registered_reference_prevalence_reaches_the_streams_estimates() -> None:
    streams = Streams()
    entry = ENTRY.model_copy(update={"reference_prevalence": 0.238})
    streams.live.registrations = Registrations({entry.as_key(): entry.model_dump(mode="json")})
    streams.apply(make_outcome("positive", "positive", offset=0))
    streams.flush()
    state = streams.labelled[STREAM]
    assert state["reference_prevalence"] == 0.238
    restored = StreamMonitor.from_states(state, None)
    assert restored.detectors["sensitivity_estimate"].settings()["reference_prevalence"] == 0.238


def test_a_rebuild_replays_a_decision_applied_since_the_last_flush(
    streams: Streams, monkeypatch: pytest.MonkeyPatch
) -> None:
    for start in range(0, 600, 100):  # the reference completed, its drift tests running
        _apply(streams, _predictions(start, 100))
    streams.flush()
    decision = make_rebaseline()
    observe_score = StreamMonitor.observe_score

    def observe_with_a_bug(self: StreamMonitor, score: float, *args: Any, **kw: Any) -> Any:
        if score == 0.9:
            raise RuntimeError("a bug on a prediction applied after the decision")
        return observe_score(self, score, *args, **kw)

    monkeypatch.setattr(StreamMonitor, "observe_score", observe_with_a_bug)
    _apply(streams, decision, offset=0)
    _apply(streams, _predictions(600, 10))
    with pytest.raises(RuntimeError):
        _apply(streams, _predictions(610, 1, score=0.9))
    streams.flush()
    # Rebuilt from the table with what was applied since: the decision, then 10 predictions
    # of the new reference; not the poisoned one.
    state = streams.label_free[STREAM]
    assert state["rebaseline_id"] == str(decision.rebaseline_id)
    assert sum(state["score_reference"]) == 10 and state["predictions"] == 610


def test_a_stream_stored_before_the_budget_takes_the_workers_plan_when_loaded(
    streams: Streams,
) -> None:
    labelled, label_free = _old_states(_old_positives([(0.872, 300)], seed=4))
    streams.labelled[STREAM], streams.label_free[STREAM] = labelled, label_free
    plan = streams.live.plan
    assert plan.budget() is not None
    streams.apply(make_outcome("positive", "positive", offset=300))
    streams.flush()
    policy = StreamMonitor.from_states(streams.labelled[STREAM], streams.label_free[STREAM]).policy
    assert policy.budget() == plan.budget()
    assert policy.arl0_cases == 5000.0  # what shaped the running states is kept
