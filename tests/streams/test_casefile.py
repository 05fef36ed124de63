"""Joining a case's predictions with follow-ups: any order, resends counted once,
replays of the same record re-emitting the same outcomes."""

from __future__ import annotations

import json
from datetime import timedelta
from itertools import count

import pytest

from postmarket.contracts import FollowUp, Outcome, Prediction, decode, encode
from streams.casefile import (
    Accepted,
    CaseFile,
    RecordPosition,
    awaiting_truth_in,
    event_digest,
    last_event_time_in,
)
from tests.factories import T0, make_followup, make_prediction

_offsets = count()


def at(topic: str = "pms.followups.v1", partition: int = 0) -> RecordPosition:
    """A fresh record position, as each new Kafka record has."""
    return RecordPosition(topic, partition, next(_offsets))


def test_prediction_then_followup_emits_one_outcome() -> None:
    case = CaseFile()
    prediction = make_prediction(decision="negative")
    assert case.add(prediction, at("pms.predictions.v1")).outcomes == ()
    outcomes = case.add(make_followup(label="positive"), at()).outcomes
    assert [(o.prediction_event_id, o.decision, o.label) for o in outcomes] == [
        (prediction.event_id, "negative", "positive")
    ]


def test_followup_first_then_prediction_emits_on_arrival() -> None:
    case = CaseFile()
    case.add(make_followup(), at())
    assert len(case.add(make_prediction(), at("pms.predictions.v1")).outcomes) == 1


def test_resent_prediction_is_a_duplicate() -> None:
    case = CaseFile()
    prediction = make_prediction()
    case.add(prediction, at("pms.predictions.v1"))
    assert case.add(prediction, at("pms.predictions.v1")).duplicate


def test_resent_followup_after_join_emits_nothing_again() -> None:
    case = CaseFile()
    followup = make_followup()
    case.add(make_prediction(), at("pms.predictions.v1"))
    case.add(followup, at())
    accepted = case.add(followup, at())
    assert accepted.duplicate and accepted.outcomes == ()


def test_replayed_record_re_emits_the_same_outcomes_at_the_same_position() -> None:
    case = CaseFile()
    case.add(make_prediction(), at("pms.predictions.v1"))
    followup, position = make_followup(), at()
    first = case.add(followup, position).outcomes
    replay = case.add(followup, position)
    assert replay.duplicate
    assert replay.outcomes == first


def test_each_prediction_of_the_case_gets_its_outcome_once_with_its_own_rank() -> None:
    case = CaseFile()
    case.add(make_prediction(task="referable_dr"), at("pms.predictions.v1"))
    case.add(make_prediction(task="macular_edema"), at("pms.predictions.v1"))
    first = case.add(make_followup(), at()).outcomes
    second = case.add(make_followup(source="clinical"), at()).outcomes
    assert sorted(o.joined_at.rank for o in first) == [0, 1] and second == ()


def test_first_final_truth_stands_when_stronger_evidence_follows() -> None:
    case = CaseFile()
    case.add(make_followup(source="clinical", label="negative"), at())
    case.add(make_followup(source="pathology", label="positive"), at())
    [outcome] = case.add(make_prediction(), at("pms.predictions.v1")).outcomes
    assert (outcome.label, outcome.truth_source) == ("negative", "clinical")


def test_outcome_id_is_derived_from_the_prediction() -> None:
    prediction = make_prediction()
    one, other = CaseFile(), CaseFile()
    for case in (one, other):
        case.add(prediction, at("pms.predictions.v1"))
    assert one.add(make_followup(), at()).outcomes[0].event_id == (
        other.add(make_followup(), at()).outcomes[0].event_id
    )


def test_state_survives_json_round_trip() -> None:
    case = CaseFile()
    prediction, followup = make_prediction(), make_followup()
    prediction_at, followup_at = at("pms.predictions.v1"), at()
    case.add(prediction, prediction_at)
    emitted = case.add(followup, followup_at).outcomes
    restored = CaseFile.from_state(json.loads(json.dumps(case.to_state())))
    assert restored.add(prediction, at("pms.predictions.v1")).duplicate
    assert restored.add(followup, followup_at).outcomes == emitted
    assert restored.to_state() == case.to_state()


def test_awaiting_truth_counts_unjoined_predictions() -> None:
    case = CaseFile()
    case.add(make_prediction(), at("pms.predictions.v1"))
    assert case.awaiting_truth == 1
    case.add(make_followup(), at())
    assert case.awaiting_truth == 0


