"""v1 records re-keyed by site: how a record read from ``pms.predictions.v1`` or
``pms.followups.v1`` (keyed by case pseudonym) is forwarded, once, to the join's internal
topic keyed by its site, and how the join reads where it came from.

The value and the collector's headers go as they are, so the join verifies the signature
over the topic and key the collector signed (kept in the origin header) and a dead letter
names the record the collector sent, not the forwarded copy.
"""

from __future__ import annotations

import base64
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from postmarket.authenticity import claimed_site
from postmarket.contracts import ContractViolation, FollowUp, Prediction, Problem, decode_for_topic
from postmarket.contracts.codec import MAX_EVENT_BYTES
from postmarket.contracts.events import is_identifier

ORIGIN_HEADER = "pms-origin"
"""Where a forwarded record was first written: its topic, partition, offset and key."""

Headers = list[tuple[str, bytes]]


@dataclass(frozen=True)
class Origin:
    """The v1 record a forwarded record copies."""

    topic: str
    partition: int
    offset: int
    key: bytes | None

    def where(self) -> tuple[str, int, int]:
        return (self.topic, self.partition, self.offset)

    def header(self) -> tuple[str, bytes]:
        key = base64.b64encode(self.key).decode() if self.key is not None else None
        where = {"topic": self.topic, "partition": self.partition, "offset": self.offset}
        return (ORIGIN_HEADER, orjson.dumps({**where, "key": key}))


def forwarded_headers(
    origin: Origin, headers: Iterable[tuple[str, Any]] | Mapping[str, Any] | None
) -> Headers:
    """The collector's headers (its signature), then the origin's."""
    pairs = headers.items() if isinstance(headers, Mapping) else headers or ()
    kept = [(str(name), bytes(value)) for name, value in pairs if name != ORIGIN_HEADER]
    return [*kept, origin.header()]


def origin_of(headers: Iterable[tuple[str, Any]] | Mapping[str, Any] | None) -> Origin | None:
    """The origin a forwarded record carries; None if it carries none or a garbled one."""
    pairs = headers.items() if isinstance(headers, Mapping) else headers or ()
    found = [bytes(value) for name, value in pairs if name == ORIGIN_HEADER]
    if len(found) != 1:
        return None
    try:
        fields = orjson.loads(found[0])
        key = fields["key"]
        return Origin(
            topic=_text(fields["topic"]),
            partition=_count(fields["partition"]),
            offset=_count(fields["offset"]),
            key=base64.b64decode(key, validate=True) if key is not None else None,
        )
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
        return None


def _text(value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise ValueError
    return value


def _count(value: Any) -> int:
    if type(value) is not int or value < 0:
        raise ValueError
    return value


def claimed_site_id(value: bytes | None) -> str | None:
    """The site a v1 record's event claims, read without validating the rest (the join
    validates it whole); None if it claims none, or is over the event limit (its copy
    could be too large for the broker, and no valid event is that large)."""
    raw = value or b""
    site = claimed_site(raw) if len(raw) <= MAX_EVENT_BYTES else None
    return site if site is not None and is_identifier(site) else None


def site_of(topic: str, value: bytes | None) -> str:
    """The site a v1 record's event claims (:func:`claimed_site_id`); a record that claims
    none is refused for what is wrong with it."""
    site = claimed_site_id(value)
    if site is not None:
        return site
    event = decode_for_topic(topic, value or b"")  # raises the record's own violation
    if not isinstance(event, Prediction | FollowUp):
        raise ContractViolation("record", "unknown_source", [Problem("<topic>", topic)])
    return event.site_id


def case_event_of(topic: str, key: bytes | None, value: bytes | None) -> Prediction | FollowUp:
    """Decode a record of the v1 case topics; its key must be its case pseudonym, as its
    collector sent it."""
    contract = "Prediction" if topic.startswith("pms.predictions") else "FollowUp"
    if value is None:
        raise ContractViolation(contract, "not_json", [Problem("<payload>", "record has no value")])
    decoded = decode_for_topic(topic, value)
    if not isinstance(decoded, Prediction | FollowUp):
        raise TypeError(f"{topic} is not a case topic")
    if key != decoded.case_pseudonym.encode():
        reason = f"record key {key!r} is not the event's case_pseudonym (breaks co-partitioning)"
        raise ContractViolation(contract, "schema", [Problem("<key>", reason)])
    return decoded
