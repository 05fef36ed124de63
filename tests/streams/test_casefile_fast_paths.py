"""The join's fast paths give exactly what pydantic's own construction, validation and
serialization give: the same objects, the same table states byte for byte, the same errors."""

from __future__ import annotations

import dataclasses
import json
import uuid
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, ValidationError

from postmarket.contracts import FollowUp, Outcome, Prediction, decode, encode
from postmarket.contracts.codec import encode_outcome
from postmarket.contracts.events import AcquisitionFeatures, JoinPosition
from streams.casefile import (
    OUTCOME_NAMESPACE,
    CaseFile,
    RecordPosition,
    joined_outcome,
    outcome_id,
    stream_key,
)
from streams.channels import case_files
from streams.truth import final_truth
from tests.factories import T0, make_followup, make_outcome, make_prediction, make_read


def same_model(fast: BaseModel, slow: BaseModel) -> None:
    """Equal, with the same fields counted as set, in the same order, and the same JSON."""
    assert type(fast) is type(slow)
    assert fast == slow
    assert list(fast.__dict__) == list(slow.__dict__)
    assert fast.model_fields_set == slow.model_fields_set
    assert fast.__pydantic_extra__ == slow.__pydantic_extra__
    assert fast.__pydantic_private__ == slow.__pydantic_private__
    assert fast.model_dump_json() == slow.model_dump_json()


def outcome_as_model_construct_built_it(prediction: Any, truth: Any, at: JoinPosition) -> Outcome:
    """The outcome as the join built it before its fast path (the reference)."""
    return Outcome.model_construct(
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
        joined_at=at,
        blinded_reads=truth.blinded_reads,
    )


@pytest.mark.parametrize("index", [0, 7])
def test_a_joined_position_is_the_one_model_construct_builds(index: int) -> None:
    fast = RecordPosition("pms.inputs.v2", 3, 41, index).joined(2)
    slow = JoinPosition.model_construct(
        topic="pms.inputs.v2", partition=3, offset=41, rank=2, index=index
    )
    same_model(fast, slow)


@pytest.mark.parametrize("index", [0, 7])
def test_an_event_position_is_the_one_the_constructor_builds(index: int) -> None:
    fast = RecordPosition("pms.inputs.v2", 3, 41).at_index(index)
    slow = RecordPosition("pms.inputs.v2", 3, 41, index)
    assert (fast, hash(fast), repr(fast), vars(fast)) == (slow, hash(slow), repr(slow), vars(slow))
    with pytest.raises(dataclasses.FrozenInstanceError):
        fast.index = 1  # type: ignore[misc]


@pytest.mark.parametrize(
    "reads", [False, True], ids=["pathology", "blinded reads and adjudication"]
)
def test_an_outcome_is_the_one_model_construct_builds_and_decodes_as_itself(reads: bool) -> None:
    prediction = make_prediction(
        acquisition=AcquisitionFeatures(manufacturer="GE", slice_thickness_mm=1.25),
        study_design="retrospective",
    )
    if reads:
        followups = [
            make_read("r1", "first", "positive"),
            make_read("r2", "second", "negative"),
            make_read("r3", "adjudication", "negative"),
        ]
    else:
        followups = [make_followup(label="negative")]
    truth = final_truth(followups)
    assert truth is not None
    at = RecordPosition("pms.inputs.v2", 1, 9, 4).joined(1)
    fast = joined_outcome(prediction, truth, at)
    same_model(fast, outcome_as_model_construct_built_it(prediction, truth, at))
    assert decode(Outcome, encode(fast)) == fast


@settings(max_examples=300, deadline=None)
@given(st.uuids())
def test_an_outcome_id_is_uuid5_of_its_prediction_id(prediction_id: uuid.UUID) -> None:
    fast = outcome_id(prediction_id)
    slow = uuid.uuid5(OUTCOME_NAMESPACE, str(prediction_id))
    assert fast == slow
    assert outcome_id(prediction_id, str(prediction_id)) == slow  # its text given
    assert (str(fast), fast.version, fast.variant, fast.is_safe) == (
        str(slow),
        slow.version,
        slow.variant,
        slow.is_safe,
    )
    assert hash(fast) == hash(slow)


def test_a_stream_key_is_the_predictions_own_stream() -> None:
    prediction = make_prediction()
    fast = stream_key(
        prediction.device_id, prediction.device_version, prediction.site_id, prediction.task
    )
    same_model(fast, prediction.stream)


