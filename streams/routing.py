"""New predictions re-keyed by their stream, one record per stream per batch of the join.

The stream agent needs every prediction of its streams (follow-up completeness, label-free
score and acquisition drift, the confidence-based performance estimate) but only its score,
decision, acquisition categories and where the join read it. Sending one record per
prediction cost a produce, a consume, a decode and a table write per prediction; a batch
of the join sends one :class:`StreamPredictions` per stream instead, before the batch's
input offsets are committed. Each entry keeps its own :class:`JoinPosition`, so the stream
agent still skips exactly what it already applied after a replay.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from pydantic import Field

from postmarket.contracts.events import (
    Contract,
    Decision,
    JoinPosition,
    Part,
    Prediction,
    Probability,
    StreamKey,
)
from streams.acquisition import AcquisitionCategories, acquisition_categories

MAX_PREDICTIONS_PER_RECORD = 160
"""Entries per record: at most about 370 bytes each (with the 64-character manufacturer and
model names the contracts allow), so a record stays under the 64 KiB every decode accepts
(:data:`~postmarket.contracts.codec.MAX_EVENT_BYTES`)."""


class RoutedScore(Part):
    """What the stream agent needs of one new prediction."""

    score: Probability
    joined_at: JoinPosition
    decision: Decision | None = None
    """None only in records routed by a worker of the previous release."""
    categories: AcquisitionCategories = {}
    """The prediction's known acquisition categories, by dimension."""


class StreamPredictions(Contract):
    """New predictions of one stream from one batch of the join (internal to the workers)."""

    stream: StreamKey
    predictions: tuple[RoutedScore, ...] = Field(min_length=1)


@dataclass
class StreamRouter:
    """Collects a batch's new predictions per stream, in the order the join applied them."""

    pending: dict[str, tuple[StreamKey, list[RoutedScore]]] = field(default_factory=dict)

    def add(self, stream: StreamKey, prediction: Prediction, joined_at: JoinPosition) -> None:
        key = stream.as_key()
        entry = self.pending.get(key)
        if entry is None:
            entry = self.pending[key] = (stream, [])
        # Every part comes from a validated prediction and position: no second validation.
        routed = RoutedScore.model_construct(
            score=prediction.score,
            joined_at=joined_at,
            decision=prediction.decision,
            categories=acquisition_categories(prediction.acquisition),
        )
        entry[1].append(routed)

    def restore(self, unsent: Iterable[tuple[str, StreamPredictions]]) -> None:
        """Put back, before anything added since, the records of a flush that failed (the
        stream agent skips any it had already applied)."""
        earlier: dict[str, tuple[StreamKey, list[RoutedScore]]] = {}
        for key, record in unsent:
            earlier.setdefault(key, (record.stream, []))[1].extend(record.predictions)
        for key, (stream, scores) in self.pending.items():
            earlier.setdefault(key, (stream, []))[1].extend(scores)
        self.pending = earlier

    def drain(self) -> Iterator[tuple[str, StreamPredictions]]:
        """(stream key, record) to send, at most MAX_PREDICTIONS_PER_RECORD entries each."""
        pending, self.pending = self.pending, {}
        for key, (stream, scores) in pending.items():
            for start in range(0, len(scores), MAX_PREDICTIONS_PER_RECORD):
                chunk = tuple(scores[start : start + MAX_PREDICTIONS_PER_RECORD])
                yield key, StreamPredictions(stream=stream, predictions=chunk)
