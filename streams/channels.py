"""The Kafka topics and tables this worker uses, declared once on the app, and how the
agents send to them.

Values are raw bytes: decoding is ours (``postmarket.contracts``), so invalid input is
dead-lettered with its reason instead of failing inside Faust's serializer.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from faust.serializers import codecs

from postmarket import topics
from streams.app import app, settings

logger = logging.getLogger(__name__)


def _raw_topic(*names: str, partitions: int = settings.topic_partitions) -> Any:
    return app.topic(
        *names,
        key_type=bytes,
        value_type=bytes,
        key_serializer="raw",
        value_serializer="raw",
        partitions=partitions,
    )


SITE_INPUTS = f"{settings.worker_id}-inputs-by-site"
"""Internal: the records of the v1 topics, keyed by case pseudonym, and the re-baselining
decisions, keyed by stream, re-keyed by their site once (:mod:`streams.agents.ingress`,
:mod:`streams.agents.rebaselines`), so the join reads every input of a site in one
partition, beside the v2 batches that collectors key by site."""

v1_inputs = _raw_topic(topics.PREDICTIONS, topics.FOLLOWUPS)
site_inputs = _raw_topic(SITE_INPUTS)
case_inputs = _raw_topic(topics.INPUTS, SITE_INPUTS)
outcomes = _raw_topic(topics.OUTCOMES)
rebaselines = _raw_topic(topics.REBASELINES)
alerts = _raw_topic(topics.ALERTS)
deadletter = _raw_topic(topics.DEADLETTER)
registry_updates = _raw_topic(topics.REGISTRY, partitions=1)

case_files = app.Table(
    "case-files",
    default=None,
    partitions=settings.topic_partitions,
    help="Predictions and follow-ups of each case (site|case pseudonym, on its site's "
    "partition), until and after the join.",
)
site_stream_monitors = app.Table(
    "site-stream-monitors",
    default=None,
    partitions=settings.topic_partitions,
    help="Confusion counts, labelled detectors and applied outcome positions of each stream "
    "(on its site's partition).",
)
site_stream_prediction_monitors = app.Table(
    "site-stream-prediction-monitors",
    default=None,
    partitions=settings.topic_partitions,
    help="References, label-free detectors, applied prediction positions and the last "
    "re-baselining decision of each stream (on its site's partition).",
)
# The previous release's stream states, on the stream key's partition: each adopted into
# the site-stream tables at its stream's first change (streams.site_streams), then deleted.
stream_monitors = app.Table(
    "stream-monitors",
    default=None,
    partitions=settings.topic_partitions,
    help="Legacy (until adopted): stream states of the previous release, by stream key.",
)
stream_prediction_monitors = app.Table(
    "stream-prediction-monitors",
    default=None,
    partitions=settings.topic_partitions,
    help="Legacy (until adopted): label-free stream states of the previous release.",
)
first_sightings = app.Table(
    "first-sightings",
    default=None,
    partitions=settings.topic_partitions,
    help="When each stream's version was first seen (per input partition; alert ids dedupe).",
)
registry = app.GlobalTable(
    "registry",
    default=None,
    partitions=1,
    help="Registration status and claims of every device version, on every worker.",
)


async def produce(
    topic: Any,
    key: bytes | None,
    value: bytes | None,
    *,
    partition: int | None = None,
    headers: Sequence[tuple[str, bytes]] | None = None,
) -> None:
    """Hand one record to the app's Kafka producer (delivered in the background).

    Not through Faust's ``Topic.send``, whose promise, serializer and sensor layers made a
    record cost two to seven times the producer's own send (bench_pipeline runs: 94 vs 35,
    139 vs 21 µs); the worker used 10-20 % less CPU per event without them. Faust flushes this same
    producer before it commits any offset, so a record produced while handling an input
    is on its way before that input's offset is committed, as with ``Topic.send``.
    ``partition`` None: the producer's key hash, as Faust's.
    """
    headers_list = list(headers) if headers is not None else None
    await app.producer.send(topic.get_topic_name(), key, value, partition, None, headers_list)


Placed = tuple[int, bytes | None, bytes | None]
"""One record for :func:`produce_batched`: its partition, key and value."""
BATCH_FROM = 32
"""A partition's records are handed over as a record batch from this many on; fewer go one
send each. A new batch waits until the partition's previous one went into a request to the
broker (one in flight per broker), a record sent alone joins the open batch at once: a
batch per one-event v1 record made each outcome wait for a round trip (p99 3.5 s at 640
events/s offered, bench_pipeline)."""


async def produce_batched(
    topic: Any,
    records: Iterable[Placed],
    counts: Mapping[int, int],
    headers: Sequence[tuple[str, bytes]] = (),
) -> None:
    """Hand ``records`` to the app's Kafka producer in their order within each partition, as
    record batches for a partition with :data:`BATCH_FROM` or more of them (``counts``: how
    many each partition has).

    A flush's changelog records and a batch's outcomes were one producer send each:
    aiokafka's ``send`` makes a future, a metadata wait and an accumulator call per record
    (about 25 us here; a tenth of the worker's time), its batch builder appends one in about
    a microsecond. What a record carries and where it goes is unchanged (same key, value,
    partition, timestamp when handed over), so compaction and Faust's recovery read them as
    before. Faust flushes this same producer, batches included, before it commits an offset.
    ``records`` is read once, as it goes: each record's bytes are copied into its batch and
    dropped (building them all first cost more than the sends it saved, in collections).
    """
    name = topic.get_topic_name()
    limit = app.conf.producer_max_request_size
    header_list = list(headers)
    open_batches: dict[int, Any] = {}
    kafka: Any = None  # aiokafka's producer, looked up at the first batch
    for partition, key, value in records:
        size = len(key or b"") + len(value or b"")
        if size > limit:
            # Sent, it would have the broker refuse its whole batch, the other records too.
            raise ValueError(f"a {size}-byte record for {name} exceeds the producer's limit")
        if counts[partition] < BATCH_FROM:
            await produce(topic, key, value, partition=partition, headers=header_list or None)
            continue
        batch = open_batches.get(partition)
        if batch is None:
            kafka = kafka or _kafka_producer()
            batch = open_batches[partition] = kafka.create_batch()
        if batch.append(timestamp=None, key=key, value=value, headers=header_list) is None:
            # Full (a builder always takes its first record): this one starts the next.
            await kafka.send_batch(batch, name, partition=partition)
            batch = open_batches[partition] = kafka.create_batch()
            batch.append(timestamp=None, key=key, value=value, headers=header_list)
    for partition, batch in open_batches.items():
        await kafka.send_batch(batch, name, partition=partition)


class SendQueue:
    """Records for one topic, handed to the producer in their order by a task of their own,
    so the agent that queues them never waits for the producer.

    A batch for a partition waits until the partition's previous one has gone into a request
    to the broker: the join, handing over each input record's outcomes at its end, spent
    about 15 % of its time waiting so (2.5 s of a 16.7 s run, bench/profile_worker.py).
    Whatever waits here, the agent joins the next record meanwhile, and what was queued
    during the wait goes in the next batches. A flush calls :meth:`hand_over` before it
    acks: every record queued by then is in the producer, which Faust flushes before it
    commits, so an outcome is on its way before its input's offset is committed.
    """

    def __init__(self, topic: Any, headers: Sequence[tuple[str, bytes]] = ()) -> None:
        self._topic = topic
        self._headers = headers
        self._queued: list[Placed] = []
        self._handing = asyncio.Lock()
        self._sender: asyncio.Future[None] | None = None

    def put(self, record: Placed) -> None:
        self._queued.append(record)

    def send_soon(self) -> None:
        """Have a task hand what is queued to the producer, unless one is at it already."""
        if self._queued and (self._sender is None or self._sender.done()):
            self._sender = asyncio.ensure_future(self._send_all())

    async def _send_all(self) -> None:
        try:
            while self._queued:
                await self.hand_over()
        except Exception:
            name = self._topic.get_topic_name()
            logger.exception(
                "handing %s records to the producer failed; the next flush tries again", name
            )

    async def hand_over(self) -> None:
        """Hand every record queued until now to the producer, in order, after what an
        earlier call is handing over. On a failure they stay queued, first (sent twice,
        a record is skipped by its consumers, by its id)."""
        async with self._handing:
            if not self._queued:
                return
            records, self._queued = self._queued, []
            counts = Counter(partition for partition, _key, _value in records)
            try:
                await produce_batched(self._topic, records, counts, self._headers)
            except BaseException:
                self._queued[:0] = records
                raise


def _kafka_producer() -> Any:
    """aiokafka's producer under Faust's (whose own send takes one record a call)."""
    faust_producer: Any = app.producer
    return faust_producer._ensure_producer()


async def write_table(table: Any, partition: int, key: str, state: Any | None) -> None:
    """Set (None: delete) ``key`` in ``table`` and send its changelog record right away.

    What Faust's own ``table[key] = state`` does (the record goes to the changelog partition
    given, which must be that of the record being processed), except that Faust queues the
    record in its producer buffer, which one task drains a record at a time, and stops
    handing records to every agent while that buffer holds more than 100: one table write
    per input record kept it full and the agents waiting on it. Awaited from an agent before
    the input record is acked, so the record is on its way before the offset is committed.
    """
    if state is None and key not in table.data:
        return
    set_table_state(table, key, state)
    await send_table_state(table, partition, key, state)


def set_table_state(table: Any, key: str, state: Any | None) -> None:
    """The table's own copy, without its changelog record (:func:`send_table_state`)."""
    if state is None:
        table.data.pop(key, None)
    else:
        table.data[key] = state


