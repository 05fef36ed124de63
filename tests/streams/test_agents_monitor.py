"""The stream agent run whole under Faust's test context: each outcome applied once, states
written and records acked only at a flush, a failing update dead-lettered without
losing the outcomes held with it, and each re-baselining decision applied once."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import pytest
from faust.types import EventT

from detectors import BetaBinomialConfidenceSequence
from postmarket import topics
from postmarket.contracts import DeadLetter, Outcome, Rebaseline, decode, encode
from postmarket.contracts.events import JoinPosition
from streams import app as worker
from streams.agents import monitor
from streams.channels import (
    STREAM_PREDICTIONS,
    registry,
    stream_monitors,
    stream_prediction_monitors,
)
from streams.performance import REFERENCE_DRIFT_DETECTORS, Signal, StreamMonitor
from streams.retention import key_partition
from streams.routing import RoutedScore, StreamPredictions
from tests.factories import make_outcome, make_rebaseline, make_registry_entry
from tests.streams.agent_harness import Feed, RecordingProducer, settled, wait_until
from tests.streams.test_stream_claims_restart import _rejected_stream
from tests.streams.test_stream_policy_migration import _old_states
from tests.streams.test_stream_policy_migration import _positives as _old_positives

OUTCOMES = topics.OUTCOMES
STREAM_KEY = make_outcome("positive", "positive", 0).stream
STREAM = STREAM_KEY.as_key()
PARTITION = key_partition(STREAM, worker.settings.topic_partitions)
CHANGELOG = stream_monitors.changelog_topic.get_topic_name()
PREDICTION_CHANGELOG = stream_prediction_monitors.changelog_topic.get_topic_name()
REBASELINES = topics.REBASELINES


def _reset_monitor_state() -> None:
    """Everything the stream agent keeps between records, in its module and its tables."""
    monitor.unacked.take()
    monitor.states.clear()
    for table in (stream_monitors, stream_prediction_monitors, registry):
        table.data.clear()


@pytest.fixture
def producer(monkeypatch: pytest.MonkeyPatch) -> Iterator[RecordingProducer]:
    """The app's producer replaced by a recording one; the stream's version registered."""
    recording = RecordingProducer()
    monkeypatch.setattr(worker.app, "_producer", recording)
    _reset_monitor_state()
    entry = make_registry_entry()
    registry.data[entry.as_key()] = entry.model_dump(mode="json")
    yield recording
    _reset_monitor_state()


def run_monitor(scenario: Callable[[Feed], Awaitable[None]]) -> None:
    """Run ``scenario`` against the real stream agent, started in a fresh test context."""

    async def main() -> None:
        async with monitor.monitor_streams.test_context() as agent:
            await scenario(Feed(agent))

    asyncio.run(main())


async def put_outcome(feed: Feed, outcome: Outcome) -> EventT[Any]:
    key = outcome.stream.as_key().encode()
    return await feed.put(OUTCOMES, key, encode(outcome), partition=PARTITION)


def counts() -> list[int]:
    """The stream's [tp, fn, tn, fp] as its table holds them."""
    state = stream_monitors.get(STREAM)
    assert state is not None, "the stream's state was never written"
    return list(state["counts"])


def counter(name: str, **labels: str) -> float:
    return worker.registry.get_sample_value(f"postmarket_{name}_total", labels) or 0.0


def test_an_outcome_delivered_twice_is_applied_once(producer: RecordingProducer) -> None:
    outcome = make_outcome("positive", "positive", offset=7)
    duplicates_before = counter("events_duplicate", topic=OUTCOMES)

    async def scenario(feed: Feed) -> None:
        events = [await put_outcome(feed, outcome), await put_outcome(feed, outcome)]
        await wait_until(settled(monitor.unacked, events), "both deliveries handled")
        await monitor.flush_stream_states()

    run_monitor(scenario)
    assert counts() == [1, 0, 0, 0]
    assert counter("events_duplicate", topic=OUTCOMES) - duplicates_before == 1
    [written] = producer.to(CHANGELOG)
    assert written.partition == PARTITION
    assert written.json()["counts"] == [1, 0, 0, 0]
    assert written.json()["applied"] == {
        f"outcome|{topics.FOLLOWUPS}:0": [7, 0, 0]
    }  # (offset, batch index, rank)


