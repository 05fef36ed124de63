"""A record Faust's stream skips is never committed past (see streams.transport).

The sequence that lost a case's outcome under SIGTERM and SIGKILL: the join agent handled
offsets 0-4 and holds their acks for its next flush; Faust, stopping or rebalancing, skips
offset 5 (read, but flow control is off) and acks it; the flush acks 0-4, so 0-5 are acked
and the commit goes to 6. Record 5 was never handled, and no one reads it again.
"""

from __future__ import annotations

from typing import Any

import pytest
from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types import TP
from faust.types.tuples import ConsumerMessage

from postmarket import topics
from streams.app import app
from streams.transport import HandledAcksConsumer, Transport, handled_acks

TOPIC = topics.PREDICTIONS
PARTITION = TP(TOPIC, 0)


@pytest.fixture(autouse=True)
def _acking_topics(monkeypatch: pytest.MonkeyPatch) -> None:
    """As once the worker has subscribed: the join's input topic holds its acks."""
    monkeypatch.setattr(app.topics, "acks_enabled_for", lambda topic: True)
    monkeypatch.setattr(HandledAcksConsumer, "held_topics", {TOPIC})


def _consumer(kind: type[Any]) -> Any:
    async def nothing(*_: Any) -> None:
        return None

    consumer = kind(
        app.transport,
        callback=nothing,
        on_partitions_revoked=nothing,
        on_partitions_assigned=nothing,
    )
    consumer._committed_offset[PARTITION] = 0  # as after the seek to the committed offset
    return consumer


def _message(offset: int) -> ConsumerMessage:
    return ConsumerMessage(
        TOPIC, 0, offset, 0.0, 0, None, b"case", b"{}", None, 4, 2, PARTITION, generation_id=1
    )


def _commit_after_stop(consumer: Any) -> int | None:
    """Handle 0-4 (acks held), let Faust skip 5, flush the held acks: what would commit."""
    handled = [_message(offset) for offset in range(5)]
    _message(5).ack(consumer)  # Faust's stream acks what it skips, outside any flush
    with handled_acks():
        for message in handled:
            message.ack(consumer)
    committable: dict[TP, int] = consumer._filter_committable_offsets([PARTITION])
    return committable.get(PARTITION)


def test_the_workers_run_on_the_transport_that_commits_only_handled_records() -> None:
    assert isinstance(app.transport, Transport)
    assert type(app.consumer) is HandledAcksConsumer


def test_a_skipped_record_is_read_again_not_committed_past() -> None:
    assert _commit_after_stop(_consumer(HandledAcksConsumer)) == 5


def test_faust_alone_commits_past_the_skipped_record() -> None:
    """Why the transport exists: Faust's own consumer commits 6, losing record 5."""
    assert _commit_after_stop(_consumer(faust_aiokafka.Consumer)) == 6


def test_topics_whose_agents_ack_as_they_go_keep_faust_s_acks() -> None:
    consumer = _consumer(HandledAcksConsumer)
    registry = ConsumerMessage(
        topics.REGISTRY, 0, 0, 0.0, 0, None, b"k", b"{}", None, 1, 2, TP(topics.REGISTRY, 0)
    )
    assert registry.ack(consumer) is True


@pytest.mark.parametrize("inside", [False, True])
def test_an_ack_counts_only_from_a_flush_of_handled_records(inside: bool) -> None:
    consumer = _consumer(HandledAcksConsumer)
    message = _message(0)
    if inside:
        with handled_acks():
            assert message.ack(consumer) is True
    else:
        assert message.ack(consumer) is False
    assert message.acked is inside
