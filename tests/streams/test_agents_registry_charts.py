"""The registry agent designs a version's charts as its entry arrives, and the worker's timer
those of every entry in its copy of the registry (the other workers' entries included)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest

from postmarket import topics
from postmarket.contracts import encode
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
    registry.data.clear()
    registry_agent.unacked.take()
    labelled_chart.cache_clear()
    yield recording
    registry.data.clear()
    registry_agent.unacked.take()


def test_an_arriving_entry_has_its_charts_designed(producer: RecordingProducer) -> None:
    entry = make_registry_entry()

    async def main() -> None:
        async with registry_agent.follow_registry.test_context() as agent:
            event = await Feed(agent).put(
                topics.REGISTRY, entry.as_key().encode(), encode(entry), partition=0
            )
            await wait_until(lambda: event.message.acked, "the entry acked")

    asyncio.run(main())
    assert labelled_chart.cache_info().currsize == 2  # sensitivity and specificity


def test_the_timer_designs_entries_another_worker_read_once_recovered(
    producer: RecordingProducer, monkeypatch: pytest.MonkeyPatch
) -> None:
    entry = make_registry_entry()
    registry.data[entry.as_key()] = entry.model_dump(mode="json")
    recovery: Any = worker.app.tables.recovery  # type: ignore[attr-defined]
    monkeypatch.setattr(recovery.completed, "is_set", lambda: False)
    assert registry_agent.design_recovered_registry() == 0

    monkeypatch.setattr(recovery.completed, "is_set", lambda: True)
    assert registry_agent.design_recovered_registry() == 1
    assert labelled_chart.cache_info().currsize == 2
