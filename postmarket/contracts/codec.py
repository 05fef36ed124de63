"""Bytes <-> events, with errors that name the field and the reason.

Workers call :func:`decode` on every record; a :class:`ContractViolation` carries a
dead-letter reason code and one :class:`Problem` per offending field, so the record
can be dead-lettered with a message a person can act on.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypeVar

import orjson
from pydantic import ValidationError
from pydantic_core import ErrorDetails

from postmarket import topics
from postmarket.contracts.events import (
    PATTERN_MEANING,
    WIRE,
    AcquisitionFeatures,
    Alert,
    Contract,
    DeadLetter,
    DeadLetterReason,
    FollowUp,
    InputBatch,
    JoinPosition,
    Outcome,
    Prediction,
    Rebaseline,
    RegistryEntry,
    SiteKeyRegistration,
    StreamKey,
    short_repr,
)
from postmarket.contracts.pooled import VersionTally

EventT = TypeVar("EventT", bound=Contract)

CONTRACT_BY_TOPIC: dict[str, type[Contract]] = {
    topics.PREDICTIONS: Prediction,
    topics.FOLLOWUPS: FollowUp,
    topics.INPUTS: InputBatch,
    topics.OUTCOMES: Outcome,
    topics.ALERTS: Alert,
    topics.DEADLETTER: DeadLetter,
    topics.REGISTRY: RegistryEntry,
    topics.SITE_KEYS: SiteKeyRegistration,
    topics.REBASELINES: Rebaseline,
    topics.VERSION_TALLIES: VersionTally,
}

MAX_EVENT_BYTES = 64 * 1024
"""No legitimate event comes near this; anything larger is refused before parsing."""
MAX_DEAD_LETTER_ORIGINAL_BYTES = 2 * MAX_EVENT_BYTES
"""The most of a refused record a dead letter keeps: every record any reader could accept
whole, and the beginning of any larger one (see streams.deadletter)."""
MAX_DEAD_LETTER_BYTES = 4 * MAX_EVENT_BYTES
"""A dead letter carries its original base64-encoded (4/3 of it) and a reason of up to 4,000
characters, each up to six bytes escaped in JSON: always under this."""

_VALUE_ERRORS = {
    "greater_than",
    "greater_than_equal",
    "less_than",
    "less_than_equal",
    "finite_number",
    "value_error",
    "too_short",
    "too_long",
    "string_too_short",
    "string_too_long",
    "string_pattern_mismatch",
    "timezone_aware",
    "literal_error",
}


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a payload: where (dotted field path) and why."""

    field: str
    reason: str

    def __str__(self) -> str:
        return f"{self.field}: {self.reason}"


class ContractViolation(ValueError):
    """A payload that is not a valid event of the expected kind."""

    def __init__(self, contract: str, code: DeadLetterReason, problems: list[Problem]) -> None:
        self.contract = contract
        self.code = code
        self.problems = problems
        super().__init__(f"invalid {contract} ({code}): " + "; ".join(map(str, problems)))


def encode(event: Contract) -> bytes:
    """Canonical JSON bytes of an event."""
    return event.model_dump_json().encode()


def encode_outcome(outcome: Outcome) -> bytes:
    """:func:`encode` of an outcome, byte for byte, by orjson from the model's own values: the
    join encodes one per prediction joined, and pydantic's serializer cost 5.6 us of a
    prediction's join there, this 1.7.

    The same bytes because the values are already what pydantic writes (validated: UUIDs,
    aware datetimes, floats, strings, None) and orjson writes them as its serializer does,
    field by field in the model's order, the nested parts as their fields, a join position
    without its index at 0 as its own serializer (tested against :func:`encode` for any
    outcome: tests/streams/test_casefile_fast_paths.py)."""
    return _dumps(outcome.__dict__, default=_part_fields, option=_UTC_AS_Z)


def _part_fields(part: object) -> dict[str, object]:
    if type(part) is JoinPosition:
        fields = part.__dict__
        return fields if fields["index"] else {k: v for k, v in fields.items() if k != "index"}
    if type(part) is StreamKey or type(part) is AcquisitionFeatures:
        return part.__dict__
    raise TypeError(f"{type(part).__name__} is not a part of an outcome")


_dumps = orjson.dumps
_UTC_AS_Z = orjson.OPT_UTC_Z


def decode(contract: type[EventT], raw: bytes) -> EventT:
    """Validate ``raw`` JSON bytes as ``contract``; raise :class:`ContractViolation` if not."""
    name = contract.__name__
    limit = MAX_DEAD_LETTER_BYTES if contract is DeadLetter else MAX_EVENT_BYTES
    if len(raw) > limit:
        reason = f"payload of {len(raw)} bytes exceeds the {limit}-byte limit"
        raise ContractViolation(name, "schema", [Problem("<payload>", reason)])
    try:
        return contract.model_validate_json(raw, context=WIRE)
    except ValidationError as error:
        problems = [_problem(detail) for detail in error.errors(include_url=False)]
        raise ContractViolation(name, _reason_code(error.errors()), problems) from None


def decode_for_topic(topic: str, raw: bytes) -> Contract:
    """Decode a record from one of the pipeline topics by that topic's contract."""
    return decode(CONTRACT_BY_TOPIC[topic], raw)


_SCHEMA_VERSION_ERRORS = {"schema_version_missing", "schema_version_type", "unknown_schema_version"}
"""Raised by :class:`Contract`'s own checks of its version (a reason of their own)."""


def _reason_code(errors: list[ErrorDetails]) -> DeadLetterReason:
    kinds = {e["type"] for e in errors}
    if "json_invalid" in kinds or any(
        # The payload is not a JSON object (a nested value of the wrong type is a schema error)
        e["type"] in {"json_type", "model_type"} and not e["loc"]
        for e in errors
    ):
        return "not_json"
    if "unknown_schema_version" in kinds:
        return "unknown_schema_version"
    if kinds <= _VALUE_ERRORS:
        return "impossible_value"
    return "schema"


def _problem(detail: ErrorDetails) -> Problem:
    field = ".".join(str(part) for part in detail["loc"]) or "<payload>"
    if detail["type"] in _SCHEMA_VERSION_ERRORS:
        if not field.endswith("schema_version"):  # a missing one is found on the whole event
            field = "schema_version" if field == "<payload>" else f"{field}.schema_version"
        return Problem(field, detail["msg"])
    if detail["type"] == "missing":
        return Problem(field, "required field is missing")
    if detail["type"] == "extra_forbidden":
        return Problem(field, "unknown field")
    reason = detail["msg"]
    if detail["type"] == "string_pattern_mismatch":
        pattern = str(detail.get("ctx", {}).get("pattern", ""))
        reason = f"is not {PATTERN_MEANING.get(pattern, 'in the expected form ' + pattern)}"
    if detail["type"] not in {"json_invalid", "model_type"}:
        reason = f"{reason} (got {short_repr(detail.get('input'))})"
    return Problem(field, reason)