def test_states_are_written_and_records_acked_only_at_the_flush(
    producer: RecordingProducer,
) -> None:
    async def scenario(feed: Feed) -> None:
        events = [
            await put_outcome(feed, make_outcome("positive", "positive", offset=0)),
            await put_outcome(feed, make_outcome("negative", "negative", offset=1)),
        ]
        await wait_until(settled(monitor.unacked, events), "both outcomes applied")
        assert stream_monitors.get(STREAM) is None
        assert producer.to(CHANGELOG) == []
        assert not any(event.message.acked for event in events)
        await monitor.flush_stream_states()
        assert all(event.message.acked for event in events)

    run_monitor(scenario)
    assert counts() == [1, 0, 1, 0]
    [written] = producer.to(CHANGELOG)  # one state for both records
    assert written.json()["counts"] == [1, 0, 1, 0]


def test_an_update_that_raises_is_dead_lettered_and_the_stream_rebuilt_without_it(
    producer: RecordingProducer, monkeypatch: pytest.MonkeyPatch
) -> None:
    before = make_outcome("positive", "positive", offset=0)
    poisoned = make_outcome("negative", "positive", offset=1)
    after = make_outcome("negative", "negative", offset=2)
    observe = StreamMonitor.observe

    def observe_with_a_bug(self: StreamMonitor, outcome: Outcome) -> list[Signal]:
        signals = observe(self, outcome)
        if outcome.event_id == poisoned.event_id:
            raise RuntimeError("a bug after the monitor counted the outcome")
        return signals

    monkeypatch.setattr(StreamMonitor, "observe", observe_with_a_bug)
    failures_before = counter("events_deadlettered", topic=OUTCOMES, reason="internal_error")

    async def scenario(feed: Feed) -> None:
        events = [
            await put_outcome(feed, before),
            await put_outcome(feed, poisoned),
            await put_outcome(feed, after),
        ]
        await wait_until(settled(monitor.unacked, events), "all three outcomes handled")
        await monitor.flush_stream_states()
        assert all(event.message.acked for event in events)

    run_monitor(scenario)
    # The poisoned false negative is not counted, though the monitor had counted it when
    # the update raised; the outcome before it is counted once, not again by the rebuild.
    assert counts() == [1, 0, 1, 0]
    state = stream_monitors.get(STREAM)
    assert state is not None
    assert state["applied"] == {f"outcome|{topics.FOLLOWUPS}:0": [2, 0, 0]}
    [letter] = [decode(DeadLetter, r.value or b"") for r in producer.to(topics.DEADLETTER)]
    assert (letter.reason_code, letter.source_topic, letter.source_offset) == (
        "internal_error",
        OUTCOMES,
        1,
    )
    assert letter.original == encode(poisoned)
    assert "RuntimeError" in letter.reason
    after_count = counter("events_deadlettered", topic=OUTCOMES, reason="internal_error")
    assert after_count - failures_before == 1


def test_the_registered_reference_prevalence_reaches_the_streams_estimates(
    producer: RecordingProducer,
) -> None:
    entry = make_registry_entry().model_copy(update={"reference_prevalence": 0.238})
    registry.data[entry.as_key()] = entry.model_dump(mode="json")

    async def scenario(feed: Feed) -> None:
        event = await put_outcome(feed, make_outcome("positive", "positive", offset=0))
        await wait_until(settled(monitor.unacked, [event]), "the outcome applied")
        await monitor.flush_stream_states()

    run_monitor(scenario)
    state = stream_monitors.get(STREAM)
    assert state is not None
    assert state["reference_prevalence"] == 0.238
    restored = StreamMonitor.from_states(state, None)
    assert restored.detectors["sensitivity_estimate"].settings()["reference_prevalence"] == 0.238


async def put_predictions(feed: Feed, start: int, n: int, score: float = 0.3) -> EventT[Any]:
    """``n`` predictions of the stream, as the join routes them (one record per batch)."""
    routed = StreamPredictions(
        stream=STREAM_KEY,
        predictions=tuple(
            RoutedScore(
                score=score,
                joined_at=JoinPosition(topic=topics.PREDICTIONS, partition=0, offset=i, rank=0),
                decision="negative",
                categories={"manufacturer": "SIEMENS", "model": "Definition AS"},
            )
            for i in range(start, start + n)
        ),
    )
    return await feed.put(STREAM_PREDICTIONS, STREAM.encode(), encode(routed), partition=PARTITION)


async def put_decision(feed: Feed, decision: Rebaseline, partition: int = PARTITION) -> EventT[Any]:
    return await feed.put(REBASELINES, STREAM.encode(), encode(decision), partition=partition)


