"""What the join hands its site's stream monitors, read back from a case file.

A case file keeps where each of its predictions was read and where each was joined with
its truth: everything the join gave the streams for it. After each assignment the join
applies, in its own order, whatever of that a stream's state does not cover yet, below the
offset it resumes each input partition at (streams.site_streams.catch_up): the outcomes and
routed predictions a worker of the previous release sent its stream agent and that agent
had not applied when it stopped (see docs/manufacturer.md, upgrading). No topic is read
for it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from postmarket.contracts import Prediction
from postmarket.contracts.events import SCHEMA_VERSION, JoinPosition
from postmarket.contracts.trusted import trusted
from streams.acquisition import acquisition_categories
from streams.casefile import Accepted, CaseFile, RecordPosition, joined_outcome
from streams.live_streams import StateKind, StreamInput
from streams.routing import RoutedScore, StreamPredictions

Applied = Callable[[StateKind, str, JoinPosition], bool]
"""Whether the stream of a key has applied the join's ``kind`` of input at a position."""
Order = tuple[str, int, int, int, int, int]
"""Where an input sits in the join's order: input topic, partition, offset, batch index,
then the prediction before the outcomes it completed, by rank."""


def prediction_input(prediction: Prediction, joined_at: JoinPosition) -> StreamPredictions:
    """A new prediction as the streams take it: its score, decision and acquisition."""
    # Every part comes from a validated prediction and position: no second validation, and
    # built as model_construct builds them, without its per-field look-ups (once per event;
    # test_casefile_fast_paths compares the two).
    routed = trusted(
        RoutedScore,
        {
            "score": prediction.score,
            "joined_at": joined_at,
            "decision": prediction.decision,
            "categories": acquisition_categories(prediction.acquisition),
        },
    )
    values = {
        "schema_version": SCHEMA_VERSION,
        "stream": prediction.stream,
        "predictions": (routed,),
    }
    return trusted(StreamPredictions, values, _ROUTED_FIELDS_SET)


_ROUTED_FIELDS_SET = frozenset({"stream", "predictions"})
"""The fields ``StreamPredictions.model_construct(stream=..., predictions=...)`` counts as set
(the schema version is its default)."""


def order_of(joined_at: JoinPosition, outcome: bool) -> Order:
    at = joined_at
    return (at.topic, at.partition, at.offset, at.index, int(outcome), at.rank)


def stream_inputs_of(case: CaseFile) -> Iterator[tuple[Order, StreamInput]]:
    """Each input the join gave the streams for ``case``, with its place in the join's order."""
    for event_id, prediction in case.predictions.items():
        accepted = case.accepted_at.get(event_id)
        if accepted is not None:
            at = accepted.joined(0)
            yield order_of(at, outcome=False), prediction_input(prediction, at)
        joined = case.joined.get(event_id)
        if joined is not None and case.truth is not None:
            yield order_of(joined, outcome=True), joined_outcome(prediction, case.truth, joined)


def holds_unapplied(state: dict[str, Any] | None, applied: Applied) -> bool:
    """Whether a case file's table state holds an input a stream has not applied, read
    without validating the state (every case file is read at each assignment)."""
    if not state or "predictions" not in state:
        return False
    accepted_at, joined = state.get("accepted_at", {}), state.get("joined", {})
    for raw in state["predictions"]:
        key = "|".join((raw["device_id"], raw["device_version"], raw["site_id"], raw["task"]))
        event_id = str(raw["event_id"])
        accepted = accepted_at.get(event_id)
        if accepted is not None and not applied(
            "prediction", key, RecordPosition(*accepted).joined(0)
        ):
            return True
        at = joined.get(event_id)
        if at is not None and not applied("outcome", key, JoinPosition.model_construct(**at)):
            return True
    return False


def stream_inputs(
    accepted: Accepted, prediction: Prediction | None, position: RecordPosition
) -> list[tuple[StreamInput, RecordPosition]]:
    """What an event gives its site's streams: a new prediction (again on a replay of its
    record), then the outcomes it completed (again on a replay); the streams skip by
    position what they applied."""
    inputs: list[tuple[StreamInput, RecordPosition]] = []
    if prediction is not None and (accepted.replayed or not accepted.duplicate):
        inputs.append((prediction_input(prediction, position.joined(0)), position))
    inputs += [(outcome, position) for outcome in accepted.outcomes]
    return inputs
