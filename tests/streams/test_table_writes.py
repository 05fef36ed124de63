"""Table writes that go straight to the changelog: records Faust's own recovery reads back
into the same table state."""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
from faust.types import Message

from streams import app as worker
from streams.channels import (
    BATCH_FROM,
    case_files,
    send_table_states,
    set_table_state,
    write_table,
)
from tests.streams.agent_harness import RecordingBatch, RecordingProducer, SentRecord


@pytest.fixture
def producer(monkeypatch: pytest.MonkeyPatch) -> Iterator[RecordingProducer]:
    recording = RecordingProducer()
    monkeypatch.setattr(worker.app, "_producer", recording)
    case_files.data.clear()
    yield recording
    case_files.data.clear()


def as_read_back(record: SentRecord, offset: int) -> Message:
    """A changelog record as the consumer hands it to Faust's table recovery."""
    return Message(
        topic=record.topic,
        partition=record.partition or 0,
        offset=offset,
        timestamp=time.time(),
        timestamp_type=0,
        headers=record.headers,
        key=record.key,
        value=record.value,
        checksum=b"",
    )


async def recover(records: list[SentRecord]) -> dict[str, Any]:
    """The table as Faust rebuilds it from these changelog records after a restart."""
    changelog = case_files.changelog_topic
    events = [await changelog.decode(as_read_back(r, n)) for n, r in enumerate(records)]
    case_files.data.clear()
    case_files.apply_changelog_batch(events)
    return dict(case_files.data.items())


def test_writes_and_a_delete_recover_as_the_table_held_them(producer: RecordingProducer) -> None:
    opened = {"state_version": 2, "predictions": [{"score": 0.8}], "truth": None}
    dropped = {"state_version": 2, "dropped_at": "2026-03-01T00:00:00+00:00"}

    async def scenario() -> dict[str, Any]:
        await write_table(case_files, 3, "c-1", opened)
        await write_table(case_files, 1, "c-2", opened)
        await write_table(case_files, 1, "c-2", dropped)
        await write_table(case_files, 3, "c-1", None)
        held = dict(case_files.data.items())
        assert held == {"c-2": dropped}
        return await recover(producer.to(case_files.changelog_topic.get_topic_name()))

    assert asyncio.run(scenario()) == {"c-2": dropped}
    assert [r.partition for r in producer.records] == [3, 1, 1, 3]
    assert producer.records[-1].value is None  # a tombstone


def test_deleting_what_the_table_does_not_hold_sends_nothing(producer: RecordingProducer) -> None:
    asyncio.run(write_table(case_files, 1, "c-1", None))
    assert producer.records == []


@pytest.mark.parametrize("count", [13, 80], ids=["sent one by one", "sent in batches"])
def test_states_sent_together_recover_as_the_table_held_them(
    producer: RecordingProducer, count: int
) -> None:
    """Under BATCH_FROM records a partition (13 over two) or more (80: several of the
    harness's 3-record batches each): each partition's records keep their order, and
    recovery reads them all."""
    writes: list[tuple[int, str, Any]] = [  # case c-k on partition k % 2, as keys stay put
        (n % 5 % 2, f"c-{n % 5}", {"state_version": 2, "n": n}) for n in range(count)
    ]
    writes.append((1, "c-3", None))  # a tombstone after c-3's states
    last = {key: state for _p, key, state in writes}

    async def scenario() -> dict[str, Any]:
        for _partition, key, state in writes:
            set_table_state(case_files, key, state)
        await send_table_states(case_files, writes)
        return await recover(producer.to(case_files.changelog_topic.get_topic_name()))

    recovered = asyncio.run(scenario())
    assert recovered == dict(case_files.data.items())
    assert recovered == {key: state for key, state in last.items() if state is not None}
    assert len(recovered) == 4
    for partition in (0, 1):
        sent = [r for r in producer.records if r.partition == partition]
        expected = [w for w in writes if w[0] == partition]
        assert [json.loads(r.key or b"") for r in sent] == [key for _p, key, _s in expected]
    # A partition under BATCH_FROM records goes one by one, from it on as full batches.
    room = RecordingBatch.room
    batches: dict[int, list[int]] = {}
    for _topic, partition, size in producer.batches:
        batches.setdefault(partition, []).append(size)
    per_partition = Counter(partition for partition, _key, _state in writes)
    assert batches == {
        partition: [room] * (n // room) + [n % room] * (n % room > 0)
        for partition, n in per_partition.items()
        if n >= BATCH_FROM
    }


def test_a_record_over_the_producers_limit_fails_the_send_and_is_never_sent(
    producer: RecordingProducer,
) -> None:
    """Sent, the broker would refuse its whole batch, the other records with it. The flush
    fails (and sends it all again next time: changelog records are idempotent)."""
    too_large = worker.app.conf.producer_max_request_size + 1
    writes = [(0, "c-1", {"n": 1}), (0, "c-2", {"padding": "x" * too_large})]
    with pytest.raises(ValueError, match=rf"a {too_large + 19}-byte record .* exceeds"):
        asyncio.run(send_table_states(case_files, writes))
    assert [json.loads(r.key or b"") for r in producer.records] == ["c-1"]
