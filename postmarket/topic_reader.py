"""Reading Kafka topics from their beginning with kafka-python, without a consumer group.

:func:`read_to_end` reads every record written before the call (the demo's results, the
site keys, a scan of every topic); :func:`from_beginning` hands over the consumer to a
reader that stops on a condition of its own. Neither joins a group or commits an offset,
so reading never moves anyone's position.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

from postmarket.contracts import Contract, ContractViolation, FollowUp, Prediction, decode
from postmarket.contracts.batches import decode_batch
from postmarket.kafka_security import KafkaSecurity

READ_TIMEOUT_S = 60.0
POLL_MS = 300
POLL_MAX_RECORDS = 5000

EventT = TypeVar("EventT", bound=Contract)
BatchedT = TypeVar("BatchedT", Prediction, FollowUp)


class TopicReadTimeout(TimeoutError):
    """The topics were not read to their end in time."""


@contextmanager
def from_beginning(
    bootstrap: str,
    *topic_names: str,
    security: KafkaSecurity | None = None,
    client_id: str | None = None,
) -> Iterator[Any]:
    """A consumer assigned every partition of ``topic_names``, each at its first offset.

    A topic that does not exist has no partitions, so it adds nothing to read.
    """
    from kafka import KafkaConsumer, TopicPartition

    options = {} if client_id is None else {"client_id": client_id}
    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap,
        enable_auto_commit=False,
        **options,
        **(security or KafkaSecurity()).kafka_python_kwargs(),
    )
    try:
        partitions = [
            TopicPartition(topic, partition)
            for topic in topic_names
            for partition in sorted(consumer.partitions_for_topic(topic) or ())
        ]
        consumer.assign(partitions)
        if partitions:
            consumer.seek_to_beginning(*partitions)
        yield consumer
    finally:
        consumer.close()


def read_to_end(
    bootstrap: str,
    *topic_names: str,
    security: KafkaSecurity | None = None,
    timeout_s: float = READ_TIMEOUT_S,
    client_id: str | None = None,
) -> Iterator[Any]:
    """Every record of ``topic_names`` written before the call, each partition in order.

    Yields kafka-python ``ConsumerRecord``s; raises :class:`TopicReadTimeout` if the end
    is not reached within ``timeout_s``.
    """
    with from_beginning(
        bootstrap, *topic_names, security=security, client_id=client_id
    ) as consumer:
        ends = consumer.end_offsets(list(consumer.assignment()))
        deadline = time.monotonic() + timeout_s
        while any(consumer.position(tp) < end for tp, end in ends.items()):
            if time.monotonic() > deadline:
                raise TopicReadTimeout(
                    f"{', '.join(topic_names)}: not read to the end in {timeout_s:.0f} s"
                )
            for batch in consumer.poll(timeout_ms=POLL_MS, max_records=POLL_MAX_RECORDS).values():
                yield from batch


def valid_events(records: Iterable[Any], contract: type[EventT]) -> list[EventT]:
    """The records that are valid ``contract`` events, in order; any other is skipped.

    Topics are shared, and a broken collector or a test may put invalid records on them.
    """
    events = []
    for record in records:
        try:
            events.append(decode(contract, record.value or b""))
        except ContractViolation:
            continue
    return events


def valid_batched_events(records: Iterable[Any], contract: type[BatchedT]) -> list[BatchedT]:
    """The valid ``contract`` events (predictions or follow-ups) of the signed batches in
    ``records`` (``pms.inputs.v2``), in order; any other event or record is skipped."""
    events = []
    for record in records:
        try:
            batch = decode_batch(record.value or b"")
        except ContractViolation:
            continue
        events += [e.event for e in batch.elements if isinstance(e.event, contract)]
    return events