async def referenced(feed: Feed) -> list[EventT[Any]]:
    """The stream's reference completed, and its drift tests run, through the agent."""
    events = [await put_predictions(feed, start, 100) for start in range(0, 600, 100)]
    await wait_until(settled(monitor.unacked, events), "the predictions applied")
    await monitor.flush_stream_states()
    return events


def label_free() -> dict[str, Any]:
    state = stream_prediction_monitors.get(STREAM)
    assert state is not None, "the stream's label-free state was never written"
    return dict(state)


def drift_gauge() -> float | None:
    sample = STREAM_KEY.model_dump(mode="json") | {"detector": "score_drift"}
    return worker.registry.get_sample_value("postmarket_detector_statistic", sample)


def test_a_rebaseline_restarts_the_streams_reference_once(producer: RecordingProducer) -> None:
    decision = make_rebaseline()
    labels = STREAM_KEY.model_dump(mode="json")
    applied_before = counter("stream_rebaselines", **labels)
    duplicates_before = counter("events_duplicate", topic=REBASELINES)

    async def scenario(feed: Feed) -> None:
        await referenced(feed)
        assert {"score_drift", "model_drift"} <= set(label_free()["detectors"])
        live = monitor.states.live_monitors[STREAM]
        monitor.states.publish(decision.stream, live)
        assert drift_gauge() is not None
        written = len(producer.to(PREDICTION_CHANGELOG))

        event = await put_decision(feed, decision)
        await wait_until(settled(monitor.unacked, [event]), "the decision applied")
        await monitor.flush_stream_states()
        assert len(producer.to(PREDICTION_CHANGELOG)) == written + 1
        assert drift_gauge() is None  # not left showing the old reference's statistic

        # Read again from the table (a restart): at its offset, then published again.
        monitor.states.live_monitors.clear()
        again = [
            await put_decision(Feed(feed._agent), decision),
            await put_decision(feed, decision),
        ]
        assert [e.message.offset for e in again] == [0, 1]
        await wait_until(settled(monitor.unacked, again), "both redeliveries handled")
        await monitor.flush_stream_states()
        assert len(producer.to(PREDICTION_CHANGELOG)) == written + 1

    run_monitor(scenario)
    state = label_free()
    assert state["rebaseline_id"] == str(decision.rebaseline_id)
    assert state["applied"][f"prediction|{REBASELINES}:{PARTITION}"] == [0, 0, 0]
    assert state["score_reference"] == [0] * 10 and state["acquisition_reference"] == {}
    assert not set(REFERENCE_DRIFT_DETECTORS) & {*state["detectors"], *state["statistics"]}
    assert state["predictions"] == 600
    assert {"sensitivity_estimate", "specificity_estimate"} <= set(state["detectors"])
    assert counter("stream_rebaselines", **labels) - applied_before == 1
    assert counter("events_duplicate", topic=REBASELINES) - duplicates_before == 2
    assert producer.to(topics.DEADLETTER) == []


def test_an_invalid_or_misplaced_decision_is_dead_lettered(producer: RecordingProducer) -> None:
    misplaced = (PARTITION + 1) % worker.settings.topic_partitions

    async def scenario(feed: Feed) -> None:
        events = [
            await feed.put(REBASELINES, STREAM.encode(), b"{not json", partition=PARTITION),
            await feed.put(
                REBASELINES,
                STREAM.encode(),
                encode(make_rebaseline()).replace(b'"qa-lead"', b'""'),
                partition=PARTITION,
            ),
            await put_decision(feed, make_rebaseline(), partition=misplaced),
        ]
        await wait_until(settled(monitor.unacked, events), "the decisions handled")
        await monitor.flush_stream_states()
        assert all(event.message.acked for event in events)

    run_monitor(scenario)
    letters = [decode(DeadLetter, r.value or b"") for r in producer.to(topics.DEADLETTER)]
    assert [(x.reason_code, x.source_topic, x.source_partition) for x in letters] == [
        ("not_json", REBASELINES, PARTITION),
        ("impossible_value", REBASELINES, PARTITION),
        ("impossible_value", REBASELINES, misplaced),
    ]
    assert "decided_by" in letters[1].reason and "partition" in letters[2].reason
    assert stream_prediction_monitors.get(STREAM) is None
    assert producer.to(PREDICTION_CHANGELOG) == []