def case_state_as_pydantic_dumps_it(case: CaseFile) -> dict[str, Any]:
    """A case's table state with every event and position dumped by pydantic, as the join
    wrote it before its fast paths (the reference)."""
    state = case.to_state()
    if "predictions" not in state:
        return state
    dump: dict[str, Any] = {"mode": "json", "exclude_defaults": True}
    return {
        **state,
        "predictions": [p.model_dump(**dump) for p in case.predictions.values()],
        "followups": [f.model_dump(**dump) for f in case.followups.values()],
        "joined": {k: v.model_dump(mode="json") for k, v in case.joined.items()},
    }


def test_a_case_state_is_the_same_bytes_at_every_change() -> None:
    """Event states are kept from one write to the next: they must never go stale."""
    case = CaseFile()
    events: list[Prediction | FollowUp] = [
        make_prediction(score=0.3, decision="negative"),
        make_read("r1", "first", "positive"),
        make_prediction(event_time=T0 + timedelta(hours=1)),
        make_read("r2", "second", "positive"),
        make_followup(source="clinical", label="negative"),
    ]
    for offset, event in enumerate(events):
        case.add(event, RecordPosition("pms.inputs.v2", 0, offset, offset % 3))
        written = json.dumps(case.to_state())
        assert written == json.dumps(case_state_as_pydantic_dumps_it(case))
    assert case.joined  # the reads completed the join: positions are in the state


def test_a_loaded_case_writes_the_state_it_was_loaded_from() -> None:
    case = CaseFile()
    case.add(make_prediction(), RecordPosition("pms.inputs.v2", 0, 1, 2))
    case.add(make_read("r1", "first", "positive"), RecordPosition("pms.inputs.v2", 0, 2))
    case.add(make_read("r2", "second", "positive"), RecordPosition("pms.inputs.v2", 0, 3, 9))
    state = json.loads(json.dumps(case.to_state()))  # as the changelog gives it back
    loaded = CaseFile.from_state(state)
    assert loaded == case
    assert json.dumps(loaded.to_state()) == json.dumps(state)
    assert loaded.truth is not None and case.truth is not None
    assert loaded.truth.followup_event_ids == case.truth.followup_event_ids
    for key, join in loaded.joined.items():
        same_model(join, JoinPosition.model_validate(state["joined"][key], strict=False))


@pytest.mark.parametrize(
    "stored",
    [
        {"topic": "pms.inputs.v2", "partition": 0, "offset": 5, "rank": 0},
        {"topic": "pms.inputs.v2", "partition": 2, "offset": 5, "rank": 1, "index": 3},
        {"topic": "pms.inputs.v2", "partition": 2, "offset": 5, "rank": 1, "index": 0},
        # Not the layout join_state writes: validated, as before the fast path.
        {"topic": "pms.inputs.v2", "partition": "2", "offset": 5.0, "rank": 1},
        {"topic": "pms.inputs.v2", "partition": 0, "offset": 5, "rank": True},
    ],
)
def test_a_stored_join_position_loads_as_validation_reads_it(stored: dict[str, Any]) -> None:
    state = _case_state_with_join(stored)
    loaded = CaseFile.from_state(state).joined["p"]
    same_model(loaded, JoinPosition.model_validate(stored, strict=False))


@pytest.mark.parametrize(
    "stored",
    [
        {"topic": "", "partition": 0, "offset": 5, "rank": 0},
        {"topic": "pms.inputs.v2", "partition": -1, "offset": 5, "rank": 0},
        {"topic": "pms.inputs.v2", "partition": 0, "offset": 5},
        {"topic": "pms.inputs.v2", "partition": 0, "offset": 5, "rank": 0, "extra": 1},
    ],
)
def test_a_malformed_join_position_is_refused_as_validation_refuses_it(
    stored: dict[str, Any],
) -> None:
    with pytest.raises(ValidationError) as expected:
        JoinPosition.model_validate(stored, strict=False)
    with pytest.raises(ValidationError) as refused:
        CaseFile.from_state(_case_state_with_join(stored))
    assert refused.value.errors() == expected.value.errors()


def _case_state_with_join(stored: dict[str, Any]) -> dict[str, Any]:
    prediction = make_prediction()
    return {
        "state_version": 2,
        "predictions": [prediction.model_dump(mode="json", exclude_defaults=True)],
        "followups": [],
        "accepted_at": {str(prediction.event_id): ["pms.inputs.v2", 0, 1]},
        "joined": {"p": stored},
        "truth": None,
    }