def test_awaiting_truth_reads_the_same_from_table_state() -> None:
    case = CaseFile()
    assert awaiting_truth_in(None) == 0
    case.add(make_prediction(), at("pms.predictions.v1"))
    assert awaiting_truth_in(case.to_state()) == case.awaiting_truth == 1
    case.add(make_followup(), at())
    assert awaiting_truth_in(case.to_state()) == case.awaiting_truth == 0


def test_an_open_case_stays_under_one_kib() -> None:
    case = CaseFile()
    case.add(make_prediction(), at("pms.predictions.v1"))
    assert len(json.dumps(case.to_state())) < 1024


def test_defaults_left_out_of_the_state_come_back_on_load() -> None:
    case = CaseFile()
    prediction, followup = make_prediction(), make_followup()
    case.add(prediction, at("pms.predictions.v1"))
    case.add(followup, at())
    restored = CaseFile.from_state(json.loads(json.dumps(case.to_state())))
    assert restored.predictions[str(prediction.event_id)] == prediction
    assert restored.followups[str(followup.event_id)] == followup


def test_outcome_reads_back_as_the_contract_validates_it() -> None:
    case = CaseFile()
    case.add(make_prediction(), at("pms.predictions.v1"))
    [outcome] = case.add(make_followup(), at()).outcomes
    assert decode(Outcome, encode(outcome)) == outcome


def test_a_failed_add_leaves_the_case_as_it_was(monkeypatch: pytest.MonkeyPatch) -> None:
    case = CaseFile()
    case.add(make_prediction(), at("pms.predictions.v1"))
    before = case.to_state()

    def broken(*args: object) -> Outcome:
        raise RuntimeError("bug while building the outcome")

    monkeypatch.setattr("streams.casefile.joined_outcome", broken)
    with pytest.raises(RuntimeError):
        case.add(make_followup(), at())
    assert case.to_state() == before


def test_knows_an_event_once_accepted_from_any_record() -> None:
    case, prediction = CaseFile(), make_prediction()
    assert not case.knows(prediction)
    case.add(prediction, at("pms.predictions.v1"))
    assert case.knows(prediction)


def test_last_event_time_reads_the_same_from_table_state() -> None:
    case = CaseFile()
    case.add(make_prediction(), at("pms.predictions.v1"))
    case.add(make_followup(), at())
    state = json.loads(json.dumps(case.to_state()))
    assert last_event_time_in(state) == case.last_event_time
    assert last_event_time_in(CaseFile().to_state()) is None


def dropped_case(*events: Prediction | FollowUp) -> CaseFile:
    """A case that held ``events``, dropped past retention and read back from its state."""
    case = CaseFile()
    for event in events:
        case.add(event, at())
    dropped = case.dropped_past_retention(T0 + timedelta(days=500))
    return CaseFile.from_state(json.loads(json.dumps(dropped.to_state())))


def test_a_resend_after_retention_is_a_duplicate_of_the_dropped_case() -> None:
    prediction, followup = make_prediction(), make_followup()
    case = dropped_case(prediction, followup)
    assert (case.predictions, case.followups, case.joined) == ({}, {}, {})
    for event in (prediction, followup):
        assert case.knows(event)
        accepted = case.add(event, at())
        assert (accepted.duplicate, accepted.after_retention, accepted.outcomes) == (
            True,
            True,
            (),
        )
    assert case.to_state() == dropped_case(prediction, followup).to_state()


def test_a_new_event_of_a_dropped_case_opens_it_again_and_keeps_the_old_ids() -> None:
    old = make_prediction()
    case = dropped_case(old)
    late = make_followup()
    assert not case.knows(late)
    assert case.add(late, at()) == Accepted(duplicate=False)  # its prediction is gone
    again = CaseFile.from_state(json.loads(json.dumps(case.to_state())))
    assert again.knows(old) and again.knows(late)
    dropped_twice = again.dropped_past_retention(T0 + timedelta(days=900))
    assert dropped_twice.dropped == {event_digest(str(e.event_id)) for e in (old, late)}
    assert dropped_twice.dropped_at == T0 + timedelta(days=900)


def test_a_dropped_case_keeps_a_few_bytes_per_event() -> None:
    case = dropped_case(make_prediction(), make_followup())
    assert len(json.dumps(case.to_state())) < 256
    assert "dropped_events" not in CaseFile().to_state()  # an open case pays nothing for it
