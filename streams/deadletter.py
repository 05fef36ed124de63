"""Building dead-letter records: the original bytes, where they came from, and why."""

from __future__ import annotations

import base64
import uuid

from postmarket.contracts import ContractViolation, DeadLetter, Problem, utc_now


def dead_letter(
    topic: str, partition: int, offset: int, original: bytes, violation: ContractViolation
) -> DeadLetter:
    """The dead-letter event for a record that failed its contract."""
    return DeadLetter(
        event_id=uuid.uuid4(),
        source_topic=topic,
        source_partition=partition,
        source_offset=offset,
        # Base64Bytes validates by decoding, so the raw bytes go in encoded.
        original=base64.b64encode(original),
        reason_code=violation.code,
        reason=str(violation)[:4000],
        received_at=utc_now(),
    )


def internal_error(error: Exception, while_doing: str) -> ContractViolation:
    """The reason to dead-letter a record a worker failed on (a bug): kept for replay, and
    the agent goes on with the next record."""
    problem = Problem("<worker>", f"{type(error).__name__} while {while_doing}")
    return ContractViolation("record", "internal_error", [problem])
