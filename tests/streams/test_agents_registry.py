"""The registry agent run whole under Faust's test context: each registry record reaches the
global table, a bad one is dead-lettered, and each is acked only once handled; the worker
designs the charts of every entry in its copy of the registry (those its agent read and the
other workers' alike) at the end of each rebalance, before its streams resume, then on a
timer."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest

from postmarket import topics
from postmarket.contracts import DeadLetter, decode, encode
from streams import app as worker
from streams.agents import registry as registry_agent
from streams.channels import registry
from streams.chart_warming import RegisteredCharts
from streams.detector_design import labelled_chart
from tests.factories import make_registry_entry
from tests.streams.agent_harness import Feed, RecordingProducer, wait_until


@pytest.fixture
def producer(monkeypatch: pytest.MonkeyPatch) -> Iterator[RecordingProducer]:
    recording = RecordingProducer()
    monkeypatch.setattr(worker.app, "_producer", recording)
    monkeypatch.setattr(
        registry_agent, "registered_charts", RegisteredCharts(registry_agent.POLICY)
    )
    labelled_chart.cache_clear()
    registry.data.clear()
    registry_agent.unacked.take()
    yield recording
    registry.data.clear()
    registry_agent.unacked.take()


def recovered(monkeypatch: pytest.MonkeyPatch, done: bool) -> None:
    """Faust's table recovery marked complete (``done``) or still under way."""
    recovery: Any = worker.app.tables.recovery  # type: ignore[attr-defined]
    monkeypatch.setattr(recovery.completed, "is_set", lambda: done)


def held_in_the_table() -> None:
    """A registry entry another worker read: in this worker's copy of the table only."""
    entry = make_registry_entry()
    registry.data[entry.as_key()] = entry.model_dump(mode="json")


def test_an_entry_reaches_the_table_and_is_acked_once_handled(
    producer: RecordingProducer, monkeypatch: pytest.MonkeyPatch
) -> None:
    entry = make_registry_entry()
    recovered(monkeypatch, True)

    async def main() -> None:
        async with registry_agent.follow_registry.test_context() as agent:
            event = await Feed(agent).put(
                topics.REGISTRY, entry.as_key().encode(), encode(entry), partition=0
            )
            await wait_until(lambda: event.message.acked, "the entry acked")
            assert registry.data[entry.as_key()] == entry.model_dump(mode="json")

    asyncio.run(main())
    # Its charts designed at the timer's next tick (streams.chart_warming), not by the agent
    # (the timer would find them designed) nor at the version's first event.
    assert registry_agent.design_recovered_registry() == 1
    assert labelled_chart.cache_info().currsize == 2  # sensitivity and specificity


def test_a_bad_entry_is_dead_lettered_and_the_next_still_counts(
    producer: RecordingProducer,
) -> None:
    entry = make_registry_entry()

    async def main() -> None:
        async with registry_agent.follow_registry.test_context() as agent:
            feed = Feed(agent)
            bad = await feed.put(topics.REGISTRY, b"k", b"{not json", partition=0)
            good = await feed.put(
                topics.REGISTRY, entry.as_key().encode(), encode(entry), partition=0
            )
            await wait_until(lambda: bad.message.acked and good.message.acked, "both acked")
            assert entry.as_key() in registry.data

    asyncio.run(main())
    letters = [decode(DeadLetter, r.value or b"") for r in producer.to(topics.DEADLETTER)]
    assert [letter.reason_code for letter in letters] == ["not_json"]


def test_the_timer_designs_entries_another_worker_read_once_recovered(
    producer: RecordingProducer, monkeypatch: pytest.MonkeyPatch
) -> None:
    held_in_the_table()
    recovered(monkeypatch, False)
    assert registry_agent.design_recovered_registry() == 0

    recovered(monkeypatch, True)
    assert registry_agent.design_recovered_registry() == 1
    assert labelled_chart.cache_info().currsize == 2


def test_the_recovered_registrys_charts_are_designed_before_the_streams_resume(
    producer: RecordingProducer, monkeypatch: pytest.MonkeyPatch
) -> None:
    held_in_the_table()
    recovered(monkeypatch, False)  # as Faust sends it

    asyncio.run(worker.app.on_rebalance_complete.send())  # what recovery sends at its end
    assert labelled_chart.cache_info().currsize == 2  # sensitivity and specificity
    assert registry_agent.registered_charts.design_new(registry.data) == 0  # none left


def test_a_registry_value_that_cannot_be_designed_leaves_the_rebalance_to_finish(
    producer: RecordingProducer, caplog: pytest.LogCaptureFixture
) -> None:
    registry.data["device|1.0"] = {"device_id": "device"}  # not a registry entry

    asyncio.run(worker.app.on_rebalance_complete.send())
    assert labelled_chart.cache_info().currsize == 0
    assert "designing the registered versions' charts failed" in caplog.text
    assert "Traceback" not in caplog.text