async def send_table_state(table: Any, partition: int, key: str, state: Any | None) -> None:
    """The changelog record of a state set with :func:`set_table_state` (None: a tombstone),
    serialized by the changelog topic with the table's serializers, as Faust writes it."""
    key_bytes, value_bytes = changelog_record(table, key, state)
    await produce(table.changelog_topic, key_bytes, value_bytes, partition=partition)


async def send_table_states(table: Any, writes: Sequence[tuple[int, str, Any | None]]) -> None:
    """The changelog records of (partition, key, state) set with :func:`set_table_state`,
    batched per partition (:func:`produce_batched`)."""
    counts = Counter(partition for partition, _key, _state in writes)
    records = ((part, *changelog_record(table, key, state)) for part, key, state in writes)
    await produce_batched(table.changelog_topic, records, counts)


def changelog_record(table: Any, key: str, state: Any | None) -> tuple[bytes, bytes | None]:
    """The key and value bytes of a state's changelog record (None: a tombstone), with the
    table's serializers, as Faust writes them.

    For a table of untyped keys and values (every table here), by the serializers' codecs
    themselves: what the changelog topic's ``prepare_key`` and ``prepare_value`` call in
    the end, without their per-record look-ups (measured: 1.9 us a case file instead of
    3.4; a record per event changed)."""
    changelog = table.changelog_topic
    serializers = (table.key_serializer, table.value_serializer)
    typed = changelog.key_type is not None or changelog.value_type is not None
    if typed or not all(isinstance(name, str) for name in serializers):
        key_bytes, _ = changelog.prepare_key(key, table.key_serializer)
        value_bytes = None
        if state is not None:
            value_bytes, _ = changelog.prepare_value(state, table.value_serializer)
        return key_bytes, value_bytes
    key_dumps, value_dumps = _codecs(*serializers)
    return key_dumps(key), None if state is None else value_dumps(state)


@functools.cache
def _codecs(key_serializer: str, value_serializer: str) -> tuple[Any, Any]:
    return _dumps_of(codecs.get_codec(key_serializer)), _dumps_of(
        codecs.get_codec(value_serializer)
    )


def _dumps_of(codec: Any) -> Any:
    """A codec's ``dumps``: for a codec with no children (every table's here), its own
    ``_dumps``, the one step of the chain its ``dumps`` loops over (a record a case changed)."""
    return codec._dumps if len(codec.nodes) == 1 else codec.dumps


# --- the pooled per-version stage (streams.agents.pooled) ---------------------------------------

version_tallies = _raw_topic(topics.VERSION_TALLIES)
"""Each site stream's cumulative counts, keyed by device|version|task."""
pooled_monitors = app.Table(
    "pooled-monitors",
    default=None,
    partitions=settings.topic_partitions,
    help="Each (device, version, task)'s sites' latest tallies and its pooled tests.",
)