UTC_MINUS_5 = timezone(-timedelta(hours=5))
identifiers = st.from_regex(r"\A[A-Za-z0-9][A-Za-z0-9._:-]{0,12}\Z")
aware_times = st.datetimes(
    min_value=datetime(1990, 1, 1),
    max_value=datetime(2100, 1, 1),
    timezones=st.sampled_from([UTC, timezone(timedelta(hours=5, minutes=30)), UTC_MINUS_5]),
)
probabilities = st.floats(min_value=0.0, max_value=1.0)
acquisitions = st.builds(
    AcquisitionFeatures,
    modality=st.none() | st.sampled_from(["CT", "MR"]),
    manufacturer=st.none() | identifiers,
    slice_thickness_mm=st.none() | st.floats(min_value=0.1, max_value=50.0),
    slice_thickness_band=st.none() | st.sampled_from(["sub_mm", "1_2mm", "about_5mm", "other"]),
    kvp=st.none() | st.floats(min_value=1.0, max_value=200.0),
    station_pseudonym=st.none() | identifiers,
)
study_designs = st.sampled_from(["prospective", "retrospective"])


def predictions_with(acquisition: st.SearchStrategy[AcquisitionFeatures]) -> Any:
    return st.builds(
        make_prediction,
        event_id=st.uuids(),
        site_id=identifiers,
        case_pseudonym=identifiers,
        event_time=aware_times,
        score=probabilities,
        decision=st.sampled_from(["positive", "negative"]),
        operating_threshold=probabilities,
        acquisition=acquisition,
        study_design=study_designs,
    )


predictions = predictions_with(acquisitions)
followups = st.one_of(
    st.builds(
        make_followup,
        event_id=st.uuids(),
        event_time=aware_times,
        label=st.sampled_from(["positive", "negative"]),
        source=st.sampled_from(["pathology", "clinical", "follow_up_imaging"]),
        blinded=st.booleans(),
        study_design=study_designs,
    ),
    st.builds(
        make_read,
        identifiers,
        st.sampled_from(["first", "second", "adjudication"]),
        st.sampled_from(["positive", "negative"]),
        event_id=st.uuids(),
        event_time=aware_times,
    ),
)
decoded_events = (predictions | followups).map(lambda event: decode(type(event), encode(event)))
"""Events as the join gets them: decoded from their bytes (pydantic's own time zones)."""


@settings(max_examples=300, deadline=None)
@given(st.lists(predictions | followups | decoded_events, min_size=1, max_size=8))
def test_a_case_state_is_what_pydantic_dumps_for_any_events(
    events: list[Prediction | FollowUp],
) -> None:
    case = CaseFile()
    for offset, event in enumerate(events):
        case.add(event, RecordPosition("pms.inputs.v2", 0, offset, offset % 2))
    assert json.dumps(case.to_state()) == json.dumps(case_state_as_pydantic_dumps_it(case))


any_text = st.text(max_size=24)
"""Any text a string field may hold: non-ASCII, control characters, quotes, escapes."""
unusual_predictions = predictions_with(
    st.builds(
        AcquisitionFeatures,
        manufacturer=st.none() | any_text.map(lambda text: text[:64]),
        model=st.none() | any_text,
        body_part=st.none() | any_text,
        slice_thickness_mm=st.none() | st.floats(min_value=1e-9, max_value=50.0),
        pixel_spacing_mm=st.none() | st.floats(min_value=1e-9, max_value=10.0),
        kvp=st.none() | st.floats(min_value=1e-9, max_value=200.0),
    )
)


@settings(max_examples=300, deadline=None)
@given(
    st.lists(predictions | unusual_predictions | followups | decoded_events, min_size=1, max_size=8)
)
def test_an_outcome_encodes_to_the_bytes_pydantic_writes(
    events: list[Prediction | FollowUp],
) -> None:
    case, outcomes = CaseFile(), []
    for offset, event in enumerate(events):
        outcomes += case.add(event, RecordPosition("pms.inputs.v2", 0, offset, offset % 2)).outcomes
    for outcome in outcomes:
        assert encode_outcome(outcome) == encode(outcome)
        decoded = decode(Outcome, encode(outcome))  # as a reader builds it: its own time zones
        assert encode_outcome(decoded) == encode(decoded)


def test_an_outcome_with_a_part_it_does_not_know_is_refused() -> None:
    outcome = make_outcome("positive", "positive", 1)
    strange = Outcome.model_construct(**{**outcome.__dict__, "acquisition": make_prediction()})
    with pytest.raises(TypeError, match="not JSON serializable: Prediction"):
        encode_outcome(strange)


