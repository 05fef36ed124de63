"""Which follow-ups make a case's ground truth final (the adjudication rule).

Standardized annotation: two blinded reads by different readers that agree are final;
when they disagree the case waits for an adjudication read. Sources that are final on
their own (pathology first, then follow-up imaging, then clinical outcome) override reads.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime

from postmarket.contracts.events import FollowUp, Label, TruthSource

FINAL_SOURCES: tuple[TruthSource, ...] = (
    "pathology",
    "follow_up_imaging",
    "adjudicated_read",
    "clinical",
)
"""Sources final on their own, strongest first."""


@dataclass(frozen=True)
class Truth:
    """The final label of a case and the follow-ups it rests on."""

    label: Label
    source: TruthSource
    time: datetime
    followup_event_ids: tuple[uuid.UUID, ...]
    blinded_reads: tuple[Label, Label] | None = None
    """The case's first- and second-round blinded reads by different readers, whatever
    settled the truth: their agreement is evidence about the labels themselves."""


def final_truth(followups: Sequence[FollowUp]) -> Truth | None:
    """The case's final truth, or None while it still waits for evidence."""
    if len(followups) == 1 and followups[0].source in FINAL_SOURCES:
        # Most cases: one follow-up, final on its own, and no pair of reads (the rule below
        # gives the same; once per follow-up joined).
        only = followups[0]
        return Truth(only.label, only.source, only.event_time, (only.event_id,))
    truth = _decisive_truth(followups)
    if truth is None:
        return None
    pair = blinded_read_pair(followups)
    # Most cases have no blinded double read: their truth is complete as it is.
    return truth if pair is None else replace(truth, blinded_reads=pair)


def blinded_read_pair(followups: Sequence[FollowUp]) -> tuple[Label, Label] | None:
    """The earliest first-round and second-round blinded reads by two different readers."""
    firsts, seconds = _blinded_rounds(followups)
    for first in firsts:
        for second in seconds:
            if first.reader_pseudonym != second.reader_pseudonym:
                return first.label, second.label
    return None


def _blinded_rounds(
    followups: Sequence[FollowUp],
) -> tuple[list[FollowUp], list[FollowUp]]:
    def by_time(read_round: str) -> list[FollowUp]:
        reads = [
            f
            for f in followups
            if f.source == "reader" and f.read_round == read_round and f.blinded
        ]
        return sorted(reads, key=lambda f: f.event_time)

    return by_time("first"), by_time("second")


def _decisive_truth(followups: Sequence[FollowUp]) -> Truth | None:
    for source in FINAL_SOURCES:
        decisive = [f for f in followups if f.source == source]
        if decisive:
            latest = max(decisive, key=lambda f: f.event_time)
            return Truth(latest.label, source, latest.event_time, (latest.event_id,))
    reads = [f for f in followups if f.source == "reader"]
    adjudications = [r for r in reads if r.read_round == "adjudication"]
    if adjudications:
        latest = max(adjudications, key=lambda f: f.event_time)
        return Truth(latest.label, "adjudicated_read", latest.event_time, (latest.event_id,))
    return _agreeing_double_read(reads)


def _agreeing_double_read(reads: Sequence[FollowUp]) -> Truth | None:
    firsts, seconds = _blinded_rounds(reads)
    for first in firsts:
        for second in seconds:
            independent = first.reader_pseudonym != second.reader_pseudonym
            if independent and first.label == second.label:
                time = max(first.event_time, second.event_time)
                return Truth(first.label, "reader", time, (first.event_id, second.event_id))
    return None