def test_a_rebuild_replays_a_held_decision(
    producer: RecordingProducer, monkeypatch: pytest.MonkeyPatch
) -> None:
    decision = make_rebaseline()
    observe_score = StreamMonitor.observe_score

    def observe_with_a_bug(self: StreamMonitor, score: float, *args: Any, **kw: Any) -> Any:
        if score == 0.9:
            raise RuntimeError("a bug on a prediction held with the decision")
        return observe_score(self, score, *args, **kw)

    async def scenario(feed: Feed) -> None:
        await referenced(feed)
        monkeypatch.setattr(StreamMonitor, "observe_score", observe_with_a_bug)
        events = [
            await put_decision(feed, decision),
            await put_predictions(feed, 600, 10),
            await put_predictions(feed, 610, 1, score=0.9),
        ]
        await wait_until(settled(monitor.unacked, events), "the held records handled")
        await monitor.flush_stream_states()

    run_monitor(scenario)
    # Rebuilt from the table with the records held since: the decision, then 10 predictions
    # of the new reference; not the poisoned one.
    state = label_free()
    assert state["rebaseline_id"] == str(decision.rebaseline_id)
    assert sum(state["score_reference"]) == 10 and state["predictions"] == 610
    [letter] = [decode(DeadLetter, r.value or b"") for r in producer.to(topics.DEADLETTER)]
    assert letter.reason_code == "internal_error"


def test_a_decision_that_restarts_a_rejected_claims_test_writes_the_labelled_state(
    producer: RecordingProducer,
) -> None:
    """The restart after review changes the labelled side: written at the flush, so a worker
    restarted after it does not load the claims test still rejected."""
    rejected, _ = _rejected_stream()
    labelled, label_free_state = json.loads(json.dumps(rejected.to_states()))
    stream_monitors.data[STREAM] = labelled
    stream_prediction_monitors.data[STREAM] = label_free_state

    async def scenario(feed: Feed) -> None:
        event = await put_decision(feed, make_rebaseline())
        await wait_until(settled(monitor.unacked, [event]), "the decision applied")
        await monitor.flush_stream_states()

    run_monitor(scenario)
    [written] = producer.to(CHANGELOG)
    assert written.partition == PARTITION
    assert written.json()["claims_restarts"] == 1
    restarted = StreamMonitor.from_states(written.json(), label_free())
    test = restarted.detectors["sensitivity_claims_test"]
    assert isinstance(test, BetaBinomialConfidenceSequence) and test.verdict == "consistent"


def test_a_review_decision_restarts_the_rejected_claims_test_and_keeps_the_reference(
    producer: RecordingProducer,
) -> None:
    rejected, _ = _rejected_stream()
    labelled, label_free_state = json.loads(json.dumps(rejected.to_states()))
    stream_monitors.data[STREAM] = labelled
    stream_prediction_monitors.data[STREAM] = label_free_state
    review = make_rebaseline(scope="review")

    async def scenario(feed: Feed) -> None:
        await referenced(feed)
        before = label_free()
        event = await put_decision(feed, review)
        await wait_until(settled(monitor.unacked, [event]), "the review applied")
        await monitor.flush_stream_states()
        after = label_free()
        for kept in ("score_reference", "acquisition_reference", "detectors"):
            assert after[kept] == before[kept], kept

    run_monitor(scenario)
    assert label_free()["rebaseline_id"] == str(review.rebaseline_id)
    assert {"score_drift", "model_drift"} <= set(label_free()["detectors"])
    written = producer.to(CHANGELOG)[-1].json()
    assert written["claims_restarts"] == 1
    restarted = StreamMonitor.from_states(written, label_free())
    test = restarted.detectors["sensitivity_claims_test"]
    assert isinstance(test, BetaBinomialConfidenceSequence) and test.verdict == "consistent"


def test_a_stream_stored_before_the_budget_takes_the_workers_plan_when_loaded(
    producer: RecordingProducer,
) -> None:
    labelled, label_free_state = _old_states(_old_positives([(0.872, 300)], seed=4))
    stream_monitors.data[STREAM] = labelled
    stream_prediction_monitors.data[STREAM] = label_free_state
    assert monitor.POLICY.budget() is not None

    async def scenario(feed: Feed) -> None:
        event = await put_outcome(feed, make_outcome("positive", "positive", offset=300))
        await wait_until(settled(monitor.unacked, [event]), "the outcome applied")
        await monitor.flush_stream_states()

    run_monitor(scenario)
    [written] = producer.to(CHANGELOG)
    policy = StreamMonitor.from_states(written.json(), label_free()).policy
    assert policy.budget() == monitor.POLICY.budget()
    assert policy.arl0_cases == 5000.0  # what shaped the running states is kept
