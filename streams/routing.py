"""New predictions re-keyed by their stream, one record per stream per batch of the join.

The stream agent needs every prediction of its streams (follow-up completeness, label-free
score drift) but only its score and where the join read it. Sending one record per
prediction cost a produce, a consume, a decode and a table write per prediction; a batch
of the join sends one :class:`StreamPredictions` per stream instead, before the batch's
input offsets are committed. Each entry keeps its own :class:`JoinPosition`, so the stream
agent still skips exactly what it already applied after a replay.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

from pydantic import Field

from postmarket.contracts.events import Contract, JoinPosition, Part, Probability, StreamKey

MAX_PREDICTIONS_PER_RECORD = 400
"""Entries per record: about 90 bytes each, so a record stays well under the 64 KiB every
decode accepts (:data:`~postmarket.contracts.codec.MAX_EVENT_BYTES`)."""


class RoutedScore(Part):
    """What the stream agent needs of one new prediction."""

    score: Probability
    joined_at: JoinPosition


class StreamPredictions(Contract):
    """New predictions of one stream from one batch of the join (internal to the workers)."""

    stream: StreamKey
    predictions: tuple[RoutedScore, ...] = Field(min_length=1)


@dataclass
class StreamRouter:
    """Collects a batch's new predictions per stream, in the order the join applied them."""

    pending: dict[str, tuple[StreamKey, list[RoutedScore]]] = field(default_factory=dict)

    def add(self, stream: StreamKey, score: float, joined_at: JoinPosition) -> None:
        key = stream.as_key()
        entry = self.pending.get(key)
        if entry is None:
            entry = self.pending[key] = (stream, [])
        # Both parts come from a validated prediction and position: no second validation.
        entry[1].append(RoutedScore.model_construct(score=score, joined_at=joined_at))

    def drain(self) -> Iterator[tuple[str, StreamPredictions]]:
        """(stream key, record) to send, at most MAX_PREDICTIONS_PER_RECORD entries each."""
        pending, self.pending = self.pending, {}
        for key, (stream, scores) in pending.items():
            for start in range(0, len(scores), MAX_PREDICTIONS_PER_RECORD):
                chunk = tuple(scores[start : start + MAX_PREDICTIONS_PER_RECORD])
                yield key, StreamPredictions(stream=stream, predictions=chunk)
