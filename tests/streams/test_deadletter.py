"""Dead letters are always writable and always readable, whatever the record they keep."""

from __future__ import annotations

import hashlib

from postmarket.authenticity import KEY_ID_HEADER, SIGNATURE_HEADER
from postmarket.contracts import ContractViolation, DeadLetter, Problem, decode, encode
from postmarket.contracts.codec import MAX_DEAD_LETTER_BYTES, MAX_EVENT_BYTES
from streams.deadletter import MAX_HEADER_BYTES, dead_letter, kept_headers

BROKER_RECORD_LIMIT = 1_048_588
"""Apache Kafka's default message.max.bytes (and about the producer's max.request.size)."""


def test_the_largest_dead_letter_stays_readable_and_under_the_broker_limit() -> None:
    # The longest reason there can be, every character escaped in JSON as \\uXXXX.
    violation = ContractViolation("Prediction", "schema", [Problem("f", "\u2028" * 5000)])
    for size in (0, MAX_EVENT_BYTES, 2 * MAX_EVENT_BYTES + 1, 8 * 1024 * 1024):
        original = bytes(range(256)) * (size // 256) + b"\xff" * (size % 256)
        raw = encode(dead_letter("pms.predictions.v1", 3, 7, original, violation))
        assert len(raw) <= MAX_DEAD_LETTER_BYTES < BROKER_RECORD_LIMIT
        letter = decode(DeadLetter, raw)
        assert (letter.original_size, letter.original_sha256) == (
            size,
            hashlib.sha256(original).hexdigest(),
        )
        assert original.startswith(letter.original)
        assert letter.truncated == (size > 2 * MAX_EVENT_BYTES)


def test_headers_go_along_while_small_else_only_the_signature() -> None:
    signature = [(KEY_ID_HEADER, b"ed25519-0123456789abcdef"), (SIGNATURE_HEADER, b"s" * 64)]
    small = [*signature, ("trace", b"t")]
    assert kept_headers(small) == small
    assert kept_headers({"trace": b"t"}) == [("trace", b"t")]
    assert kept_headers([*signature, ("junk", b"j" * MAX_HEADER_BYTES)]) == signature
    assert kept_headers([("junk", b"j" * MAX_HEADER_BYTES), ("none", None)]) is None
    assert kept_headers(None) is None
