"""The tamper-evident audit trail: canonical JSON, hash chaining and chain verification.

Each entry's hash is SHA-256 over the canonical JSON of the entry (its sequence number,
time, actor, action, subject, payload and the previous entry's hash), so altering, removing
or reordering any stored entry breaks the chain at that entry. Pure: no database here.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

GENESIS_HASH = "0" * 64
"""The ``previous_hash`` of the first entry."""


def _json_default(value: object) -> str:
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r} in an audit payload")
        return value.astimezone(UTC).isoformat()
    if isinstance(value, date):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable in an audit payload")


def canonical_json(value: Any) -> str:
    """One fixed serialisation per value: sorted keys, no spaces, UTF-8, no NaN.

    >>> canonical_json({"b": 1, "a": [1.5, "é"]})
    '{"a":[1.5,"é"],"b":1}'
    """
    return json.dumps(
        value,
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
        allow_nan=False,
        default=_json_default,
    )


@dataclass(frozen=True)
class AuditRecord:
    """One stored audit entry, exactly as its columns hold it (``payload`` is canonical JSON)."""

    sequence: int
    recorded_at: str
    actor: str
    action: str
    subject: str
    payload: str
    previous_hash: str
    entry_hash: str

    def hashed_fields(self) -> dict[str, Any]:
        """Everything the entry hash covers (all columns but the hash itself)."""
        return {
            "sequence": self.sequence,
            "recorded_at": self.recorded_at,
            "actor": self.actor,
            "action": self.action,
            "subject": self.subject,
            "payload": self.payload,
            "previous_hash": self.previous_hash,
        }


def entry_hash(fields: Mapping[str, Any]) -> str:
    """SHA-256 hex of the canonical JSON of an entry's hashed fields."""
    return hashlib.sha256(canonical_json(dict(fields)).encode("utf-8")).hexdigest()


def audit_time(moment: datetime) -> str:
    """How an entry's ``recorded_at`` is stored: UTC ISO 8601 to the microsecond, one fixed
    width, so comparing the text compares the times (in SQL too, under any collation: the
    separators stand at the same places in every value).

    >>> audit_time(datetime.fromisoformat("2026-01-01T09:00:00+01:00"))
    '2026-01-01T08:00:00.000000+00:00'
    """
    return moment.astimezone(UTC).isoformat(timespec="microseconds")


def chain_entry(
    previous: AuditRecord | None,
    recorded_at: datetime,
    actor: str,
    action: str,
    subject: str,
    payload: Mapping[str, Any],
) -> AuditRecord:
    """The next entry after ``previous`` (None for the first), with its hash computed."""
    unhashed = AuditRecord(
        sequence=1 if previous is None else previous.sequence + 1,
        recorded_at=audit_time(recorded_at),
        actor=actor,
        action=action,
        subject=subject,
        payload=canonical_json(dict(payload)),
        previous_hash=GENESIS_HASH if previous is None else previous.entry_hash,
        entry_hash="",
    )
    return AuditRecord(
        **{**unhashed.hashed_fields(), "entry_hash": entry_hash(unhashed.hashed_fields())}
    )


@dataclass(frozen=True)
class AuditProblem:
    """The first entry at which the chain breaks, and how."""

    sequence: int
    reason: str

    def __str__(self) -> str:
        return f"audit entry {self.sequence}: {self.reason}"


@dataclass(frozen=True)
class ChainVerdict:
    """The result of verifying the whole chain: entries checked, head hash, first problem."""

    entries: int
    head_hash: str
    problem: AuditProblem | None

    @property
    def intact(self) -> bool:
        return self.problem is None


def verify_chain(records: Iterable[AuditRecord]) -> ChainVerdict:
    """Walk the entries in sequence order; return the first one that breaks the chain.

    Catches altered content (hash mismatch), altered or re-pointed links, and entries
    removed from the middle (a gap in the sequence). Removing the newest entries leaves a
    shorter intact chain, which only a copy of the head hash kept elsewhere can reveal.
    """
    expected_previous = GENESIS_HASH
    expected_sequence = 1
    count = 0
    for record in records:
        count += 1
        if record.sequence != expected_sequence:
            return ChainVerdict(
                count,
                expected_previous,
                AuditProblem(
                    record.sequence,
                    f"expected entry {expected_sequence} here: an entry was removed or renumbered",
                ),
            )
        if record.previous_hash != expected_previous:
            return ChainVerdict(
                count,
                expected_previous,
                AuditProblem(
                    record.sequence,
                    "previous_hash does not match the hash of the entry before it",
                ),
            )
        recomputed = entry_hash(record.hashed_fields())
        if recomputed != record.entry_hash:
            return ChainVerdict(
                count,
                expected_previous,
                AuditProblem(
                    record.sequence,
                    "content does not match its hash: the entry was altered after it was written",
                ),
            )
        expected_previous = record.entry_hash
        expected_sequence += 1
    return ChainVerdict(count, expected_previous, None)
