"""Joining a case's predictions with follow-ups: any order, resends counted once."""

from __future__ import annotations

import json

from streams.casefile import CaseFile
from tests.factories import make_followup, make_prediction


def test_prediction_then_followup_emits_one_outcome() -> None:
    case = CaseFile()
    prediction = make_prediction(decision="negative")
    assert case.add(prediction).outcomes == ()
    outcomes = case.add(make_followup(label="positive")).outcomes
    assert [(o.prediction_event_id, o.decision, o.label) for o in outcomes] == [
        (prediction.event_id, "negative", "positive")
    ]


def test_followup_first_then_prediction_emits_on_arrival() -> None:
    case = CaseFile()
    case.add(make_followup())
    assert len(case.add(make_prediction()).outcomes) == 1


def test_resent_prediction_is_a_duplicate() -> None:
    case = CaseFile()
    prediction = make_prediction()
    case.add(prediction)
    assert case.add(prediction).duplicate


def test_resent_followup_after_join_emits_nothing_again() -> None:
    case = CaseFile()
    followup = make_followup()
    case.add(make_prediction())
    case.add(followup)
    accepted = case.add(followup)
    assert accepted.duplicate and accepted.outcomes == ()


def test_each_prediction_of_the_case_gets_its_outcome_once() -> None:
    case = CaseFile()
    case.add(make_prediction(task="referable_dr"))
    case.add(make_prediction(task="macular_edema"))
    first = case.add(make_followup()).outcomes
    second = case.add(make_followup(source="clinical")).outcomes
    assert len(first) == 2 and second == ()


def test_outcome_id_is_derived_from_the_prediction() -> None:
    prediction = make_prediction()
    one, other = CaseFile(), CaseFile()
    for case in (one, other):
        case.add(prediction)
    assert one.add(make_followup()).outcomes[0].event_id == (
        other.add(make_followup()).outcomes[0].event_id
    )


def test_state_survives_json_round_trip() -> None:
    case = CaseFile()
    prediction = make_prediction()
    case.add(prediction)
    restored = CaseFile.from_state(json.loads(json.dumps(case.to_state())))
    assert restored.add(prediction).duplicate
    assert len(restored.add(make_followup()).outcomes) == 1


def test_awaiting_truth_counts_unjoined_predictions() -> None:
    case = CaseFile()
    case.add(make_prediction())
    assert case.awaiting_truth == 1
    case.add(make_followup())
    assert case.awaiting_truth == 0
