"""What a stream's monitor takes of its new predictions.

A stream needs every prediction (follow-up completeness, label-free score and acquisition
drift, the confidence-based performance estimate) but only its score, decision, acquisition
categories and where the join read it. Each entry keeps its own :class:`JoinPosition`, so
the stream skips exactly what it already applied after a replay. (Until issue 17's merge the
join sent these to a stream agent, one record per stream per batch; it now applies them
itself, on its site's partition.)
"""

from __future__ import annotations

from pydantic import Field

from postmarket.contracts.events import (
    Contract,
    Decision,
    JoinPosition,
    Part,
    Probability,
    StreamKey,
)
from streams.acquisition import AcquisitionCategories


class RoutedScore(Part):
    """What a stream needs of one new prediction."""

    score: Probability
    joined_at: JoinPosition
    decision: Decision | None = None
    """None only in records routed by a worker of the previous release."""
    categories: AcquisitionCategories = {}
    """The prediction's known acquisition categories, by dimension."""


class StreamPredictions(Contract):
    """New predictions of one stream, as the join applies them (internal to the workers)."""

    stream: StreamKey
    predictions: tuple[RoutedScore, ...] = Field(min_length=1)
