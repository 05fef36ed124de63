"""Reading topics and metrics in integration tests, with deadlines instead of sleeps."""

from __future__ import annotations

import hashlib
import socket
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterable
from typing import Any

from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from prometheus_client.parser import text_string_to_metric_families

from collectors.producer import Delivery, EncodedEvent, EventProducer
from postmarket import topics
from postmarket.authenticity import Headers, SigningKey, claimed_site
from postmarket.contracts import Outcome
from postmarket.site_key_topic import publish_site_keys
from postmarket.topic_reader import from_beginning, read_to_end
from postmarket.topic_reader import valid_events as valid_events


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def read_topic(
    bootstrap: str,
    topic: str,
    done: Callable[[list[Any]], bool],
    timeout_s: float = 60.0,
) -> list[Any]:
    """Every record of ``topic`` from the beginning, polling until ``done(records)``."""
    records: list[Any] = []
    with from_beginning(bootstrap, topic) as consumer:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            for batch in consumer.poll(timeout_ms=300).values():
                records.extend(batch)
            if done(records):
                return records
    raise AssertionError(f"{topic}: condition not met after {timeout_s} s ({len(records)} read)")


DEFAULT_SITE = "site-a"
"""Whose key signs a record that names no site (invalid input from a site's collector)."""
SIGNED_TOPICS = (topics.PREDICTIONS, topics.FOLLOWUPS, topics.INPUTS)


def site_signing_key(site_id: str) -> SigningKey:
    """A test site's own Ed25519 key, fixed by its id (never a real site's)."""
    return SigningKey.from_seed(hashlib.sha256(f"postmarket-tests|{site_id}".encode()).digest())


class SiteSigners:
    """Signs each record with the key of the site it claims, as that site's collector would,
    registering each site's key on the broker the first time (workers require signatures)."""

    def __init__(self, bootstrap: str) -> None:
        self.bootstrap = bootstrap
        self._registered: set[str] = set()

    def register(self, site_id: str) -> SigningKey:
        key = site_signing_key(site_id)
        if site_id not in self._registered:
            publish_site_keys([key.registration(site_id)], self.bootstrap)
            self._registered.add(site_id)
        return key

    def sign(self, topic: str, key: bytes | None, value: bytes) -> Headers:
        return self.register(claimed_site(value) or DEFAULT_SITE).sign(topic, key, value)


class SignedProducer(EventProducer):
    """The collectors' producer, each record signed as its own site's collector signs it."""

    def __init__(self, bootstrap_servers: str, **options: Any) -> None:
        super().__init__(bootstrap_servers, **options)
        self._signers = signers(bootstrap_servers)

    def deliver_encoded(self, records: Iterable[EncodedEvent]) -> list[Delivery]:
        return super().deliver_encoded(
            [record if record.headers else record.signed(self._signers) for record in records]
        )


_signers: dict[str, SiteSigners] = {}


def signers(bootstrap: str) -> SiteSigners:
    """The test sites' signers for the broker at ``bootstrap`` (one per session and broker)."""
    return _signers.setdefault(bootstrap, SiteSigners(bootstrap))


def send_raw(
    bootstrap: str,
    topic: str,
    records: list[tuple[bytes | None, bytes]],
    *,
    signed: bool = True,
    headers: Headers | None = None,
    **producer_options: Any,
) -> None:
    """Produce records as they are, bypassing every contract (for bad-input tests).

    Records of the case topics are signed by the key of the site they claim (as a site's
    broken collector would send them), unless ``signed`` is False or ``headers`` are given.
    ``producer_options`` go to the KafkaProducer (compression, a larger request size).
    """
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", **producer_options)
    try:
        for key, value in records:
            record_headers = headers
            if record_headers is None and signed and topic in SIGNED_TOPICS:
                record_headers = signers(bootstrap).sign(topic, key, value)
            producer.send(topic, key=key, value=value, headers=record_headers)
        producer.flush(timeout=30)
    finally:
        producer.close()


def unique_site() -> str:
    """Tests share the topics; a site of their own keeps their metrics apart."""
    return f"site-{uuid.uuid4().hex[:8]}"


