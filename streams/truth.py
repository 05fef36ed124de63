"""Which follow-ups make a case's ground truth final (the adjudication rule).

Standardized annotation: two blinded reads by different readers that agree are final;
when they disagree the case waits for an adjudication read. Sources that are final on
their own (pathology first, then follow-up imaging, then clinical outcome) override reads.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
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


def final_truth(followups: Sequence[FollowUp]) -> Truth | None:
    """The case's final truth, or None while it still waits for evidence."""
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
    firsts = [r for r in reads if r.read_round == "first" and r.blinded]
    seconds = [r for r in reads if r.read_round == "second" and r.blinded]
    for first in firsts:
        for second in seconds:
            independent = first.reader_pseudonym != second.reader_pseudonym
            if independent and first.label == second.label:
                time = max(first.event_time, second.event_time)
                return Truth(first.label, "reader", time, (first.event_id, second.event_id))
    return None