@settings(max_examples=200, deadline=None)
@given(st.lists(predictions | followups, max_size=6), st.booleans())
def test_a_case_file_copy_is_the_one_dataclasses_replace_makes(
    events: list[Prediction | FollowUp], dropped: bool
) -> None:
    case = CaseFile()
    for offset, event in enumerate(events):
        case.add(event, RecordPosition("pms.inputs.v2", 0, offset))
    if dropped:
        case = case.dropped_past_retention(T0)
    fast, slow = case.copy(), dataclasses.replace(case, accepted_at=dict(case.accepted_at))
    assert type(fast) is CaseFile
    assert list(vars(fast).items()) == list(vars(slow).items())
    assert all(getattr(fast, f.name) is getattr(slow, f.name) for f in _shared_fields())
    assert fast.accepted_at is not case.accepted_at


def test_a_case_file_copy_changed_leaves_the_original_as_it_was() -> None:
    case = CaseFile()
    case.add(make_prediction(), RecordPosition("pms.inputs.v2", 0, 1))
    before = json.dumps(case.to_state())
    changed = case.copy()
    changed.add(make_followup(), RecordPosition("pms.inputs.v2", 0, 2))
    assert changed.joined and not case.joined
    assert json.dumps(case.to_state()) == before


def _shared_fields() -> list[dataclasses.Field[Any]]:
    """The fields a copy shares with its original (add replaces them, never changes them)."""
    return [f for f in dataclasses.fields(CaseFile) if f.name != "accepted_at"]


@settings(max_examples=200, deadline=None)
@given(
    st.lists(predictions | decoded_events, min_size=1, max_size=3),
    st.lists(followups | decoded_events, max_size=3),
    st.booleans(),
)
def test_a_case_loaded_changed_and_written_again_is_what_pydantic_dumps(
    before: list[Prediction | FollowUp], after: list[Prediction | FollowUp], from_changelog: bool
) -> None:
    """Loaded from the state this process wrote (its event states kept) or from the
    changelog's JSON (dumped again)."""
    case = CaseFile()
    for offset, event in enumerate(before):
        case.add(event, RecordPosition("pms.inputs.v2", 0, offset))
    state = case.to_state()
    loaded = CaseFile.from_state(json.loads(json.dumps(state)) if from_changelog else state)
    for offset, event in enumerate(after, start=len(before)):
        loaded.add(event, RecordPosition("pms.inputs.v2", 0, offset))
    assert json.dumps(loaded.to_state()) == json.dumps(case_state_as_pydantic_dumps_it(loaded))


def test_a_case_loaded_from_the_state_this_process_wrote_writes_its_event_states_again() -> None:
    """Not dumped again: the very states (a case's follow-up often finds it out of the
    cache of live case files, loaded from its table state)."""
    case = CaseFile()
    case.add(make_prediction(), at_offset(1))
    state = case.to_state()
    loaded = CaseFile.from_state(state)
    loaded.add(make_followup(), at_offset(2))
    assert loaded.to_state()["predictions"][0] is state["predictions"][0]


def test_an_event_state_from_an_older_writer_is_dumped_again() -> None:
    """A plain dict (read back from the changelog) spelling out a default is written as this
    release writes it; only the states this process dumped are kept as they are."""
    prediction = make_prediction()
    expected = prediction.model_dump(mode="json", exclude_defaults=True)
    state = {
        "state_version": 2,
        "predictions": [expected | {"study_design": "prospective"}],
        "followups": [],
        "accepted_at": {str(prediction.event_id): ["pms.inputs.v2", 0, 1]},
        "joined": {},
        "truth": None,
    }
    assert CaseFile.from_state(state).to_state()["predictions"] == [expected]


def test_a_case_state_is_the_same_changelog_bytes_as_plain_dicts() -> None:
    """Event states are a dict subclass: the table's serializer must not see the difference."""
    case = CaseFile()
    case.add(make_prediction(acquisition=AcquisitionFeatures(kvp=120.0)), at_offset(1))
    case.add(make_followup(), at_offset(2))
    state = case.to_state()
    assert any(type(event) is not dict for event in state["predictions"] + state["followups"])
    changelog = case_files.changelog_topic
    value, _ = changelog.prepare_value(state, case_files.value_serializer)
    plain, _ = changelog.prepare_value(json.loads(json.dumps(state)), case_files.value_serializer)
    assert value == plain


def at_offset(offset: int) -> RecordPosition:
    return RecordPosition("pms.inputs.v2", 0, offset)
