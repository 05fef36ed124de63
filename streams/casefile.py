"""The join of predictions with follow-ups for one case, as plain state a table can hold.

Predictions and follow-ups of a case arrive in any order, days to months apart, and may
be resent; a :class:`CaseFile` remembers every event_id it accepted, so a resend is a
duplicate and never counts twice, and emits one outcome per prediction once truth is final.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

from postmarket.contracts.events import FollowUp, Outcome, Prediction
from streams.truth import Truth, final_truth

STATE_VERSION = 1
OUTCOME_NAMESPACE = uuid.UUID("6d1f0c2e-9b7a-4d8e-a0b1-5c3e2f4a6b7c")
"""Outcome ids are derived from the prediction id, so a re-emitted outcome keeps its id."""


@dataclass(frozen=True)
class Accepted:
    """What adding one event did: whether it was new, and the outcomes it completed."""

    duplicate: bool
    outcomes: tuple[Outcome, ...] = ()


@dataclass
class CaseFile:
    """Everything known about one case pseudonym."""

    predictions: dict[str, Prediction] = field(default_factory=dict)
    followups: dict[str, FollowUp] = field(default_factory=dict)
    joined: set[str] = field(default_factory=set)

    def add(self, event: Prediction | FollowUp) -> Accepted:
        """Add a prediction or follow-up; resends of a known event_id change nothing."""
        key = str(event.event_id)
        if key in self.predictions or key in self.followups:
            return Accepted(duplicate=True)
        if isinstance(event, Prediction):
            self.predictions[key] = event
        else:
            self.followups[key] = event
        return Accepted(duplicate=False, outcomes=self._complete())

    @property
    def awaiting_truth(self) -> int:
        """Predictions of this case not yet joined with final truth."""
        return len(self.predictions) - len(self.joined)

    def _complete(self) -> tuple[Outcome, ...]:
        truth = final_truth(list(self.followups.values()))
        if truth is None:
            return ()
        pending = [p for k, p in self.predictions.items() if k not in self.joined]
        self.joined.update(str(p.event_id) for p in pending)
        return tuple(joined_outcome(p, truth) for p in pending)

    def to_state(self) -> dict[str, Any]:
        """JSON-able state for a Faust table (changelogged, so it survives restarts)."""
        return {
            "state_version": STATE_VERSION,
            "predictions": [p.model_dump(mode="json") for p in self.predictions.values()],
            "followups": [f.model_dump(mode="json") for f in self.followups.values()],
            "joined": sorted(self.joined),
        }

    @classmethod
    def from_state(cls, state: dict[str, Any] | None) -> CaseFile:
        if not state:
            return cls()
        if state.get("state_version") != STATE_VERSION:
            raise ValueError(f"case file state version {state.get('state_version')!r} unknown")
        predictions = (Prediction.model_validate(p, strict=False) for p in state["predictions"])
        followups = (FollowUp.model_validate(f, strict=False) for f in state["followups"])
        return cls(
            predictions={str(p.event_id): p for p in predictions},
            followups={str(f.event_id): f for f in followups},
            joined=set(state["joined"]),
        )


def joined_outcome(prediction: Prediction, truth: Truth) -> Outcome:
    """The outcome event of one prediction with its final truth."""
    return Outcome(
        event_id=uuid.uuid5(OUTCOME_NAMESPACE, str(prediction.event_id)),
        stream=prediction.stream,
        case_pseudonym=prediction.case_pseudonym,
        prediction_event_id=prediction.event_id,
        prediction_time=prediction.event_time,
        score=prediction.score,
        decision=prediction.decision,
        operating_threshold=prediction.operating_threshold,
        acquisition=prediction.acquisition,
        label=truth.label,
        truth_source=truth.source,
        truth_time=truth.time,
        followup_event_ids=truth.followup_event_ids,
        study_design=prediction.study_design,
    )
