"""Invalid records of the kinds real input brings: garbage, cut-off JSON, wrong schema.

They bypass the contracts on purpose; a worker must dead-letter each one with its reason
and never crash. Each defect maps to the dead-letter reason a worker should give it.

v1 records are bad whole. A v2 batch (``pms.inputs.v2``) is signed whole but read event by
event, so its bad events sit among good ones in a batch whose signature is valid: each must
be dead-lettered alone with its place (``source_index``) while the good ones count.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import orjson

from collectors.batching import BatchEntry
from postmarket.contracts.batches import encode_batch

DEFECTS = ("not_json", "truncated_json", "schema", "unknown_schema_version", "impossible_value")
EXPECTED_REASON = {
    "not_json": "not_json",
    "truncated_json": "not_json",
    "schema": "schema",
    "unknown_schema_version": "unknown_schema_version",
    "impossible_value": "impossible_value",
}
"""The dead-letter ``reason_code`` a worker should give each defect."""


def _prediction_like(site_id: str, index: int, time: datetime) -> dict[str, object]:
    return {
        "schema_version": 1,
        "event_id": f"00000000-0000-4000-8000-{index:012d}",
        "site_id": site_id,
        "device_id": "malformed-device",
        "device_version": "1.0.0.0",
        "task": "unknown",
        "case_pseudonym": f"c-malformed-{index}",
        "event_time": time.isoformat(),
        "score": 0.5,
        "decision": "positive",
        "operating_threshold": 0.5,
        "collector_version": "simulated",
    }


def malformed_value(index: int, site_id: str, time: datetime) -> tuple[str, bytes]:
    """The ``index``-th malformed record of a burst: (defect, raw bytes)."""
    defect = DEFECTS[index % len(DEFECTS)]
    record = _prediction_like(site_id, index, time)
    if defect == "not_json":
        return defect, b"\x00\xff HL7|not an event|" + str(index).encode()
    if defect == "truncated_json":
        text = json.dumps(record).encode()
        return defect, text[: len(text) // 2]
    if defect == "schema":
        del record["score"], record["decision"]
        record["unexpected_field"] = "operator note"
    elif defect == "unknown_schema_version":
        record["schema_version"] = 99
    else:
        record["score"] = 1.7
    return defect, json.dumps(record, sort_keys=True).encode()


# --- bad events inside a correctly signed batch (pms.inputs.v2) -----------------------------

BATCH_DEFECTS = (
    "schema",
    "impossible_value",
    "other_site",
    "unknown_schema_version",
    "duplicate_event_id",
)
"""What a broken collector can put inside a batch it signs correctly: one of each per batch."""
BATCH_EXPECTED_REASON: dict[str, str | None] = {
    "schema": "schema",
    "impossible_value": "impossible_value",
    "other_site": "impossible_value",
    "unknown_schema_version": "unknown_schema_version",
    "duplicate_event_id": None,
}
"""The ``reason_code`` of each defect's dead letter; None: not dead-lettered. A repeated
event_id is a resend (dedupe is per event): the event counts once and nothing is refused."""
BATCH_EVENT_NAMESPACE = uuid.UUID("6f1d2a3e-8c44-4b7a-9d0e-5b2c7e9f1a40")


@dataclass(frozen=True)
class BadBatchEvent:
    """One bad event of an injected batch, at its place in the batch."""

    index: int
    defect: str
    value: bytes | None
    """The event's JSON, as the worker's dead letter keeps it; None for a repeat."""
    repeats: int | None = None
    """For a repeated event_id, the index of the good event it repeats, byte for byte."""

    @property
    def expected_reason(self) -> str | None:
        return BATCH_EXPECTED_REASON[self.defect]


def bad_batch_events(
    batch_name: str, site_id: str, other_site: str, good: int, time: datetime
) -> tuple[BadBatchEvent, ...]:
    """One bad event of every :data:`BATCH_DEFECTS` kind for a batch of ``good`` good events
    (at least 2): each after two good ones, so every bad event has good neighbours; the
    repeat copies the batch's first event. ``batch_name`` makes the bad events' ids unique.
    """
    if good < 2:
        raise ValueError(f"a batch with bad events needs at least 2 good ones, not {good}")
    found = []
    for number, defect in enumerate(BATCH_DEFECTS):
        index = 2 + 3 * number if 2 * (number + 1) <= good else good + number
        if defect == "duplicate_event_id":
            found.append(BadBatchEvent(index, defect, None, repeats=0))
            continue
        event_id = uuid.uuid5(BATCH_EVENT_NAMESPACE, f"{batch_name}|{number}")
        record = _prediction_like(site_id, number, time)
        record["event_id"] = str(event_id)
        record["case_pseudonym"] = f"c-malformed-batch-{event_id.hex[:16]}"
        if defect == "schema":
            del record["score"], record["decision"]
            record["unexpected_field"] = "operator note"
        elif defect == "impossible_value":
            record["score"] = 1.7
        elif defect == "other_site":
            record["site_id"] = other_site
        else:
            record["schema_version"] = 99
        found.append(BadBatchEvent(index, defect, orjson.dumps(record)))
    return tuple(found)


def assemble_batch(site_id: str, good: Sequence[BatchEntry], bad: Sequence[BadBatchEvent]) -> bytes:
    """The batch record value of ``good`` events (in order) with ``bad`` at their places,
    built as a collector builds one (:func:`~postmarket.contracts.batches.encode_batch`)."""
    places = {event.index: event for event in bad}
    total = len(good) + len(bad)
    if len(places) != len(bad) or any(not 0 <= i < total for i in places):
        raise ValueError("bad events need distinct places inside the batch")
    remaining = iter(good)
    entries: list[BatchEntry] = []
    for index in range(total):
        event = places.get(index)
        if event is None:
            entries.append(next(remaining))
        elif event.value is None:
            if event.repeats is None or not 0 <= event.repeats < index:
                raise ValueError(f"the repeat at {index} must copy an earlier event")
            kind, event_id, value = entries[event.repeats]
            entries.append((kind, f"{event_id}|repeat", value))
        else:
            entries.append(("prediction", f"bad|{index}", event.value))
    return encode_batch(site_id, entries)
