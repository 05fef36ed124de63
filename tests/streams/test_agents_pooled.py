"""The pooled agent and the join's tallies, run whole under Faust's test context: the join
sends each changed stream's cumulative tally with its states, keyed by version;
the pooled agent keeps each group's state in its table, acks only at its flush, skips a tally
it has, and raises one pooled alert on the version's pooled stream key."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from aiokafka.partitioner import DefaultPartitioner
from faust.types import EventT

from postmarket import topics
from postmarket.contracts import Alert, StreamKey, VersionTally, decode, encode, version_key
from streams import app as worker
from streams import site_streams
from streams.agents import join, pooled
from streams.app import settings
from streams.channels import (
    BATCH_FROM,
    case_files,
    pooled_monitors,
    registry,
    site_stream_monitors,
)
from streams.pooled import POOLED_SITE, version_tally
from streams.retention import key_partition
from tests.factories import make_followup, make_prediction, make_registry_entry
from tests.streams.agent_harness import Feed, RecordingProducer, settled, wait_until

ENTRY = make_registry_entry()
T0 = datetime(2026, 3, 1, tzinfo=UTC)
TALLIES = topics.VERSION_TALLIES


def _reset() -> None:
    for module in (join, pooled):
        module.unacked.take()
    pooled.unwritten.clear()
    pooled.changed.clear()
    pooled.live_monitors.clear()
    join.live_cases.clear()
    join.unwritten_cases.clear()
    site_streams.live.clear()
    for table in (case_files, site_stream_monitors, pooled_monitors, registry):
        table.data.clear()


@pytest.fixture
def producer(monkeypatch: pytest.MonkeyPatch) -> Iterator[RecordingProducer]:
    recording = RecordingProducer()
    monkeypatch.setattr(worker.app, "_producer", recording)
    _reset()
    registry.data[ENTRY.as_key()] = ENTRY.model_dump(mode="json")
    yield recording
    _reset()


def site_tally(site: str, tp: int, fn: int, tn: int = 0) -> VersionTally:
    stream = StreamKey(
        device_id=ENTRY.device_id,
        device_version=ENTRY.device_version,
        site_id=site,
        task="referable_dr",
    )
    return VersionTally(
        stream=stream,
        sequence=tp + fn + tn,
        true_positives=tp,
        false_negatives=fn,
        true_negatives=tn,
        false_positives=0,
        first_case_time=T0,
        last_case_time=T0 + timedelta(hours=tp + fn),
    )


def run_pooled(scenario: Callable[[Feed], Awaitable[None]]) -> None:
    async def main() -> None:
        async with pooled.pool_versions.test_context() as agent:
            await scenario(Feed(agent))

    asyncio.run(main())


async def put_tally(feed: Feed, tally: VersionTally) -> EventT[Any]:
    key = version_key(tally.stream)
    partition = key_partition(key, worker.settings.topic_partitions)
    return await feed.put(TALLIES, key.encode(), encode(tally), partition=partition)


def test_tallies_of_several_sites_give_one_pooled_alert_naming_the_version_and_its_sites(
    producer: RecordingProducer,
) -> None:
    sites = ("site-a", "site-b", "site-c")

    async def scenario(feed: Feed) -> None:
        events = []
        for k in range(1, 40):
            for site in sites:  # a sensitivity of 0.6 at every site
                events.append(await put_tally(feed, site_tally(site, 6 * k, 4 * k)))
        await wait_until(settled(pooled.unacked, events), "every tally handled")
        assert not any(event.message.acked for event in events)
        await pooled.flush_pooled_states()
        assert all(event.message.acked for event in events)

    run_pooled(scenario)
    raised = [decode(Alert, record.value or b"") for record in producer.to(topics.ALERTS)]
    kinds = {alert.detector for alert in raised}
    assert kinds <= {"pooled_sensitivity_cusum", "pooled_sensitivity_claims_test"}
    [claims_alert] = [a for a in raised if a.detector == "pooled_sensitivity_claims_test"]
    assert claims_alert.stream.site_id == POOLED_SITE
    assert claims_alert.stream.device_version == ENTRY.device_version
    assert ENTRY.device_version in claims_alert.message
    assert {k for k in claims_alert.evidence if k.startswith("site:")} == {
        f"site:{site}" for site in sites
    }
    key = f"{ENTRY.device_id}|{ENTRY.device_version}|referable_dr"
    state = pooled_monitors.get(key)
    assert state is not None
    assert {site: counts[1] for site, counts in state["sites"].items()} == {
        site: [6 * 39, 4 * 39, 0, 0] for site in sites
    }


def test_a_tally_read_again_is_counted_as_a_duplicate_and_changes_nothing(
    producer: RecordingProducer,
) -> None:
    first, older = site_tally("site-a", 9, 1), site_tally("site-a", 4, 1)
    before = worker.registry.get_sample_value(
        "postmarket_events_duplicate_total", {"topic": TALLIES}
    )

    async def scenario(feed: Feed) -> None:
        events = [await put_tally(feed, t) for t in (first, first, older)]
        await wait_until(settled(pooled.unacked, events), "the tallies handled")
        await pooled.flush_pooled_states()

    run_pooled(scenario)
    after = worker.registry.get_sample_value(
        "postmarket_events_duplicate_total", {"topic": TALLIES}
    )
    assert (after or 0.0) - (before or 0.0) == 2
    [state] = pooled_monitors.data.values()
    assert state["sites"]["site-a"][1] == [9, 1, 0, 0]


def test_the_join_sends_each_changed_streams_cumulative_tally_at_its_flush(
    producer: RecordingProducer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Signatures are not what this test is about.
    monkeypatch.setattr("streams.authentication.AUTHENTICITY_REQUIRED", False)
    cases = [("positive", "positive"), ("negative", "positive"), ("negative", "negative")]
    events = [
        (
            make_prediction(case_pseudonym=f"c-{n}", decision=decision),
            make_followup(case_pseudonym=f"c-{n}", label=label),
        )
        for n, (decision, label) in enumerate(cases)
    ]

    async def joined(feed: Feed, n: int) -> None:
        prediction, followup = events[n]
        records = [
            await feed.put_v1_event(topics.PREDICTIONS, f"c-{n}", prediction),
            await feed.put_v1_event(topics.FOLLOWUPS, f"c-{n}", followup),
        ]
        await wait_until(settled(join.unacked, records), f"case {n} joined")

    async def scenario(feed: Feed) -> None:
        await joined(feed, 0)
        await joined(feed, 1)
        assert producer.to(TALLIES) == []  # not before the flush
        await join.flush_joined()
        await joined(feed, 2)
        await join.flush_joined()

    async def main() -> None:
        async with join.join_cases.test_context() as agent:
            await scenario(Feed(agent))

    asyncio.run(main())
    sent = producer.to(TALLIES)
    tallies = [decode(VersionTally, record.value or b"") for record in sent]
    assert [(t.sequence, t.counts) for t in tallies] == [(2, (1, 1, 0, 0)), (3, (1, 1, 1, 0))]
    assert {record.key for record in sent} == {version_key(events[0][0].stream).encode()}
    # On the partition the producer's key hash gives its key (every site of a version's
    # tallies on one partition, the pooled agent's), though handed over with an explicit one.
    key = version_key(events[0][0].stream).encode()
    partitions = list(range(settings.topic_partitions))
    assert {record.partition for record in sent} == {
        DefaultPartitioner()(key, partitions, partitions)
    }


def test_many_tallies_of_a_flush_go_as_record_batches(producer: RecordingProducer) -> None:
    tallies = [
        version_tally(
            StreamKey(device_id="dr", device_version=f"1.0.0.{n}", site_id="site-a", task="dr"),
            (n + 1, 0, 0, 0),
            T0,
            T0,
        )
        for n in range(2 * BATCH_FROM * settings.topic_partitions)
    ]

    async def main() -> None:
        async with join.join_cases.test_context():
            await site_streams.send_tallies([t for t in tallies if t is not None])

    asyncio.run(main())
    sent = [decode(VersionTally, record.value or b"") for record in producer.to(TALLIES)]
    assert sorted(t.stream.device_version for t in sent) == sorted(
        t.stream.device_version for t in tallies if t is not None
    )
    by_partition = Counter(record.partition for record in producer.to(TALLIES))
    batched: Counter[int] = Counter()
    for topic, partition, records in producer.batches:  # a full builder starts another
        if topic == TALLIES:
            batched[partition] += records
    assert batched == {p: n for p, n in by_partition.items() if n >= BATCH_FROM}
    assert batched  # twice BATCH_FROM a partition on average: some partition has as many
