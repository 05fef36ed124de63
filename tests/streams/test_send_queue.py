"""The join's outcome queue (streams.channels.SendQueue): the agent queues records and goes
on while a task hands them to the producer in their order; a flush hands over everything
queued before it acks; a failed hand-over keeps its records queued, first."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import pytest

from streams import app as worker
from streams.channels import BATCH_FROM, SendQueue, outcomes
from tests.streams.agent_harness import RecordingBatch, RecordingProducer


class GatedProducer(RecordingProducer):
    """A producer whose batches wait until ``opened`` is set, as aiokafka's wait for the
    partition's previous batch to go into a request; ``refuse`` fails the next send."""

    def __init__(self) -> None:
        super().__init__()
        self.opened = asyncio.Event()
        self.refuse = False

    async def send_batch(self, batch: RecordingBatch, topic: str, *, partition: int) -> Any:
        await self.opened.wait()
        if self.refuse:
            self.refuse = False
            raise RuntimeError("KafkaTimeoutError")
        return await super().send_batch(batch, topic, partition=partition)


@pytest.fixture
def producer(monkeypatch: pytest.MonkeyPatch) -> Iterator[GatedProducer]:
    gated = GatedProducer()
    monkeypatch.setattr(worker.app, "_producer", gated)
    yield gated


def records(first: int, count: int) -> list[tuple[int, bytes, bytes]]:
    """``count`` outcomes on partition 0, numbered from ``first`` (enough to go in batches)."""
    return [(0, b"s-1", json.dumps({"n": n}).encode()) for n in range(first, first + count)]


def numbers(producer: RecordingProducer) -> list[int]:
    return [json.loads(r.value or b"")["n"] for r in producer.to(outcomes.get_topic_name())]


def refused_once(producer: GatedProducer) -> SendQueue:
    """A queue holding ``BATCH_FROM`` records, whose producer refuses the first send."""
    queue = SendQueue(outcomes)
    for record in records(0, BATCH_FROM):
        queue.put(record)
    producer.opened.set()
    producer.refuse = True
    return queue


def test_the_agent_goes_on_while_its_records_wait_and_they_leave_in_order(
    producer: GatedProducer,
) -> None:
    queue = SendQueue(outcomes, headers=[("pms-applied", b"join")])

    async def scenario() -> None:
        for record in records(0, BATCH_FROM):
            queue.put(record)
        queue.send_soon()  # returns at once: the agent is not held up by the producer
        await asyncio.sleep(0.01)
        assert numbers(producer) == []  # waiting for the partition's previous batch
        for record in records(BATCH_FROM, BATCH_FROM):  # the next input record's outcomes
            queue.put(record)
        queue.send_soon()  # one task at it already: no second one to overtake it
        producer.opened.set()
        await queue.hand_over()  # as a flush does before it acks

    asyncio.run(scenario())
    assert numbers(producer) == list(range(2 * BATCH_FROM))
    assert {tuple(r.headers) for r in producer.records} == {(("pms-applied", b"join"),)}


def test_a_failed_hand_over_keeps_its_records_first_for_the_next(
    producer: GatedProducer,
) -> None:
    queue = refused_once(producer)

    async def scenario() -> None:
        with pytest.raises(RuntimeError):
            await queue.hand_over()  # a flush fails: it acks nothing
        for record in records(BATCH_FROM, 3):
            queue.put(record)
        await queue.hand_over()

    asyncio.run(scenario())
    assert numbers(producer) == list(range(BATCH_FROM + 3))


def test_a_failed_background_hand_over_is_logged_and_left_to_the_flush(
    producer: GatedProducer, caplog: pytest.LogCaptureFixture
) -> None:
    queue = refused_once(producer)

    async def scenario() -> None:
        queue.send_soon()
        await asyncio.sleep(0.01)
        assert numbers(producer) == []
        await queue.hand_over()

    asyncio.run(scenario())
    assert numbers(producer) == list(range(BATCH_FROM))
    assert f"handing {outcomes.get_topic_name()} records to the producer failed" in caplog.text
