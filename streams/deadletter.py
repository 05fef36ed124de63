"""Building dead-letter records: the original bytes, where they came from, and why.

A dead letter must always be writable: the broker refuses a record over its size limit
(1 MiB by default), and a record whose dead letter is refused would be lost. So the
original value is kept whole up to ``MAX_DEAD_LETTER_ORIGINAL_BYTES`` (twice the largest
event any reader accepts) and cut beyond it, with the whole value's size and hash; the original
headers go along only while they are small.
"""

from __future__ import annotations

import base64
import hashlib
import uuid
from collections.abc import Iterable, Mapping
from typing import Any

from postmarket.authenticity import KEY_ID_HEADER, SIGNATURE_HEADER
from postmarket.contracts import ContractViolation, DeadLetter, Problem, utc_now
from postmarket.contracts.codec import MAX_DEAD_LETTER_ORIGINAL_BYTES

MAX_HEADER_BYTES = 16 * 1024
"""Original headers beyond this in all are dropped, but for the signature's own two."""

Headers = list[tuple[str, bytes]]


class DeadLetterNotWritten(Exception):
    """A record's dead letter could not be sent: the record was neither handled nor kept,
    so it must not be acked (it is read again once the worker restarts)."""


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
        original=base64.b64encode(original[:MAX_DEAD_LETTER_ORIGINAL_BYTES]),
        original_size=len(original),
        original_sha256=hashlib.sha256(original).hexdigest(),
        reason_code=violation.code,
        reason=str(violation)[:4000],
        received_at=utc_now(),
    )


def kept_headers(headers: Iterable[tuple[str, Any]] | Mapping[str, Any] | None) -> Headers | None:
    """The original record's headers a dead letter carries (so a fixed record can be re-sent
    as its collector signed it): all of them while small, else only the signature's."""
    if not headers:
        return None
    pairs = headers.items() if isinstance(headers, Mapping) else headers
    kept = [(str(name), bytes(content)) for name, content in pairs if content is not None]
    if _size(kept) > MAX_HEADER_BYTES:
        signature = {KEY_ID_HEADER, SIGNATURE_HEADER}
        kept = [(name, content) for name, content in kept if name in signature]
        if _size(kept) > MAX_HEADER_BYTES:
            return None
    return kept or None


def _size(headers: Headers) -> int:
    return sum(len(name.encode()) + len(content) for name, content in headers)


def internal_error(error: Exception, while_doing: str) -> ContractViolation:
    """The reason to dead-letter a record a worker failed on (a bug): kept for replay, and
    the agent goes on with the next record."""
    problem = Problem("<worker>", f"{type(error).__name__} while {while_doing}")
    return ContractViolation("record", "internal_error", [problem])
