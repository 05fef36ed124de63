"""The re-baselining agent: each decision forwarded once, as it is, keyed by its stream's
site, with its origin; an invalid one is dead-lettered there with its reason."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator

import pytest

from postmarket import topics
from postmarket.contracts import DeadLetter, decode, encode
from streams import app as worker
from streams.agents import rebaselines
from streams.channels import SITE_INPUTS
from streams.rekeying import Origin, origin_of
from tests.factories import make_rebaseline
from tests.streams.agent_harness import Feed, RecordingProducer, settled, wait_until

REBASELINES = topics.REBASELINES


@pytest.fixture
def producer(monkeypatch: pytest.MonkeyPatch) -> Iterator[RecordingProducer]:
    recording = RecordingProducer()
    monkeypatch.setattr(worker.app, "_producer", recording)
    rebaselines.unacked.take()
    yield recording
    rebaselines.unacked.take()


def run_forwarder(scenario: Callable[[Feed], Awaitable[None]]) -> None:
    async def main() -> None:
        async with rebaselines.forward_rebaselines.test_context() as agent:
            await scenario(Feed(agent))

    asyncio.run(main())


def test_a_decision_is_forwarded_as_it_is_keyed_by_its_streams_site(
    producer: RecordingProducer,
) -> None:
    decision = make_rebaseline()
    key = decision.stream.as_key().encode()

    async def scenario(feed: Feed) -> None:
        record = await feed.put(REBASELINES, key, encode(decision), partition=3)
        await wait_until(settled(rebaselines.unacked, [record]), "the decision forwarded")
        assert not record.message.acked  # until the flush
        await rebaselines.flush_forwarded()
        assert record.message.acked

    run_forwarder(scenario)
    [forwarded] = producer.to(SITE_INPUTS)
    assert (forwarded.key, forwarded.value) == (decision.stream.site_id.encode(), encode(decision))
    # The join applies it at this position: where the previous release applied it.
    assert origin_of(forwarded.headers) == Origin(REBASELINES, 3, 0, key)


def test_an_invalid_decision_is_dead_lettered_and_the_next_goes_on(
    producer: RecordingProducer,
) -> None:
    decision = make_rebaseline()
    key = decision.stream.as_key().encode()

    async def scenario(feed: Feed) -> None:
        records = [
            await feed.put(REBASELINES, key, b"{not json"),
            await feed.put(REBASELINES, key, encode(decision).replace(b'"qa-lead"', b'""')),
            await feed.put(REBASELINES, key, encode(decision)),
        ]
        await wait_until(settled(rebaselines.unacked, records), "the decisions handled")

    run_forwarder(scenario)
    letters = [decode(DeadLetter, r.value or b"") for r in producer.to(topics.DEADLETTER)]
    assert [(x.reason_code, x.source_offset) for x in letters] == [
        ("not_json", 0),
        ("impossible_value", 1),
    ]
    assert "decided_by" in letters[1].reason
    [forwarded] = producer.to(SITE_INPUTS)
    assert origin_of(forwarded.headers) == Origin(REBASELINES, 0, 2, key)
