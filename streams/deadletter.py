"""Dead letters: the original bytes of a record no agent can use, where they came from,
and why; every agent dead-letters through :func:`dead_lettering_failures` or
:func:`send_dead_letter`.

A dead letter must always be writable: the broker refuses a record over its size limit
(1 MiB by default), and a record whose dead letter is refused would be lost. So the
original value is kept whole up to ``MAX_DEAD_LETTER_ORIGINAL_BYTES`` (twice the largest
event any reader accepts) and cut beyond it, with the whole value's size and hash; the original
headers go along only while they are small.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import uuid
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from postmarket.authenticity import KEY_ID_HEADER, SIGNATURE_HEADER
from postmarket.contracts import ContractViolation, DeadLetter, Problem, encode, utc_now
from postmarket.contracts.batches import BatchElement
from postmarket.contracts.codec import MAX_DEAD_LETTER_ORIGINAL_BYTES
from streams.app import metrics
from streams.casefile import RecordPosition
from streams.channels import deadletter, produce

logger = logging.getLogger(__name__)

MAX_HEADER_BYTES = 16 * 1024
"""Original headers beyond this in all are dropped, but for the signature's own two."""

Headers = list[tuple[str, bytes]]


class DeadLetterNotWritten(Exception):
    """A record's dead letter could not be sent: the record was neither handled nor kept,
    so it must not be acked (it is read again once the worker restarts)."""


def dead_letter(
    topic: str,
    partition: int,
    offset: int,
    original: bytes,
    violation: ContractViolation,
    index: int | None = None,
) -> DeadLetter:
    """The dead-letter event for a record that failed its contract (``index``: for one
    event of a batch, its place, and ``original`` is that event alone)."""
    return DeadLetter(
        event_id=uuid.uuid4(),
        source_topic=topic,
        source_partition=partition,
        source_offset=offset,
        source_index=index,
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


@dataclass(frozen=True)
class Source:
    """What a dead letter keeps of what failed: where the record was first written, its
    value and headers, and for one event of a batch its place (``value`` is then that
    event's JSON)."""

    position: RecordPosition
    value: bytes | None | Callable[[], bytes | None]
    """The bytes, or how to make them when a dead letter needs them (a batch event's JSON is
    encoded only then: a valid event, almost every one, never is)."""
    headers: Any = None
    index: int | None = None

    def payload(self) -> bytes | None:
        return self.value() if callable(self.value) else self.value

    @classmethod
    def of_event(cls, at: RecordPosition, element: BatchElement) -> Source:
        """What a dead letter of one event of the batch read at ``at`` keeps."""
        return cls(at, element.original, None, element.index)


async def dead_lettering_failures(
    event: Any, position: RecordPosition, handle: Callable[[], Awaitable[None]], doing: str
) -> None:
    """Run ``handle`` on one record; dead-letter the record if it breaks its contract, or if
    the worker fails on it (``doing`` names what failed)."""
    await dead_lettering(Source(position, event.value, event.message.headers), handle, doing)


async def dead_lettering(source: Source, handle: Callable[[], Awaitable[None]], doing: str) -> None:
    """Run ``handle``; dead-letter ``source`` if it breaks its contract or the worker fails
    on it."""
    try:
        await handle()
    except DeadLetterNotWritten:
        raise  # from a part of this record (one event of a batch): the record stays unacked
    except Exception as error:
        await dead_letter_failure(source, error, doing)


async def dead_letter_failure(source: Source, error: Exception, doing: str) -> None:
    """What :func:`dead_lettering` does once its ``handle`` raised ``error`` (raised while
    handling the error: the log shows its traceback), for a caller that catches it itself
    (the join, once per event of a batch, builds a :class:`Source` only then).
    :class:`DeadLetterNotWritten` is the caller's to re-raise."""
    if isinstance(error, ContractViolation):
        await _keep_or_stop(source, error)
        return
    # A bug must not lose the record nor stop the agent: keep it for replay.
    logger.error("%s failed on %s", doing, source.position, exc_info=error)
    await _keep_or_stop(source, internal_error(error, doing))


async def _keep_or_stop(source: Source, violation: ContractViolation) -> None:
    """Dead-letter the record; if even that fails, raise :class:`DeadLetterNotWritten` so
    the record is not acked (see streams.held_acks)."""
    try:
        await send_dead_letter(
            source.position, source.payload(), violation, source.headers, source.index
        )
    except Exception as error:
        raise DeadLetterNotWritten(
            f"the dead letter of {source.position} ({violation.code}) could not be sent: "
            f"{type(error).__name__}"
        ) from error


async def send_dead_letter(
    position: RecordPosition,
    value: bytes | None,
    violation: ContractViolation,
    headers: Any = None,
    index: int | None = None,
) -> None:
    """Keep an unusable record (``index``: one event of a batch) on the dead-letter topic
    with its reason, and count it.

    The original record's headers (its signature) go along, so a fixed record can be
    re-sent exactly as the collector signed it.
    """
    record = dead_letter(
        position.topic, position.partition, position.offset, value or b"", violation, index
    )
    await produce(
        deadletter, position.topic.encode(), encode(record), headers=kept_headers(headers)
    )
    metrics.events_deadlettered.labels(position.topic, violation.code).inc()
