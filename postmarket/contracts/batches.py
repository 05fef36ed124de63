"""Signed batches (``pms.inputs.v2``): read one envelope, then each event alone.

A batch is refused whole only when its envelope is unusable (not JSON, another site's key,
an unknown version, no events). Otherwise every event is validated on its own, so one bad
event is dead-lettered with its own reason and index, and the rest of its batch counts.
A collector builds the record from events it already encoded (:func:`encode_batch`): no
event is serialized twice.
"""

from __future__ import annotations

import functools
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import orjson
from pydantic import ValidationError

from postmarket.contracts.codec import (
    MAX_EVENT_BYTES,
    ContractViolation,
    Problem,
    decode,
    encode,
)
from postmarket.contracts.events import (
    INPUT_BATCH_VERSION,
    MAX_BATCH_EVENTS,
    WIRE,
    DeadLetterReason,
    FollowUp,
    InputBatch,
    Prediction,
    is_identifier,
    short_repr,
)

EventKind = Literal["prediction", "followup"]
MAX_BATCH_BYTES = 900 * 1024
"""A batch record's value, at most: under the broker's default 1 MiB record limit with room
for its key and signature headers."""
BATCH_NAMESPACE = uuid.UUID("0b7f3c52-5a0e-4f7e-9f61-2f7d3c1a8e45")
"""Batch ids derive from their events' ids: a resent batch is the very same record."""
_CONTRACTS: dict[str, type[Prediction] | type[FollowUp]] = {
    "prediction": Prediction,
    "followup": FollowUp,
}
_ENVELOPE = "InputBatch"


@dataclass(frozen=True)
class BatchElement:
    """One event of a batch: its place, and the event or why it was refused."""

    index: int
    event: Prediction | FollowUp | None = None
    violation: ContractViolation | None = None
    refused_json: bytes | None = None
    """A refused event's own JSON, as it was in the batch."""

    def original(self) -> bytes:
        """This event alone, as JSON: what its dead letter keeps."""
        if self.refused_json is not None or self.event is None:
            return self.refused_json or b""
        return encode(self.event)


@dataclass(frozen=True)
class DecodedBatch:
    """A batch whose envelope is valid, with each of its events decoded alone."""

    site_id: str
    batch_id: uuid.UUID
    elements: tuple[BatchElement, ...]


def batch_id_of(event_ids: Sequence[str]) -> uuid.UUID:
    """The id of the batch of these events, in this order (the same on every resend)."""
    return uuid.uuid5(BATCH_NAMESPACE, ",".join(event_ids))


def encode_batch(site_id: str, events: Sequence[tuple[EventKind, str, bytes]]) -> bytes:
    """The record value of a batch of ``(kind, event_id, encoded event)``, the events' bytes
    as they are (each is one canonical JSON object, as :func:`postmarket.contracts.encode`
    writes it)."""
    if not events:
        raise ValueError("a batch holds at least one event")
    if len(events) > MAX_BATCH_EVENTS:
        raise ValueError(f"a batch holds at most {MAX_BATCH_EVENTS} events, not {len(events)}")
    batch_id = batch_id_of([event_id for _kind, event_id, _raw in events])
    head = orjson.dumps(
        {"schema_version": INPUT_BATCH_VERSION, "site_id": site_id, "batch_id": str(batch_id)}
    )
    entries = b",".join(
        b'{"kind":"' + kind.encode() + b'","event":' + raw + b"}" for kind, _id, raw in events
    )
    return head[:-1] + b',"events":[' + entries + b"]}"


def check_batch_key(batch: DecodedBatch, key: bytes | None) -> None:
    """Refuse a batch whose record is not keyed by its site (it would be on another site's
    partition, away from its cases and streams)."""
    if key != batch.site_id.encode():
        reason = f"record key {short_repr(key)} is not the batch's site_id (breaks partitioning)"
        raise _refused("schema", "<key>", reason)


@functools.lru_cache(maxsize=1024)
def batch_overheads(site_id: str) -> tuple[int, int]:
    """(bytes of a one-event batch of ``site_id`` besides that event and its kind, bytes
    each further event adds besides itself and its kind): measured on :func:`encode_batch`
    itself, so a batch's size is known exactly without encoding it (the format is linear)
    and stays exact if the envelope changes."""
    probe: tuple[EventKind, str, bytes] = ("followup", "", b"")
    one = len(encode_batch(site_id, [probe]))
    two = len(encode_batch(site_id, [probe, probe]))
    return one - len(probe[0]), two - one - len(probe[0])