def outcomes_of(bootstrap: str, prediction_ids: set[uuid.UUID], at_least: int) -> list[Outcome]:
    """The outcomes of these predictions on ``pms.outcomes.v1``, once ``at_least`` are there."""

    def mine(records: list[Any]) -> list[Outcome]:
        return [
            o for o in valid_events(records, Outcome) if o.prediction_event_id in prediction_ids
        ]

    return mine(read_topic(bootstrap, topics.OUTCOMES, lambda rs: len(mine(rs)) >= at_least))


def metric_value(metrics_url: str, sample_name: str, **labels: str) -> float:
    """Sum of the samples of ``sample_name`` whose labels include ``labels`` (0 if none)."""
    with urllib.request.urlopen(metrics_url, timeout=5) as response:  # noqa: S310 - loopback
        text = response.read().decode()
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == sample_name and labels.items() <= sample.labels.items()
    )


def wait_for_metric(
    metrics_url: str, sample_name: str, at_least: float, timeout_s: float = 60.0, **labels: str
) -> float:
    deadline = time.monotonic() + timeout_s
    value = 0.0
    while time.monotonic() < deadline:
        value = metric_value(metrics_url, sample_name, **labels)
        if value >= at_least:
            return value
        time.sleep(0.3)
    raise AssertionError(f"{sample_name}{labels} = {value}, expected >= {at_least}")


def end_offsets(consumer: KafkaConsumer, topic_names: list[str]) -> dict[TopicPartition, int]:
    """The offset after the last record of every partition of ``topic_names``."""
    partitions = [
        TopicPartition(topic, p)
        for topic in topic_names
        for p in consumer.partitions_for_topic(topic) or set()
    ]
    ends: dict[TopicPartition, int] = consumer.end_offsets(partitions)
    return ends


def skip_backlog(bootstrap: str, group: str, topic_names: list[str]) -> None:
    """Commit the end of ``topic_names`` for ``group``: a new worker in it reads only what
    is written from now on, not the records earlier tests left on the shared topics."""
    from kafka.structs import OffsetAndMetadata

    consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
    try:
        ends = end_offsets(consumer, topic_names)
        consumer.commit({tp: OffsetAndMetadata(end, "", -1) for tp, end in ends.items()})
    finally:
        consumer.close()


V1_TOPICS = [topics.PREDICTIONS, topics.FOLLOWUPS]


def caught_up_stages(group: str, topic_names: list[str]) -> list[list[str]]:
    """``topic_names`` in the order the worker's stages feed each other: the v1 topics
    (the ingress agent), then the join's own inputs (signed batches and the v1 records
    the ingress re-keyed by site), then the rest (the outcomes aside: an output only). A
    stage's ends are final only once the stage before it has caught up."""
    v1 = [name for name in topic_names if name in V1_TOPICS]
    join = [topics.INPUTS, f"{group}-inputs-by-site"] if v1 or topics.INPUTS in topic_names else []
    # The outcomes are an output no worker reads back: the join applies them to the streams
    # itself, so its own inputs caught up mean its streams have too (issue 17).
    rest = [
        name
        for name in topic_names
        if name not in V1_TOPICS and name not in join and name != topics.OUTCOMES
    ]
    return [stage for stage in (v1, join, rest) if stage]


def wait_until_caught_up(
    bootstrap: str, group: str, topic_names: list[str], timeout_s: float = 60.0
) -> None:
    """Wait until ``group`` has committed every record written so far to ``topic_names``
    (and to the join's inputs they feed: :func:`caught_up_stages`)."""
    from kafka.admin import KafkaAdminClient

    consumer = KafkaConsumer(bootstrap_servers=bootstrap)
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    deadline = time.monotonic() + timeout_s
    try:
        for stage in caught_up_stages(group, topic_names):
            ends = end_offsets(consumer, stage)
            while not _committed_up_to(admin, group, ends):
                if time.monotonic() > deadline:
                    raise AssertionError(f"group {group} did not commit up to {ends} in time")
                time.sleep(0.5)
    finally:
        admin.close()
        consumer.close()


def _committed_up_to(admin: Any, group: str, ends: dict[TopicPartition, int]) -> bool:
    committed = admin.list_group_offsets(group).get(group, {})
    return all(tp in committed and committed[tp].offset >= ends[tp] for tp in ends if ends[tp])


def read_all(bootstrap: str, topic: str, timeout_s: float = 60.0) -> list[Any]:
    """Every record of ``topic`` written before this call, from every partition."""
    return list(read_to_end(bootstrap, topic, timeout_s=timeout_s))
