"""Which Kafka records the outbox's pending events leave in: one per event (v1) or signed
batches of one site's events on ``pms.inputs.v2`` (v2).

Pure planning over :class:`~collectors.outbox.PendingEvent` rows: no I/O. The outbox keeps
one row per event whatever the contract, so a collector switched from v1 to v2 sends its
waiting v1 rows as batches, and one switched back sends them one by one. A batch is cut
from the oldest pending event on, bounded by :data:`MAX_BATCH_EVENTS` and a byte bound,
and is the same record (same ``batch_id``, same bytes, same Ed25519 signature) every time
the same events are planned together.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from collectors.outbox import PendingEvent
from collectors.producer import EncodedEvent
from postmarket import authenticity, topics
from postmarket.authenticity import RecordSigner
from postmarket.contracts.batches import (
    MAX_BATCH_BYTES,
    EventKind,
    batch_overheads,
    encode_batch,
)
from postmarket.contracts.events import MAX_BATCH_EVENTS

InputContract = Literal["v1", "v2"]
"""What a collector writes: ``v2`` signed batches keyed by site on ``pms.inputs.v2``, or
``v1`` one record per event keyed by case pseudonym (for central workers not upgraded)."""
INPUT_CONTRACTS: tuple[InputContract, ...] = ("v1", "v2")
DEFAULT_INPUT_CONTRACT: InputContract = "v2"
KIND_OF_TOPIC: dict[str, EventKind] = {
    topics.PREDICTIONS: "prediction",
    topics.FOLLOWUPS: "followup",
}
"""An outbox row's kind, from the v1 topic it was stored for."""


def parse_input_contract(text: str) -> InputContract:
    """``text`` (a setting or variable) as a contract, or ValueError naming both choices."""
    for contract in INPUT_CONTRACTS:
        if text.strip() == contract:
            return contract
    raise ValueError(f"input contract must be v2 or v1, not {text.strip()[:20]!r}")


def contract_topics(contract: InputContract) -> tuple[str, ...]:
    """The topics a collector writes under ``contract`` (what its preflight must see)."""
    return (topics.INPUTS,) if contract == "v2" else (topics.PREDICTIONS, topics.FOLLOWUPS)


def describe_contract(contract: InputContract) -> str:
    """One phrase for logs and ``collector check``: what goes where."""
    if contract == "v2":
        return f"v2: signed batches to {topics.INPUTS}"
    return f"v1: one record per event to {topics.PREDICTIONS} and {topics.FOLLOWUPS}"


class BatchRefused(ValueError):
    """Pending events a v2 batch cannot carry (another site's, unknown kind, not JSON,
    too large). They stay in the outbox: the configuration must be fixed, not the data."""


@dataclass(frozen=True)
class OutgoingRecord:
    """One Kafka record and the outbox events it carries (one event in v1, a batch in v2)."""

    record: EncodedEvent
    events: tuple[PendingEvent, ...]

    def signed(self, signer: RecordSigner | None) -> OutgoingRecord:
        return OutgoingRecord(self.record.signed(signer), self.events)


def single_records(pending: Sequence[PendingEvent]) -> list[OutgoingRecord]:
    """The v1 plan: every event its own record, on its own topic, keyed by its case."""
    return [OutgoingRecord(event.record, (event,)) for event in pending]


def batch_records(
    pending: Sequence[PendingEvent],
    site_id: str | None,
    more_waiting: bool,
    max_events: int = MAX_BATCH_EVENTS,
    max_bytes: int = MAX_BATCH_BYTES,
) -> list[OutgoingRecord]:
    """The v2 plan: ``pending`` (oldest first) cut into as few batch records as the bounds
    allow, each of one site (``site_id``, or the first event's when None).

    When ``more_waiting`` (a backlog: the outbox held more than was read), a last batch that
    is not full is left for the next round, so a backlog leaves in full batches; a live
    collector sends what it has at once. Raises :class:`BatchRefused`.
    """
    if not pending:
        return []
    site = site_id if site_id is not None else claimed_site(pending[0])
    entries = [batch_entry(event, site) for event in pending]
    groups = cut_batches(site, entries, max_events, max_bytes)
    if more_waiting and len(groups) > 1 and len(groups[-1]) < max_events:
        groups.pop()  # its events lead the next round, which may fill it
    start = 0
    records = []
    for group in groups:
        events = tuple(pending[start : start + len(group)])
        start += len(group)
        value = encode_batch(site, group)
        records.append(OutgoingRecord(EncodedEvent(topics.INPUTS, site.encode(), value), events))
    return records


BatchEntry = tuple[EventKind, str, bytes]
"""``(kind, event_id, encoded event)`` as :func:`encode_batch` takes it."""


def batch_entry(event: PendingEvent, site_id: str) -> BatchEntry:
    """One outbox row as a batch entry, refused unless it is an event of ``site_id``."""
    kind = KIND_OF_TOPIC.get(event.record.topic)
    if kind is None:
        raise BatchRefused(
            f"event {event.event_id} was stored for topic {event.record.topic}, which is "
            "not a prediction or follow-up topic: it cannot go in a batch"
        )
    claimed = claimed_site(event)
    if claimed != site_id:
        raise BatchRefused(
            f"event {event.event_id} is of site {claimed!r}, not this collector's site "
            f"{site_id!r}: one outbox serves one site (check site_id and outbox_path)"
        )
    return kind, event.event_id, event.record.value


def claimed_site(event: PendingEvent) -> str:
    """The ``site_id`` an outbox row's event states (:class:`BatchRefused` if none)."""
    site = authenticity.claimed_site(event.record.value)
    if site is None:
        raise BatchRefused(
            f"event {event.event_id} in the outbox is not a JSON event naming its site: "
            "it cannot go in a batch"
        )
    return site


def cut_batches(
    site_id: str, entries: Sequence[BatchEntry], max_events: int, max_bytes: int
) -> list[list[BatchEntry]]:
    """``entries`` in order, cut greedily into groups of at most ``max_events`` entries
    whose batch value is at most ``max_bytes`` long.

    >>> events = [("prediction", f"e-{i}", b'{"n":' + b"1" * 40 + b"}") for i in range(5)]
    >>> [len(group) for group in cut_batches("site-a", events, 2, 10_000)]
    [2, 2, 1]
    >>> bound = batch_bytes("site-a", events[:3])
    >>> [len(group) for group in cut_batches("site-a", events, 500, bound)]
    [3, 2]
    """
    if not 1 <= max_events <= MAX_BATCH_EVENTS:
        raise ValueError(f"a batch holds 1 to {MAX_BATCH_EVENTS} events, not {max_events}")
    first, further = batch_overheads(site_id)
    groups: list[list[BatchEntry]] = []
    group: list[BatchEntry] = []
    size = 0
    for entry in entries:
        content = len(entry[0]) + len(entry[2])
        if group and len(group) < max_events and size + further + content <= max_bytes:
            group.append(entry)
            size += further + content
            continue
        if first + content > max_bytes:
            raise BatchRefused(
                f"event {entry[1]} alone makes a batch of {first + content} bytes, over the "
                f"{max_bytes}-byte bound"
            )
        if group:
            groups.append(group)
        group, size = [entry], first + content
    if group:
        groups.append(group)
    return groups


def batch_bytes(site_id: str, entries: Sequence[BatchEntry]) -> int:
    """``len(encode_batch(site_id, entries))``, without encoding (the format is linear)."""
    first, further = batch_overheads(site_id)
    content = sum(len(kind) + len(raw) for kind, _event_id, raw in entries)
    return first + further * (len(entries) - 1) + content
