"""``postmarket topics rekey-by-site``: read the worker tables' changelogs, write what
:func:`streams.table_rekeying.plan_rekeying` plans, with every worker stopped.

Plain kafka-python, not Faust: nothing here runs as a worker, and a worker must not run
meanwhile (it would recover the tables half moved, and write states the plan did not
see): the worker group (``worker_id``) must have no member, checked before the read, again
before the copies and again before the tombstones (a worker started meanwhile stops the move
there; the check narrows the race to the writes themselves, it cannot close it).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable
from typing import Any

from postmarket.config import Settings
from streams.table_rekeying import MOVES, ChangelogWrite, LatestRecord, RekeyPlan, plan_rekeying

READ_TIMEOUT_MS = 1_000
"""One poll's wait; the read stops at the end offsets taken when it began."""
STALLED_S = 60.0
"""A read that gets no record for this long while short of its end offsets gives up."""


class WorkersRunning(RuntimeError):
    """The worker group has members: moving its tables now would race them."""


def changelog_topic(worker_id: str, table: str) -> str:
    """The changelog Faust keeps for ``table`` of the app ``worker_id``."""
    return f"{worker_id}-{table}-changelog"


def table_key(key: str) -> bytes:
    """A table key as Faust's JSON key serializer writes it."""
    return json.dumps(key, ensure_ascii=False).encode()


def rekey_by_site(
    settings: Settings, *, apply: bool = True, say: Callable[[str], None] = print
) -> RekeyPlan:
    """Plan the move of the worker tables by site from their changelogs, and (``apply``)
    write it: the copies, flushed, then the tombstones."""
    from kafka import KafkaConsumer, KafkaProducer

    security = settings.kafka_security().kafka_python_kwargs()
    _refuse_if_running(settings.worker_id, worker_group_members(settings))
    consumer = KafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap,
        enable_auto_commit=False,
        group_id=None,
        **security,
    )
    try:
        tables = {*MOVES, *MOVES.values()}
        changelogs = {
            table: read_changelog(consumer, changelog_topic(settings.worker_id, table), say)
            for table in sorted(tables)
        }
    finally:
        consumer.close()
    plan = plan_rekeying(changelogs, settings.topic_partitions)
    if apply and plan:
        _create_changelogs(settings, {write.table for write in plan.copies})
        producer = KafkaProducer(bootstrap_servers=settings.kafka_bootstrap, acks="all", **security)
        try:
            write_plan(producer, settings.worker_id, plan, lambda: worker_group_members(settings))
        finally:
            producer.close()
    return plan


def write_plan(
    producer: Any, worker_id: str, plan: RekeyPlan, group_members: Callable[[], int]
) -> None:
    """The plan's copies, flushed, then its tombstones, each only while the worker group
    still has no member (``group_members``): one started during the read or the copies
    would recover the tables half moved, and then see its states deleted."""
    _refuse_if_running(worker_id, group_members())
    _send(producer, worker_id, plan.copies)
    _refuse_if_running(worker_id, group_members(), copies_written=bool(plan.copies))
    _send(producer, worker_id, plan.tombstones)


def _create_changelogs(settings: Settings, tables: set[str]) -> None:
    """The new tables' changelogs, as a worker creates them before it starts (the moves
    run before any worker of this release has)."""
    from postmarket.topic_admin import ensure_topics
    from postmarket.topics import TopicSpec

    specs = [
        TopicSpec(
            changelog_topic(settings.worker_id, table),
            settings.topic_partitions,
            {"cleanup.policy": "compact"},
        )
        for table in sorted(tables)
    ]
    ensure_topics(settings.kafka_bootstrap, specs, security=settings.kafka_security())


def worker_group_members(settings: Settings) -> int:
    """How many members the worker group (``worker_id``) has now."""
    from postmarket.topic_admin import admin_client

    with admin_client(settings.kafka_bootstrap, security=settings.kafka_security()) as admin:
        groups = admin.describe_groups([settings.worker_id])
    return len(groups.get(settings.worker_id, {}).get("members", []))


def _refuse_if_running(worker_id: str, members: int, *, copies_written: bool = False) -> None:
    if members:
        written = (
            " (the copies written already are harmless: run this again once every worker "
            "is stopped, and it deletes the old states left)"
            if copies_written
            else ""
        )
        raise WorkersRunning(
            f"{members} worker(s) of {worker_id!r} are running: stop every worker (old "
            f"release and new) before moving their tables{written}"
        )


def read_changelog(
    consumer: Any, topic: str, say: Callable[[str], None]
) -> dict[str, LatestRecord]:
    """The latest record of each key of a changelog, read to the end offsets taken when
    the read began (a missing topic: empty)."""
    from kafka import TopicPartition

    if topic not in consumer.topics():  # asked for directly, it would wait for metadata
        return {}
    partitions = consumer.partitions_for_topic(topic)
    assigned = [TopicPartition(topic, p) for p in sorted(partitions)]
    consumer.assign(assigned)
    consumer.seek_to_beginning(*assigned)
    ends = consumer.end_offsets(assigned)
    latest: dict[str, LatestRecord] = {}
    remaining = {tp for tp in assigned if ends[tp] > consumer.position(tp)}
    progress = time.monotonic()
    while remaining:
        polled = consumer.poll(timeout_ms=READ_TIMEOUT_MS)
        if polled:
            progress = time.monotonic()
        elif time.monotonic() - progress > STALLED_S:
            raise TimeoutError(f"{topic}: no record for {STALLED_S:.0f} s before its end")
        for tp, records in polled.items():
            for record in records:
                if record.offset < ends[tp] and record.key is not None:
                    latest[json.loads(record.key)] = LatestRecord(tp.partition, record.value)
        remaining = {tp for tp in remaining if consumer.position(tp) < ends[tp]}
    say(f"read {topic}: {len(latest)} keys")
    return latest


def _send(producer: Any, worker_id: str, writes: Iterable[ChangelogWrite]) -> None:
    for write in writes:
        topic = changelog_topic(worker_id, write.table)
        producer.send(topic, key=table_key(write.key), value=write.value, partition=write.partition)
    producer.flush()
