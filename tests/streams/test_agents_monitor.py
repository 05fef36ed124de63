"""The stream agent run whole under Faust's test context: each outcome applied once, states
written and records acked only at a flush, and a failing update dead-lettered without
losing the outcomes held with it."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import pytest
from faust.types import EventT

from postmarket import topics
from postmarket.contracts import DeadLetter, Outcome, decode, encode
from streams import app as worker
from streams.agents import monitor
from streams.channels import registry, stream_monitors, stream_prediction_monitors
from streams.performance import Signal, StreamMonitor
from streams.retention import key_partition
from tests.factories import make_outcome, make_registry_entry
from tests.streams.agent_harness import Feed, RecordingProducer, settled, wait_until

OUTCOMES = topics.OUTCOMES
STREAM = make_outcome("positive", "positive", 0).stream.as_key()
PARTITION = key_partition(STREAM, worker.settings.topic_partitions)
CHANGELOG = stream_monitors.changelog_topic.get_topic_name()


def _reset_monitor_state() -> None:
    """Everything the stream agent keeps between records, in its module and its tables."""
    monitor.unacked.take()
    monitor.unwritten.clear()
    monitor.failed_positions.clear()
    monitor.changed.clear()
    monitor.live_monitors.clear()
    monitor._parsed_registrations.clear()
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
    assert written.json()["applied"] == {f"outcome|{topics.FOLLOWUPS}:0": [7, 0]}


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
    assert state["applied"] == {f"outcome|{topics.FOLLOWUPS}:0": [2, 0]}
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
