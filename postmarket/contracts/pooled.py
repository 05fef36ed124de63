"""The contract of the pooled per-version stage's input: one site stream's cumulative tally.

The join sends one :class:`VersionTally` per stream whose outcomes changed in a
flush, keyed by ``device|version|task`` (:func:`version_key`), so every site of a version
reaches the same pooled monitor. Counts are cumulative, never increments: the pooled stage
keeps each site's latest tally and ignores one whose ``sequence`` is not above it, so a
tally sent again after a crash, or read out of order, never counts twice.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import AwareDatetime, Field, model_validator

from postmarket.contracts.events import Contract, StreamKey

Count = Annotated[int, Field(ge=0)]


class VersionTally(Contract):
    """A site stream's confusion counts since its first outcome, at one point of its life."""

    stream: StreamKey
    """The site stream (device, version, site, task) the counts are of."""
    sequence: Annotated[int, Field(ge=1)]
    """Outcomes the stream had counted: grows with every outcome and is never reset (the
    yearly restart of a stream's claims tests leaves its counts alone), so a later tally of
    the same stream always has a larger one."""
    true_positives: Count
    false_negatives: Count
    true_negatives: Count
    false_positives: Count
    first_case_time: AwareDatetime
    last_case_time: AwareDatetime
    """Event times of the earliest and latest case the counts include."""

    @model_validator(mode="after")
    def _counts_add_up(self) -> VersionTally:
        if self.outcomes != self.sequence:
            raise ValueError(f"counts add up to {self.outcomes}, not the sequence {self.sequence}")
        if self.first_case_time > self.last_case_time:
            raise ValueError("first_case_time is after last_case_time")
        return self

    @property
    def outcomes(self) -> int:
        return (
            self.true_positives + self.false_negatives + self.true_negatives + self.false_positives
        )

    @property
    def counts(self) -> tuple[int, int, int, int]:
        """(tp, fn, tn, fp)."""
        return (
            self.true_positives,
            self.false_negatives,
            self.true_negatives,
            self.false_positives,
        )


def version_key(stream: StreamKey) -> str:
    """The pooled stage's key of a stream: ``device|version|task`` (``|`` is in no identifier)."""
    return "|".join((stream.device_id, stream.device_version, stream.task))
