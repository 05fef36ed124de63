"""The event contracts: strict validation, errors that name the field and the reason."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from postmarket.contracts import (
    CONTRACT_BY_TOPIC,
    ContractViolation,
    Prediction,
    RegistryEntry,
    decode,
    encode,
)
from tests.factories import make_followup, make_prediction


def _mutated(change: Any) -> bytes:
    payload = json.loads(encode(make_prediction()))
    change(payload)
    return json.dumps(payload).encode()


def _violation(raw: bytes) -> ContractViolation:
    with pytest.raises(ContractViolation) as caught:
        decode(Prediction, raw)
    return caught.value


def test_prediction_round_trips_through_json_bytes() -> None:
    prediction = make_prediction()
    assert decode(Prediction, encode(prediction)) == prediction


def test_followup_round_trips_through_json_bytes() -> None:
    followup = make_followup(source="reader", reader_pseudonym="r-1", read_round="first")
    assert decode(type(followup), encode(followup)) == followup


def test_wrong_type_names_field_and_reason() -> None:
    violation = _violation(_mutated(lambda p: p.update(score="0.81")))
    assert violation.code == "schema"
    assert [problem.field for problem in violation.problems] == ["score"]
    assert "valid number" in violation.problems[0].reason


def test_missing_field_names_it() -> None:
    violation = _violation(_mutated(lambda p: p.pop("site_id")))
    assert [str(problem) for problem in violation.problems] == [
        "site_id: required field is missing"
    ]


def test_unknown_schema_version_is_its_own_reason() -> None:
    violation = _violation(_mutated(lambda p: p.update(schema_version=2)))
    assert violation.code == "unknown_schema_version"
    assert "unknown schema version 2" in str(violation)


def test_unknown_field_is_refused() -> None:
    violation = _violation(_mutated(lambda p: p.update(patient_name="Doe^Jane")))
    assert str(violation.problems[0]) == "patient_name: unknown field"


@pytest.mark.parametrize(
    ("field", "value"),
    [("score", 1.5), ("operating_threshold", -0.1), ("event_time", "2026-03-01T09:30:00")],
)
def test_impossible_values_are_named(field: str, value: object) -> None:
    violation = _violation(_mutated(lambda p: p.update({field: value})))
    assert violation.code == "impossible_value"
    assert violation.problems[0].field == field


def test_version_must_be_syzb() -> None:
    violation = _violation(_mutated(lambda p: p.update(device_version="2.1.0")))
    assert "device version S.Y.Z.B" in str(violation.problems[0])


def test_nested_field_path_is_dotted() -> None:
    violation = _violation(_mutated(lambda p: p["acquisition"].update(kvp="high")))
    assert violation.problems[0].field == "acquisition.kvp"


@pytest.mark.parametrize("raw", [b"", b"not json", b"[1, 2]", b"\xff\xfe"])
def test_non_json_is_not_json(raw: bytes) -> None:
    assert _violation(raw).code == "not_json"


def test_oversized_payload_is_refused_before_parsing() -> None:
    violation = _violation(b"{" + b" " * 70_000 + b"}")
    assert "exceeds" in violation.problems[0].reason


def test_reader_followup_needs_reader_and_round() -> None:
    with pytest.raises(ValueError, match="reader_pseudonym and read_round"):
        make_followup(source="reader")


def test_claim_outside_its_interval_is_refused() -> None:
    payload = {
        "device_id": "dr-screen",
        "device_version": "2.0.0.0",
        "registration_status": "registered",
        "change_class": None,
        "updated_at": "2026-01-01T00:00:00Z",
        "claims": [
            {
                "task": "referable_dr",
                "metric": "sensitivity",
                "value": 0.95,
                "ci_lower": 0.81,
                "ci_upper": 0.92,
                "test_database": "NIFDC fundus v1",
            }
        ],
    }
    with pytest.raises(ContractViolation, match="within"):
        decode(RegistryEntry, json.dumps(payload).encode())


def test_every_topic_has_a_contract() -> None:
    from postmarket.topics import pipeline_topics

    assert {spec.name for spec in pipeline_topics(1)} == set(CONTRACT_BY_TOPIC)


@given(st.binary(max_size=512))
def test_any_bytes_either_decode_or_raise_a_violation(raw: bytes) -> None:
    try:
        decode(Prediction, raw)
    except ContractViolation as violation:
        assert violation.problems


@given(
    score=st.floats(0.0, 1.0),
    threshold=st.floats(0.0, 1.0),
    case=st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,40}", fullmatch=True),
)
def test_valid_predictions_survive_encoding(score: float, threshold: float, case: str) -> None:
    prediction = make_prediction(score=score, operating_threshold=threshold, case_pseudonym=case)
    assert decode(Prediction, encode(prediction)) == prediction