def decode_batch(raw: bytes) -> DecodedBatch:
    """The batch in ``raw``.

    Raises :class:`ContractViolation` when the envelope is unusable; an event's own problem
    is in its :class:`BatchElement` instead. A batch valid whole (nearly every one) is
    validated in one pass, at a third of the cost of one pass per event.
    """
    if len(raw) <= MAX_BATCH_BYTES:
        try:
            whole = InputBatch.model_validate_json(raw, context=WIRE)
        except ValidationError:
            pass  # read event by event, for each one's own verdict
        else:
            elements = tuple(_valid_element(i, e.event) for i, e in enumerate(whole.events))
            return DecodedBatch(whole.site_id, whole.batch_id, elements)
    envelope = _envelope(raw)
    site_id = _site_id(envelope)
    batch_id = _batch_id(envelope)
    entries = _entries(envelope)
    elements = tuple(_element(index, entry, site_id) for index, entry in enumerate(entries))
    return DecodedBatch(site_id, batch_id, elements)


def _envelope(raw: bytes) -> dict[str, Any]:
    if len(raw) > MAX_BATCH_BYTES:
        reason = f"payload of {len(raw)} bytes exceeds the {MAX_BATCH_BYTES}-byte limit"
        raise _refused("schema", "<payload>", reason)
    try:
        envelope = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise _refused("not_json", "<payload>", "is not valid JSON") from None
    if not isinstance(envelope, dict):
        raise _refused("not_json", "<payload>", "is not a JSON object")
    version = envelope.get("schema_version")
    if "schema_version" not in envelope:
        raise _refused("schema", "schema_version", "required field is missing")
    if type(version) is not int or version != INPUT_BATCH_VERSION:
        reason = f"unknown schema version {short_repr(version)} (this reader knows 2)"
        raise _refused("unknown_schema_version", "schema_version", reason)
    unknown = sorted(set(envelope) - {"schema_version", "site_id", "batch_id", "events"})
    if unknown:
        raise _refused("schema", unknown[0], "unknown field")
    return envelope


def _site_id(envelope: dict[str, Any]) -> str:
    site_id = envelope.get("site_id")
    if not isinstance(site_id, str) or not is_identifier(site_id):
        raise _refused("schema", "site_id", f"is not an identifier (got {short_repr(site_id)})")
    return site_id


def _batch_id(envelope: dict[str, Any]) -> uuid.UUID:
    text = envelope.get("batch_id")
    try:
        if not isinstance(text, str):
            raise ValueError
        return uuid.UUID(text)
    except ValueError:
        raise _refused("schema", "batch_id", f"is not a UUID (got {short_repr(text)})") from None


def _entries(envelope: dict[str, Any]) -> list[Any]:
    entries = envelope.get("events")
    if not isinstance(entries, list):
        raise _refused("schema", "events", f"is not a list (got {short_repr(entries)})")
    if not 1 <= len(entries) <= MAX_BATCH_EVENTS:
        reason = f"holds {len(entries)} events (1 to {MAX_BATCH_EVENTS})"
        raise _refused("impossible_value", "events", reason)
    return entries


def _element(index: int, entry: Any, site_id: str) -> BatchElement:
    """One event of the batch, decoded by its own contract, or why it cannot be."""
    if not isinstance(entry, dict) or set(entry) != {"kind", "event"}:
        reason = "is not an object of exactly kind and event"
        violation = _refused("schema", f"events.{index}", reason)
        return _refused_element(index, orjson.dumps(entry), violation)
    contract = _CONTRACTS.get(entry["kind"]) if isinstance(entry["kind"], str) else None
    if contract is None:
        reason = f"kind {short_repr(entry['kind'])} is not prediction or followup"
        violation = _refused("schema", f"events.{index}", reason)
        return _refused_element(index, orjson.dumps(entry), violation)
    raw = orjson.dumps(entry["event"])
    if len(raw) > MAX_EVENT_BYTES:
        reason = f"event of {len(raw)} bytes exceeds the {MAX_EVENT_BYTES}-byte limit"
        return _refused_element(index, raw, _refused("schema", f"events.{index}", reason))
    try:
        event = decode(contract, raw)
    except ContractViolation as refused:
        return _refused_element(index, raw, refused)
    if event.site_id != site_id:
        reason = f"site {event.site_id!r} is not the batch's site {site_id!r}"
        problem = Problem("site_id", reason)
        violation = ContractViolation(contract.__name__, "impossible_value", [problem])
        return _refused_element(index, raw, violation)
    return BatchElement(index, event)


def _valid_element(index: int, event: Prediction | FollowUp) -> BatchElement:
    """``BatchElement(index, event)``, its attributes set at once: a frozen dataclass's own
    constructor sets each through ``object.__setattr__``, at twice the cost (once per event)."""
    element = _new_element(BatchElement)
    _set_attribute(
        element,
        "__dict__",
        {"index": index, "event": event, "violation": None, "refused_json": None},
    )
    return element


_new_element = object.__new__
_set_attribute = object.__setattr__


def _refused_element(index: int, raw: bytes, violation: ContractViolation) -> BatchElement:
    return BatchElement(index, violation=violation, refused_json=raw)


def _refused(code: DeadLetterReason, field: str, reason: str) -> ContractViolation:
    return ContractViolation(_ENVELOPE, code, [Problem(field, reason)])
