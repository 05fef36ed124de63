"""Running the worker's real agents under Faust's ``agent.test_context()``, with no broker.

The agents' own topics are replaced by the test context's in-memory channel; every record
they send anywhere else (outcomes, routed predictions, alerts, dead letters, table
changelogs) goes to the app's producer as in production (``streams.channels.produce``)
and ends in a :class:`RecordingProducer` set as the app's producer.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from itertools import count
from typing import Any

from faust.types import TP, EventT, Message, RecordMetadata

from postmarket.contracts import Contract, encode
from streams.app import app, settings
from streams.channels import SITE_INPUTS
from streams.held_acks import HeldAcks
from streams.rekeying import Origin, forwarded_headers, site_of
from streams.retention import key_partition

WAIT_S = 10.0
"""How long a test waits for the agent to reach a state before failing (never hit when
the agent works: each wait ends within milliseconds)."""


@dataclass(frozen=True)
class SentRecord:
    """One record an agent produced, as the Kafka producer would have received it."""

    topic: str
    key: bytes | None
    value: bytes | None
    partition: int | None
    headers: Any

    def json(self) -> Any:
        assert self.value is not None
        return json.loads(self.value)


class RecordingProducer:
    """Stands in for the app's Kafka producer: keeps every record sent, in order."""

    def __init__(self) -> None:
        self.records: list[SentRecord] = []
        self.batches: list[tuple[str, int, int]] = []
        """(topic, partition, records) of each record batch sent."""
        self._offsets: defaultdict[str, count[int]] = defaultdict(count)

    def to(self, topic: str) -> list[SentRecord]:
        return [record for record in self.records if record.topic == topic]

    async def maybe_start(self) -> None:
        return None

    async def send(
        self,
        topic: str,
        key: bytes | None,
        value: bytes | None,
        partition: int | None,
        timestamp: float | None,
        headers: Any,
        *,
        transactional_id: str | None = None,
    ) -> asyncio.Future[RecordMetadata]:
        """The agents await the returned future's delivery; here it is already delivered."""
        sent: asyncio.Future[RecordMetadata] = asyncio.get_running_loop().create_future()
        sent.set_result(self._record(topic, key, value, partition, headers))
        return sent

    def _ensure_producer(self) -> RecordingProducer:
        """aiokafka's producer under Faust's, which ``produce_batched`` sends batches to."""
        return self

    def create_batch(self) -> RecordingBatch:
        return RecordingBatch()

    async def send_batch(
        self, batch: RecordingBatch, topic: str, *, partition: int
    ) -> asyncio.Future[None]:
        """Each record of the batch, as sent (here it is already delivered)."""
        self.batches.append((topic, partition, len(batch.records)))
        for key, value, headers in batch.records:
            self._record(topic, key, value, partition, headers)
        sent: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        sent.set_result(None)
        return sent

    def send_soon(self, fut: Any) -> None:
        """Faust's own table writes (``table[key] = value``) queue here; kept as sent."""
        message = fut.message
        topic = message.channel.get_topic_name()
        self._record(topic, message.key, message.value, message.partition, message.headers)

    def _record(
        self,
        topic: str,
        key: bytes | None,
        value: bytes | None,
        partition: int | None,
        headers: Any,
    ) -> RecordMetadata:
        self.records.append(SentRecord(topic, key, value, partition, headers))
        tp = TP(topic, partition or 0)
        return RecordMetadata(topic, tp.partition, tp, next(self._offsets[topic]))


class RecordingBatch:
    """Stands in for aiokafka's batch builder: keeps what is appended, up to ``room``
    records (then refuses one, as a full builder does)."""

    room = 3
    """Small, so the tests' flushes also send records past a full batch."""

    def __init__(self) -> None:
        self.records: list[tuple[bytes | None, bytes | None, Any]] = []

    def append(
        self, *, timestamp: float | None, key: bytes | None, value: bytes | None, headers: Any
    ) -> object | None:
        if len(self.records) >= self.room:
            return None
        self.records.append((key, value, list(headers) or None))
        return object()


class Feed:
    """Puts records into an agent under test as if read from ``topic``.

    ``AgentTestWrapper.put`` names every message after the agent's topic, which for an
    agent on two topics is ``"<internal>"``; the agents here decode by topic, so this
    builds the message as ``put`` does but with the real topic and consecutive offsets.
    """

    def __init__(self, agent: Any) -> None:
        self._agent = agent
        self._offsets: defaultdict[tuple[str, int], count[int]] = defaultdict(count)

    async def put(
        self,
        topic: str,
        key: bytes | None,
        value: bytes | None,
        *,
        partition: int = 0,
        headers: Any = None,
    ) -> EventT[Any]:
        message = Message(
            topic=topic,
            partition=partition,
            offset=next(self._offsets[(topic, partition)]),
            timestamp=time.time(),
            timestamp_type=0,
            headers=headers,
            key=key,
            value=value,
            checksum=b"",
            serialized_key_size=len(key or b""),
            serialized_value_size=len(value or b""),
            generation_id=app.consumer_generation_id,
        )
        channel = self._agent.stream().channel
        event: EventT[Any] = await channel.decode(message)
        await channel.put(event)
        return event

    async def put_event(
        self, topic: str, key: str, event: Contract, *, partition: int = 0
    ) -> EventT[Any]:
        return await self.put(topic, key.encode(), encode(event), partition=partition)

    async def put_v1(
        self, topic: str, key: bytes | None, value: bytes | None, *, headers: Any = None
    ) -> EventT[Any]:
        """A v1 record as the join reads it: forwarded by the ingress agent (with the same
        functions), keyed by its site, onto its site's partition of the internal topic."""
        origin = Origin(topic, 0, next(self._offsets[(topic, 0)]), key)
        site = site_of(topic, value)
        return await self.put(
            SITE_INPUTS,
            site.encode(),
            value,
            partition=key_partition(site, settings.topic_partitions),
            headers=forwarded_headers(origin, headers),
        )

    async def put_v1_event(self, topic: str, key: str, event: Contract) -> EventT[Any]:
        return await self.put_v1(topic, key.encode(), encode(event))


async def wait_until(condition: Callable[[], bool], what: str, timeout: float = WAIT_S) -> None:
    """Let the agent run until ``condition`` holds; fail naming ``what`` if it never does."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for: {what}")
        await asyncio.sleep(0.001)


def settled(unacked: HeldAcks, events: Iterable[EventT[Any]]) -> Callable[[], bool]:
    """True once the agent finished each event: it holds it for its next flush, or acked it."""
    messages = [event.message for event in events]

    def condition() -> bool:
        held = {id(event.message) for _stream, event in unacked.held()}
        return all(message.acked or id(message) in held for message in messages)

    return condition
